"""Group-wide activities: one estate hosts, invited estates register and check in their own owners on
shared seats, each estate sees only its own people; cancelling an activity tells everyone; the
registration domain events."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timedelta

import pytest

from core.api import CustomerUnit, Membership, Role, create_customer, now, unscoped
from core.testing import make_project, make_units, make_user
from plugins.activities import registration as reg
from plugins.activities.models import Activity, Member, MemberLevel, Registration, RegistrationStatus

pytestmark = pytest.mark.frozen_time("2026-05-04T09:00+08:00")


async def _also_manager_of(user, project):
    with unscoped():
        await Membership.create(user=user, project=project, role=await Role.get(code="manager"))


@pytest.fixture
async def group(app, host, frozen_time):
    """EAST hosts, WEST is invited, NORTH is not; `boss` manages EAST and WEST."""
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    north = await make_project("NORTH", host=host)
    boss = await make_user("boss", "manager", east)
    await _also_manager_of(boss, west)
    await make_user("east_mgr", "manager", east)
    await make_user("east_agent", "agent", east)
    await make_user("west_mgr", "manager", west)
    await make_user("west_agent", "agent", west)
    await make_user("north_mgr", "manager", north)
    people = {}
    with unscoped():
        for project, rows in [
            (east, [("张东", "zhangdong", "en"), ("李东", "lidong", "zh_CN"), ("王东", "wangdong", "zh_CN")]),
            (west, [("张西", "zhangxi", "zh_CN"), ("李西", "lixi", "en"), ("王西", "wangxi", "zh_CN")]),
            (north, [("张北", "zhangbei", "zh_CN")]),
        ]:
            for n, (name, pinyin, locale) in enumerate(rows, 1):
                phone = f"139{project.id:02d}{n:06d}"
                people[pinyin] = await create_customer(project, name, [phone], email=f"{pinyin}@example.com")
                people[pinyin].locale = locale
                await people[pinyin].save(update_fields=["locale"])
    return east, west, north, people


async def _create_shared(client, west, **extra):
    data = {
        "title": "业主联谊会", "place": "集团会所", "starts_at": "2026-05-10T14:00", "ends_at": "2026-05-10T17:00",
        "capacity": "3", "max_family": "2", "guest_estates": str(west.id), **extra,
    }
    response = await client.form("/p/EAST/activities/new", data)
    assert response.status_code == 303, response.text[-1500:]
    with unscoped():
        host = await Activity.get(title=data["title"], host_activity_id=None)
        guest = await Activity.get(host_activity_id=host.id)
    return host, guest


async def test_shared_activity_seats_waitlist_and_isolation(group, make_client, outbox, frozen_time):
    east, west, north, p = group
    boss = make_client()
    await boss.login("boss")

    # Only estates the user manages can be invited: an id of another estate is refused, nothing is made.
    form = await boss.get("/p/EAST/activities/new")
    assert "Estate WEST" in form.text and "Estate NORTH" not in form.text
    tampered = await boss.form("/p/EAST/activities/new", {
        "title": "越权", "starts_at": "2026-05-10T14:00", "ends_at": "2026-05-10T17:00", "capacity": "3",
        "guest_estates": str(north.id),
    })
    assert tampered.status_code == 422 and "Choose from the listed options." in tampered.text
    with unscoped():
        assert await Activity.all().count() == 0

    host, guest = await _create_shared(boss, west)
    assert guest.project_id == west.id and guest.status == "draft" and guest.capacity == 3
    assert (await boss.form(f"/p/EAST/activities/{host.id}/status/publish")).status_code == 303
    await guest.refresh_from_db()
    assert guest.status == "published"

    east_agent, west_agent, north_mgr = make_client(), make_client(), make_client()
    await east_agent.login("east_agent")
    await west_agent.login("west_agent")
    await north_mgr.login("north_mgr")

    # West registers its owner with one family member (2 seats), east takes the last seat, then both wait.
    west_url, east_url = f"/p/WEST/activities/{guest.id}/register", f"/p/EAST/activities/{host.id}/register"
    assert (await west_agent.form(west_url, {"customer": p["zhangxi"].id, "family_count": "1"})).status_code == 303
    assert (await east_agent.form(east_url, {"customer": p["zhangdong"].id, "family_count": "0"})).status_code == 303
    assert (await east_agent.form(east_url, {"customer": p["lidong"].id, "family_count": "0"})).status_code == 303
    assert (await west_agent.form(west_url, {"customer": p["lixi"].id, "family_count": "0"})).status_code == 303
    # An owner of the host estate cannot be signed up through the invited estate's page, and vice versa.
    cross = await west_agent.form(west_url, {"customer": p["wangdong"].id, "family_count": "0"})
    assert cross.status_code == 422 and "Search for the owner and pick them from the list." in cross.text
    with unscoped():
        statuses = {r.customer_id: r.status for r in await Registration.all()}
        await host.refresh_from_db()
        await guest.refresh_from_db()
    assert statuses == {p["zhangxi"].id: "confirmed", p["zhangdong"].id: "confirmed", p["lidong"].id: "waitlisted",
                        p["lixi"].id: "waitlisted"}
    assert host.seats_taken == guest.seats_taken == 3

    # Each estate sees its own people and the overall counts.
    west_page = await west_agent.get(f"/p/WEST/activities/{guest.id}")
    assert west_page.status_code == 200 and "Hosted by Estate EAST" in west_page.text
    assert 'id="seats-taken">3 / 3<' in west_page.text and "2 seats for this estate" in west_page.text
    assert "2 waiting in all estates." in west_page.text and 'id="waitlist-count">1<' in west_page.text
    assert "张西" in west_page.text and "李西" in west_page.text
    assert "张东" not in west_page.text and "李东" not in west_page.text
    east_page = await east_agent.get(f"/p/EAST/activities/{host.id}")
    assert "Also open to the owners of Estate WEST" in east_page.text and "张东" in east_page.text
    assert "张西" not in east_page.text and "李西" not in east_page.text
    exported = await west_agent.get("/p/WEST/activities/signups?export=csv")
    assert "张西" in exported.text and "张东" not in exported.text
    assert (await west_agent.get(f"/p/WEST/activities/{host.id}")).status_code == 404
    assert (await west_agent.get(f"/p/EAST/activities/{host.id}")).status_code == 404
    with unscoped():
        east_reg = await Registration.get(customer_id=p["zhangdong"].id)
    assert (await west_agent.form(f"/p/WEST/activities/{guest.id}/registrations/{east_reg.id}/cancel")).status_code == 404

    # An estate that was not invited sees nothing.
    assert "业主联谊会" not in (await north_mgr.get("/p/NORTH/activities/")).text
    for path in (f"/p/NORTH/activities/{host.id}", f"/p/NORTH/activities/{guest.id}", f"/p/WEST/activities/{guest.id}"):
        assert (await north_mgr.get(path)).status_code == 404
    assert "张西" not in (await north_mgr.get("/p/NORTH/activities/signups?export=csv")).text

    # West cancels its two-seat sign-up: the queue is shared, first come first served across estates.
    with unscoped():
        west_reg = await Registration.get(customer_id=p["zhangxi"].id)
    cancelled = await west_agent.form(f"/p/WEST/activities/{guest.id}/registrations/{west_reg.id}/cancel")
    assert cancelled.status_code == 303
    with unscoped():
        statuses = {r.customer_id: r.status for r in await Registration.all()}
        await host.refresh_from_db()
        await guest.refresh_from_db()
    assert statuses[p["lidong"].id] == statuses[p["lixi"].id] == "confirmed"
    assert host.seats_taken == guest.seats_taken == 3
    promoted = await outbox.messages(template="activities/promoted")
    assert {(m.to, m.project_id) for m in promoted} == {("lidong@example.com", east.id), ("lixi@example.com", west.id)}
    # Each estate's history names only its own owners.
    east_page = await east_agent.get(f"/p/EAST/activities/{host.id}")
    assert "李东 moved up from the waitlist." in east_page.text and "李西" not in east_page.text

    # Check-in on the day, each estate at its own desk: another estate's code finds nobody.
    with unscoped():
        lixi_reg = await Registration.get(customer_id=p["lixi"].id)
        lidong_reg = await Registration.get(customer_id=p["lidong"].id)
    frozen_time.set(datetime.fromisoformat("2026-05-10T13:30+08:00"))
    await west_agent.login("west_agent")  # a new day, a new session
    await boss.login("boss")
    desk = f"/p/WEST/activities/{guest.id}/checkin"
    assert "checked in" in (await west_agent.form(desk, {"q": lixi_reg.code})).text
    other = await west_agent.form(desk, {"q": lidong_reg.code})
    assert other.status_code == 422 and "Nobody found" in other.text
    by_phone = await west_agent.form(desk, {"q": f"139{east.id:02d}{2:06d}"})  # 李东's phone
    assert by_phone.status_code == 422 and "李东" not in by_phone.text

    # Withdrawing the invitation is refused while owners of that estate are signed up.
    refused = await boss.form(f"/p/EAST/activities/{host.id}/edit", {
        "title": "业主联谊会", "place": "集团会所", "starts_at": "2026-05-10T14:00", "ends_at": "2026-05-10T17:00",
        "capacity": "3", "max_family": "2",
    })
    assert refused.status_code == 422 and "1 owners of Estate WEST are signed up" in refused.text
    await guest.refresh_from_db()
    assert guest.status == "published"


async def test_the_last_shared_seat_raced_from_two_estates_goes_to_exactly_one(group):
    """Two transactions at once, one per estate, for the one seat left: one gets it, the other waits."""
    east, west, _north, p = group
    with unscoped():
        starts = now() + timedelta(days=3)
        host = await Activity.create(project=east, title="集团开放日", starts_at=starts, ends_at=starts + timedelta(hours=2),
                                     capacity=2, status="published")
        guest = await Activity.create(project=west, host_activity=host, title="集团开放日", starts_at=starts,
                                      ends_at=starts + timedelta(hours=2), capacity=2, status="published")
        await reg.register(host, p["wangdong"], 0)

        async def attempt(row, customer):
            return await reg.register(await Activity.get(id=row.id), customer, 0)

        results = await asyncio.gather(attempt(host, p["zhangdong"]), attempt(guest, p["zhangxi"]))
        await host.refresh_from_db()
        await guest.refresh_from_db()
        confirmed = await Registration.filter(status=RegistrationStatus.CONFIRMED).count()
    assert sorted(r.status for r in results) == ["confirmed", "waitlisted"]
    assert host.seats_taken == guest.seats_taken == 2 and confirmed == 2


async def test_invitations_reach_each_estates_audience_with_consent(group, make_client, outbox):
    east, west, north, p = group
    with unscoped():
        west_units = await make_units(west, 2, building_code="7")
        other_building = (await make_units(west, 1, building_code="8"))[0]
        gold = await MemberLevel.create(project=west, name="金卡", rank=2)
        for project, pinyin, consent, level in [
            (east, "zhangdong", True, None), (east, "lidong", False, None),
            (west, "zhangxi", True, gold), (west, "lixi", True, gold), (west, "wangxi", False, gold),
            (north, "zhangbei", True, None),
        ]:
            await Member.create(project=project, customer=p[pinyin], number=pinyin[:6], joined_on=date(2026, 1, 1),
                                consent_to_contact=consent, level=level)
        await CustomerUnit.create(project=west, customer=p["zhangxi"], unit=west_units[0], relation="owner")
        await CustomerUnit.create(project=west, customer=p["wangxi"], unit=west_units[1], relation="owner")
        await CustomerUnit.create(project=west, customer=p["lixi"], unit=other_building, relation="owner")
    boss = make_client()
    await boss.login("boss")
    host, guest = await _create_shared(boss, west, capacity="10")
    await boss.form(f"/p/EAST/activities/{host.id}/status/publish")

    # West's manager narrows West's audience to building 7 (West's own buildings only are offered).
    west_mgr = make_client()
    await west_mgr.login("west_mgr")
    edit = await west_mgr.get(f"/p/WEST/activities/{guest.id}/edit")
    assert "Hosted by Estate EAST" in edit.text and 'name="capacity"' not in edit.text and "7栋" in edit.text
    with unscoped():
        building7 = west_units[0].building_id
    saved = await west_mgr.form(f"/p/WEST/activities/{guest.id}/edit", {
        "audience_buildings": str(building7), "audience_levels": str(gold.id), "capacity": "999", "title": "改名",
    })
    assert saved.status_code == 303
    await guest.refresh_from_db()
    assert guest.audience_buildings == [building7] and guest.capacity == 10 and guest.title == "业主联谊会"
    # Publishing and cancelling belong to the host.
    refused = await west_mgr.form(f"/p/WEST/activities/{guest.id}/status/cancel")
    assert refused.status_code == 303
    await guest.refresh_from_db()
    assert guest.status == "published"

    sent = await boss.form(f"/p/EAST/activities/{host.id}/invite")
    assert sent.status_code == 303
    mails = await outbox.messages(template="activities/invitation")
    # Consenting members of each estate's audience: not lidong (no consent), not lixi (building 8),
    # not wangxi (no consent), not zhangbei (estate not invited).
    assert sorted(m.to for m in mails) == ["zhangdong@example.com", "zhangxi@example.com"]
    west_mail = next(m for m in mails if m.to == "zhangxi@example.com")
    assert west_mail.project_id == west.id and west_mail.locale == "zh_CN"

    # The West owner's link registers on West's row of the activity, on the shared seats.
    path = re.search(r"https?://[^/\s]+(/activities/join/\S+)", west_mail.text).group(1)
    owner = make_client()
    owner.cookies.set("courtyard_locale", "en")
    done = await owner.form(path, {"family_count": "1"})
    assert done.status_code == 200 and "You are registered (2 seats)" in done.text
    with unscoped():
        registration = await Registration.get(customer_id=p["zhangxi"].id)
        await host.refresh_from_db()
    assert registration.activity_id == guest.id and registration.project_id == west.id and host.seats_taken == 2


async def test_cancelling_the_activity_tells_everyone_in_their_language_and_stops_jobs(
    group, make_client, outbox, frozen_time, run_job
):
    east, west, _north, p = group
    boss = make_client()
    await boss.login("boss")
    host, guest = await _create_shared(boss, west, capacity="2", cost="20")
    await boss.form(f"/p/EAST/activities/{host.id}/status/publish")
    with unscoped():
        await reg.register(await Activity.get(id=host.id), p["zhangdong"], 0)  # en, confirmed
        await reg.register(await Activity.get(id=guest.id), p["zhangxi"], 0)  # zh_CN, confirmed
        await reg.register(await Activity.get(id=guest.id), p["lixi"], 0)  # en, waiting
        await reg.register(await Activity.get(id=host.id), p["lidong"], 0)  # zh_CN, waiting
        await reg.register(await Activity.get(id=host.id), p["wangdong"], 0)
        await reg.cancel(await Registration.get(customer_id=p["wangdong"].id))  # already cancelled: not told

    west_mgr = make_client()
    await west_mgr.login("west_mgr")
    assert "Cancel the activity" not in (await west_mgr.get(f"/p/WEST/activities/{guest.id}")).text

    response = await boss.form(f"/p/EAST/activities/{host.id}/status/cancel")
    assert response.status_code == 303
    mails = {m.to: m for m in await outbox.messages(template="activities/cancelled")}
    assert set(mails) == {"zhangdong@example.com", "zhangxi@example.com", "lixi@example.com", "lidong@example.com"}
    assert mails["zhangdong@example.com"].subject == "Estate EAST: 业主联谊会 is cancelled"
    assert "you were registered (1 seats)" in mails["zhangdong@example.com"].text
    assert "you were on the waitlist" in mails["lixi@example.com"].text
    assert mails["lixi@example.com"].project_id == west.id
    assert "已取消" in mails["zhangxi@example.com"].subject and "退" in mails["zhangxi@example.com"].text
    with unscoped():
        assert await Registration.exclude(status="cancelled").count() == 0
        await host.refresh_from_db()
        await guest.refresh_from_db()
    assert host.status == guest.status == "cancelled" and host.seats_taken == guest.seats_taken == 0
    page = await boss.get(f"/p/EAST/activities/{host.id}")
    assert "Activity cancelled; 2 registered and waiting people were told by email." in page.text
    again = await boss.form(f"/p/EAST/activities/{host.id}/status/cancel")
    assert again.status_code == 303
    assert len(await outbox.messages(template="activities/cancelled")) == 4  # told once

    # No reminder the day before, no survey afterwards.
    frozen_time.set(datetime.fromisoformat("2026-05-09T10:30+08:00"))
    await run_job("activities.reminders", east)
    await run_job("activities.reminders", west)
    frozen_time.set(datetime.fromisoformat("2026-05-10T18:30+08:00"))
    await run_job("activities.feedback", east)
    await run_job("activities.feedback", west)
    assert await outbox.messages(template="activities/reminder") == []
    assert await outbox.messages(template="activities/feedback") == []


async def test_registration_events_for_webhooks(group, make_client, monkeypatch):
    east, west, _north, p = group
    seen = []
    real_emit = reg.emit

    async def emit(name, project_id, actor_id=None, **data):
        seen.append((name, project_id, data))
        return await real_emit(name, project_id, actor_id, **data)

    monkeypatch.setattr(reg, "emit", emit)
    boss = make_client()
    await boss.login("boss")
    host, guest = await _create_shared(boss, west, capacity="2")
    await boss.form(f"/p/EAST/activities/{host.id}/status/publish")
    east_agent = make_client()
    await east_agent.login("east_agent")
    await east_agent.form(f"/p/EAST/activities/{host.id}/register", {"customer": p["zhangdong"].id, "family_count": "1"})
    with unscoped():
        waiting = await reg.register(await Activity.get(id=guest.id), p["zhangxi"], 0)  # full: no event yet
        first = await Registration.get(customer_id=p["zhangdong"].id)
    assert [(n, pid) for n, pid, _d in seen] == [("activities.registration_confirmed", east.id)]
    confirmed = seen[0][2]
    assert confirmed["registration_id"] == first.id and confirmed["activity_id"] == host.id
    assert confirmed["host_activity_id"] == host.id and confirmed["customer_id"] == p["zhangdong"].id
    assert confirmed["family_count"] == 1 and confirmed["source"] == "staff" and confirmed["promoted"] is False
    assert confirmed["confirmed_at"].startswith("2026-05-04T01:00")

    await east_agent.form(f"/p/EAST/activities/{host.id}/registrations/{first.id}/cancel")
    names = [(n, pid) for n, pid, _d in seen[1:]]
    assert names == [("activities.registration_cancelled", east.id), ("activities.registration_confirmed", west.id)]
    cancelled, promoted = seen[1][2], seen[2][2]
    assert cancelled["previous_status"] == "confirmed" and cancelled["cancelled_by"] == "staff"
    assert promoted["registration_id"] == waiting.id and promoted["promoted"] is True
    assert promoted["activity_id"] == guest.id and promoted["host_activity_id"] == host.id

    await boss.form(f"/p/EAST/activities/{host.id}/status/cancel")
    assert seen[-1][0] == "activities.registration_cancelled" and seen[-1][1] == west.id
    assert seen[-1][2]["cancelled_by"] == "activity_cancelled" and seen[-1][2]["previous_status"] == "confirmed"
