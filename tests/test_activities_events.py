"""Activities: registration up to capacity, waitlist and promotion, the race for the last seat,
check-in at the desk, invitation links, feedback surveys."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone

import pytest

from core.api import create_customer, unscoped
from core.testing import make_project, make_user
from plugins.activities import registration as reg
from plugins.activities.models import Activity, ActivityStatus, Member, Registration, RegistrationStatus

NOW = "2026-05-04T09:00+08:00"
pytestmark = pytest.mark.frozen_time(NOW)


@pytest.fixture
async def estate(app, host, frozen_time, client):
    client.cookies.set("courtyard_locale", "en")  # the assertions read the English source texts
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    await make_user("mgr", "manager", east, locale="en")
    await make_user("agent", "agent", east, locale="en")
    await make_user("west_mgr", "manager", west, locale="en")
    with unscoped():
        people = [
            await create_customer(east, name, [phone], email=f"{pinyin}@example.com")
            for name, pinyin, phone in [
                ("张三", "zhangsan", "13800138001"), ("李四", "lisi", "13800138002"),
                ("王五", "wangwu", "13800138003"), ("赵六", "zhaoliu", "13800138004"),
            ]
        ]
    return east, west, people


async def make_activity(project, *, capacity=3, starts_in=timedelta(days=2), status=ActivityStatus.PUBLISHED, **kw):
    from core.api import now

    starts = now() + starts_in
    with unscoped():
        return await Activity.create(
            project=project, title="中秋游园会", place="会所", starts_at=starts, ends_at=starts + timedelta(hours=3),
            capacity=capacity, status=status, **kw,
        )


async def test_manager_creates_and_publishes_an_activity_with_clear_errors(client, estate):
    await client.login("mgr")
    bad = await client.form("/p/EAST/activities/new", {
        "title": "", "starts_at": "2026-05-10T14:00", "ends_at": "2026-05-10T13:00", "capacity": "0", "cost": "abc",
    })
    assert bad.status_code == 422
    assert "This field is required." in bad.text and "The end must be after the start." in bad.text
    assert "Enter a number from 1 to" in bad.text and "Enter an amount such as 30 or 30.50." in bad.text
    with unscoped():
        assert await Activity.all().count() == 0

    created = await client.form("/p/EAST/activities/new", {
        "title": "亲子烘焙", "place": "会所二楼", "starts_at": "2026-05-10T14:00", "ends_at": "2026-05-10T16:00",
        "capacity": "20", "cost": "30.50", "max_family": "2",
    })
    assert created.status_code == 303
    with unscoped():
        activity = await Activity.get(title="亲子烘焙")
    # Entered in the estate's time (Asia/Shanghai), stored in UTC.
    assert activity.starts_at == datetime(2026, 5, 10, 6, 0, tzinfo=timezone.utc)
    assert str(activity.cost) == "30.50" and activity.status == ActivityStatus.DRAFT
    published = await client.form(f"/p/EAST/activities/{activity.id}/status/publish")
    assert published.status_code == 303
    page = await client.get(f"/p/EAST/activities/{activity.id}")
    assert "Register an owner" in page.text and "0 / 20" in page.text


async def test_registration_fills_seats_then_waitlist_and_cancellation_promotes(client, estate, outbox):
    east, _west, (zhang, li, wang, zhao) = estate
    activity = await make_activity(east, capacity=3)
    await client.login("agent")
    url = f"/p/EAST/activities/{activity.id}/register"

    first = await client.form(url, {"customer": zhang.id, "family_count": "1"})  # 2 seats
    assert first.status_code == 303
    second = await client.form(url, {"customer": li.id, "family_count": "0"})  # the last seat
    assert second.status_code == 303
    third = await client.form(url, {"customer": wang.id, "family_count": "0"})  # full: waitlist
    assert third.status_code == 303
    await activity.refresh_from_db()
    assert activity.seats_taken == 3
    with unscoped():
        statuses = {r.customer_id: r.status for r in await Registration.filter(activity_id=activity.id)}
    assert statuses == {zhang.id: "confirmed", li.id: "confirmed", wang.id: "waitlisted"}

    twice = await client.form(url, {"customer": li.id, "family_count": "0"})
    assert twice.status_code == 422 and "already registered" in twice.text
    too_many = await client.form(url, {"customer": zhao.id, "family_count": "9"})
    assert too_many.status_code == 422 and "Between 0 and 4 family members" in too_many.text
    await activity.refresh_from_db()
    assert activity.seats_taken == 3  # nothing double-counted

    page = await client.get(f"/p/EAST/activities/{activity.id}")
    assert 'id="waitlist-count">1<' in page.text

    with unscoped():
        li_reg = await Registration.get(activity_id=activity.id, customer_id=li.id)
    cancelled = await client.form(f"/p/EAST/activities/{activity.id}/registrations/{li_reg.id}/cancel")
    assert cancelled.status_code == 303
    with unscoped():
        wang_reg = await Registration.get(activity_id=activity.id, customer_id=wang.id)
    assert wang_reg.status == RegistrationStatus.CONFIRMED
    await activity.refresh_from_db()
    assert activity.seats_taken == 3
    mails = await outbox.messages(to="wangwu@example.com", template="activities/promoted")
    assert len(mails) == 1 and wang_reg.code in mails[0].text and "/activities/ticket/" in mails[0].text
    again = await client.form(f"/p/EAST/activities/{activity.id}/registrations/{li_reg.id}/cancel")
    assert "already cancelled" in (await client.get(f"/p/EAST/activities/{activity.id}")).text or again.status_code == 303
    await activity.refresh_from_db()
    assert activity.seats_taken == 3


async def test_registration_window_closed_is_refused(client, estate, frozen_time):
    east, _west, (zhang, *_rest) = estate
    activity = await make_activity(east, registration_closes_at=None)
    await client.login("agent")
    frozen_time.tick(days=3)  # the activity has started
    await client.login("agent")  # the session has expired meanwhile
    page = await client.get(f"/p/EAST/activities/{activity.id}")
    assert "Registration has closed." in page.text and 'action="/p/EAST/activities/%s/register"' % activity.id not in page.text
    direct = await client.form(f"/p/EAST/activities/{activity.id}/register", {"customer": zhang.id, "family_count": "0"})
    assert direct.status_code == 422 and "Registration has closed." in direct.text
    with unscoped():
        assert await Registration.filter(activity_id=activity.id).count() == 0


async def test_two_registrations_race_for_the_last_seat(app, estate):
    """Two transactions at once for the last seat: exactly one gets it, the other waits in line."""
    east, _west, (zhang, li, wang, _zhao) = estate
    activity = await make_activity(east, capacity=2)
    await reg.register(activity, zhang, 0)

    async def attempt(customer):
        return await reg.register(await Activity.get(id=activity.id), customer, 0)

    with unscoped():
        results = await asyncio.gather(attempt(li), attempt(wang))
        await activity.refresh_from_db()
    assert sorted(r.status for r in results) == ["confirmed", "waitlisted"]
    assert activity.seats_taken == 2


async def test_checkin_by_code_name_and_refusals(client, estate, frozen_time):
    east, _west, (zhang, li, wang, _zhao) = estate
    activity = await make_activity(east, capacity=3, starts_in=timedelta(hours=2))
    with unscoped():
        z = await reg.register(activity, zhang, 1)
        w = await reg.register(activity, wang, 1)  # two seats wanted, one free: waitlisted
        await reg.register(activity, li, 0)  # a party of one still fits
    await client.login("agent")
    desk = f"/p/EAST/activities/{activity.id}/checkin"
    scanned = await client.form(desk, {"q": z.code.lower()})
    assert scanned.status_code == 200 and "checked in with 2 people" in scanned.text
    twice = await client.form(desk, {"q": z.code})
    assert "was already checked in" in twice.text
    by_name = await client.form(desk, {"q": "wangwu"})
    assert "On the waitlist" in by_name.text
    refused = await client.form(f"{desk}/{w.id}")
    assert refused.status_code == 422 and "on the waitlist and has no seat" in refused.text
    nobody = await client.form(desk, {"q": "nobody-here"})
    assert nobody.status_code == 422
    with unscoped():
        assert (await Registration.get(id=z.id)).checked_in_at is not None
    # After the activity, a confirmed person who never came counts as a no-show.
    frozen_time.tick(hours=6)
    await client.login("agent")
    page = await client.get(f"/p/EAST/activities/{activity.id}")
    assert 'id="no-shows">1<' in page.text


async def test_invitation_link_registers_once_and_refuses_reuse_and_tampering(client, estate, outbox):
    east, _west, (zhang, *_rest) = estate
    with unscoped():
        await Member.create(project=east, customer=zhang, number="000001", joined_on=datetime(2026, 1, 1).date(),
                            consent_to_contact=True)
    activity = await make_activity(east, capacity=5, max_family=3)
    await client.login("mgr")
    sent = await client.form(f"/p/EAST/activities/{activity.id}/invite")
    assert sent.status_code == 303
    mails = await outbox.messages(template="activities/invitation")
    assert [m.to for m in mails] == ["zhangsan@example.com"]
    path = re.search(r"https?://[^/\s]+(/activities/join/\S+)", mails[0].text).group(1)

    owner = client.__class__(transport=client._transport, base_url="http://testserver", cookies={"courtyard_locale": "en"})
    async with owner:
        page = await owner.get(path)
        assert page.status_code == 200 and "张三" in page.text
        bad = await owner.form(path, {"family_count": "7"})
        assert bad.status_code == 422 and "Between 0 and 3 family members" in bad.text
        done = await owner.form(path, {"family_count": "2"})
        assert done.status_code == 200 and "You are registered (3 seats)" in done.text
        reused = await owner.form(path, {"family_count": "0"})
        assert reused.status_code == 410 and "already answered this invitation" in reused.text
        tampered = await owner.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
        assert tampered.status_code == 400 and "This link is not valid" in tampered.text
        confirmation = await outbox.messages(template="activities/registered")
        ticket = re.search(r"https?://[^/\s]+(/activities/ticket/\S+)", confirmation[0].text).group(1)
        ticket_page = await owner.get(ticket)
        assert ticket_page.status_code == 200 and "qr.png" in ticket_page.text
        qr = await owner.get(ticket + "/qr.png")
        assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG")
    await activity.refresh_from_db()
    assert activity.seats_taken == 3


async def test_feedback_survey_after_the_activity(client, estate, frozen_time, outbox, run_job):
    east, _west, (zhang, li, *_rest) = estate
    activity = await make_activity(east, capacity=5, starts_in=timedelta(hours=1))
    with unscoped():
        z = await reg.register(activity, zhang, 0)
        await reg.register(activity, li, 0)
        await reg.check_in(z)  # li does not come
    frozen_time.tick(hours=5)
    await run_job("activities.feedback", east)
    mails = await outbox.messages(template="activities/feedback")
    assert [m.to for m in mails] == ["zhangsan@example.com"]  # only participants
    path = re.search(r"https?://[^/\s]+(/activities/feedback/\S+)", mails[0].text).group(1)
    frozen_time.tick(minutes=5)
    await run_job("activities.feedback", east)
    assert len(await outbox.messages(template="activities/feedback")) == 1  # sent once

    assert (await client.get(path)).status_code == 200
    bad = await client.form(path, {"rating": "9"})
    assert bad.status_code == 422 and "Choose from one to five stars." in bad.text
    ok = await client.form(path, {"rating": "4", "comment": "下次希望有儿童区"})
    assert ok.status_code == 200 and "Thank you for your feedback!" in ok.text
    reused = await client.form(path, {"rating": "1"})
    assert reused.status_code == 410 and "already answered this survey" in reused.text
    tampered = await client.get(path.replace(path[-4:], "xxxx"))
    assert tampered.status_code == 400
    with unscoped():
        assert (await Registration.get(id=z.id)).rating == 4

    await client.login("mgr")
    results = await client.get(f"/p/EAST/activities/{activity.id}/feedback")
    assert 'id="average">4' in results.text and "下次希望有儿童区" in results.text


async def test_other_estate_activity_is_404(client, estate):
    east, _west, _people = estate
    activity = await make_activity(east)
    await client.login("west_mgr")
    assert (await client.get(f"/p/WEST/activities/{activity.id}")).status_code == 404
    assert (await client.get(f"/p/EAST/activities/{activity.id}")).status_code == 404


async def test_owner_cancels_from_the_ticket_link_and_the_waitlist_moves_up(client, estate, outbox):
    east, _west, (zhang, li, *_rest) = estate
    activity = await make_activity(east, capacity=1)
    with unscoped():
        z = await reg.register(activity, zhang, 0)
        w = await reg.register(activity, li, 0)
        from plugins.activities import tokens

        ticket = tokens.ticket_url(z, activity).split("testserver", 1)[-1].split("127.0.0.1:8000", 1)[-1]
    page = await client.get(ticket)
    assert page.status_code == 200 and z.code in page.text and "cancel my sign-up" in page.text
    done = await client.form(ticket + "/cancel")
    assert done.status_code == 200 and "Your sign-up is cancelled" in done.text
    again = await client.form(ticket + "/cancel")
    assert "already cancelled" in again.text
    with unscoped():
        assert (await Registration.get(id=w.id)).status == RegistrationStatus.CONFIRMED
        await activity.refresh_from_db()
    assert activity.seats_taken == 1
    assert len(await outbox.messages(to="lisi@example.com", template="activities/promoted")) == 1


async def test_reminder_the_day_before_goes_once_to_seat_holders(client, estate, frozen_time, outbox, run_job):
    east, _west, (zhang, li, *_rest) = estate
    activity = await make_activity(east, capacity=1, starts_in=timedelta(days=1, hours=2))  # tomorrow, local time
    with unscoped():
        z = await reg.register(activity, zhang, 0)
        await reg.register(activity, li, 0)  # waitlisted: no reminder
    await run_job("activities.reminders", east)
    frozen_time.tick(minutes=1)
    await run_job("activities.reminders", east)
    mails = await outbox.messages(template="activities/reminder")
    assert [m.to for m in mails] == ["zhangsan@example.com"]
    assert z.code in mails[0].text and "/qr.png" in mails[0].html
