"""The owners' club: members join with a number, level and consent; levels gate activities; points for attendance."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.api import create_customer, now, unscoped
from core.testing import make_project, make_user, translated
from plugins.activities import registration as reg
from plugins.activities.models import Activity, Club, Member, MemberLevel

pytestmark = pytest.mark.frozen_time("2026-05-04T09:00+08:00")


@pytest.fixture
async def estate(app, host, frozen_time, client):
    client.cookies.set("courtyard_locale", "en")  # the assertions read the English source texts
    east = await make_project("EAST", host=host)
    await make_user("mgr", "manager", east, locale="en")
    with unscoped():
        zhang = await create_customer(east, "张三", ["13800138001"], email="zs@example.com")
        li = await create_customer(east, "李四", ["13800138002"])
    return east, zhang, li


async def test_owner_joins_the_club_with_a_level_and_a_second_time_is_refused(client, estate):
    east, zhang, _li = estate
    await client.login("mgr")
    level = await client.form("/p/EAST/activities/club/levels", {"name": "金卡", "rank": "2"})
    assert level.status_code == 303
    same = await client.form("/p/EAST/activities/club/levels", {"name": "金卡"})
    assert same.status_code == 422 and "exists already" in same.text
    with unscoped():
        gold = await MemberLevel.get(name="金卡")
    joined = await client.form("/p/EAST/activities/members/new", {
        "customer": zhang.id, "level": gold.id, "joined_on": "2026-05-01", "consent": "1",
    })
    assert joined.status_code == 303
    again = await client.form("/p/EAST/activities/members/new", {"customer": zhang.id, "joined_on": "2026-05-01"})
    assert again.status_code == 422 and "already a member" in again.text
    with unscoped():
        member = await Member.get(customer_id=zhang.id)
    assert member.number == "000001" and member.level_id == gold.id and member.consent_to_contact
    listing = await client.get("/p/EAST/activities/members?export=csv")
    assert listing.status_code == 200 and "000001" in listing.text and "张三" in listing.text
    card = await client.get(f"/p/EAST/customers/{zhang.id}")
    assert "000001" in card.text and "金卡" in card.text  # the 360 section


async def test_levels_gate_the_audience_and_attendance_earns_points(app, estate):
    east, zhang, li = estate
    with unscoped():
        gold = await MemberLevel.create(project=east, name="金卡", rank=2)
        await Member.create(project=east, customer=zhang, number="000001", level=gold, joined_on=now().date())
        await Club.create(project=east, points_enabled=True, points_per_attendance=15)
        starts = now() + timedelta(hours=1)
        activity = await Activity.create(project=east, title="金卡会员品鉴会", starts_at=starts,
                                         ends_at=starts + timedelta(hours=2), capacity=10, status="published",
                                         audience_levels=[gold.id])
        with pytest.raises(reg.RegistrationError, match=translated("This activity is for club members only, and %(name)s is not a member.", name="李四")):
            await reg.register(activity, li, 0)
        registration = await reg.register(activity, zhang, 0)
        assert await reg.check_in(registration)
        assert not await reg.check_in(registration)  # once only, points once only
        assert (await Member.get(customer_id=zhang.id)).points == 15
        await activity.refresh_from_db()
        assert activity.seats_taken == 1
