"""The activities' JSON API: the mini-program registers owners through the same seats, waitlist and events as staff."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.api import create_customer, now
from core.models import ProjectModule
from core.scope import unscoped
from core.testing import make_user
from plugins.activities import registration as reg
from plugins.activities.models import Activity, ActivityStatus, Registration, RegistrationStatus
from tests.api_helpers import api_estate

NOW = "2026-05-04T09:00+08:00"
pytestmark = pytest.mark.frozen_time(NOW)

ACTIVITIES = "/api/v1/projects/{code}/activities"
REGISTRATIONS = "/api/v1/projects/{code}/activities/registrations"


@pytest.fixture
async def estates(app, host, frozen_time):
    east = await api_estate(host, "EAST", "13800138000")
    west = await api_estate(host, "WEST", "13900139000")
    with unscoped():
        li = await create_customer(east.project, "李四", ["13800138002"], email="lisi@example.com")
        wang = await create_customer(east.project, "王五", ["13800138003"], email="wangwu@example.com")
    return east, west, li, wang


@pytest.fixture
def events(monkeypatch):
    """The registration events sent, as (name, data)."""
    seen = []
    real_emit = reg.emit

    async def emit(name, project_id, actor_id=None, **data):
        seen.append((name, data))
        return await real_emit(name, project_id, actor_id, **data)

    monkeypatch.setattr(reg, "emit", emit)
    return seen


async def make_activity(project, *, capacity=3, starts_in=timedelta(days=2), status=ActivityStatus.PUBLISHED, **kw):
    starts = now() + starts_in
    with unscoped():
        return await Activity.create(
            project=project, title="中秋游园会", place="会所", starts_at=starts, ends_at=starts + timedelta(hours=3),
            capacity=capacity, status=status, **kw,
        )


def signup(activity, customer, family_count=0) -> dict:
    return {"activity_id": activity.id, "customer_id": customer.id, "family_count": family_count}


async def test_a_registration_through_the_api_takes_the_seats_staff_see(app, client, estates, api_client, events):
    east, _west, _li, _wang = estates
    activity = await make_activity(east.project, capacity=3)
    api = await api_client([east.project], ["activities:write"])

    answer = await api.post(REGISTRATIONS.format(code="EAST"), json=signup(activity, east.customer, 1))
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["status"] == "confirmed" and made["seats"] == 2 and made["channel"] == "api"
    assert made["waitlist_position"] is None and len(made["code"]) == 8
    assert made["web_path"] == f"/p/EAST/activities/{activity.id}"
    await activity.refresh_from_db()
    assert activity.seats_taken == 2

    shown = (await api.get(f"{ACTIVITIES.format(code='EAST')}/{activity.id}")).json()
    assert (shown["seats_taken"], shown["seats_left"], shown["waitlist_length"]) == (2, 1, 0)
    assert shown["registration_open"] is True and shown["status"] == "published" and shown["cost"] == "0.00"

    await make_user("mgr", "manager", east.project, locale="en")
    await client.login("mgr")
    page = await client.get(f"/p/EAST/activities/{activity.id}")
    assert 'id="seats-taken">2 / 3<' in page.text and "业主EAST" in page.text

    assert [name for name, _data in events] == ["activities.registration_confirmed"]
    assert events[0][1]["registration_id"] == made["id"] and events[0][1]["source"] == "api"


async def test_a_full_activity_puts_people_on_the_waitlist_and_a_cancellation_moves_it_up(app, estates, api_client, events):
    east, _west, li, wang = estates
    activity = await make_activity(east.project, capacity=2)
    api = await api_client([east.project], ["activities:write"])
    url = REGISTRATIONS.format(code="EAST")

    owner = (await api.post(url, json=signup(activity, east.customer, 1))).json()  # both seats
    first = await api.post(url, json=signup(activity, li, 1))
    second = await api.post(url, json=signup(activity, wang))
    assert first.status_code == second.status_code == 201
    assert (first.json()["status"], first.json()["waitlist_position"]) == ("waitlisted", 1)
    assert (second.json()["status"], second.json()["waitlist_position"]) == ("waitlisted", 2)
    shown = (await api.get(f"{ACTIVITIES.format(code='EAST')}/{activity.id}")).json()
    assert (shown["seats_taken"], shown["seats_left"], shown["waitlist_length"]) == (2, 0, 2)

    cancelled = await api.post(f"{url}/{owner['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelled_at"]
    # 李四's party of two takes the freed seats; 王五 is now first in line.
    moved = (await api.get(f"{url}/{first.json()['id']}")).json()
    assert moved["status"] == "confirmed" and moved["waitlist_position"] is None
    still = (await api.get(f"{url}/{second.json()['id']}")).json()
    assert (still["status"], still["waitlist_position"]) == ("waitlisted", 1)
    await activity.refresh_from_db()
    assert activity.seats_taken == 2
    names = [(name, data.get("cancelled_by"), data.get("promoted")) for name, data in events]
    assert names[-2:] == [("activities.registration_cancelled", "api", None),
                          ("activities.registration_confirmed", None, True)]

    # Cancelling again changes nothing and is no error (a retry after a timeout).
    again = await api.post(f"{url}/{owner['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert len(events) == 3  # the first seat, the cancellation, the move up: nothing more
    await activity.refresh_from_db()
    assert activity.seats_taken == 2


async def test_refusals_answer_422_naming_the_field_and_change_nothing(app, estates, api_client, frozen_time):
    east, west, li, wang = estates
    activity = await make_activity(east.project, capacity=5)
    api = await api_client([east.project], ["activities:write"])
    api.headers["Accept-Language"] = "en"
    url = REGISTRATIONS.format(code="EAST")
    assert (await api.post(url, json=signup(activity, east.customer))).status_code == 201

    def refusal(answer) -> dict:
        assert answer.status_code == 422, answer.text
        return {f["field"]: f["message"] for f in answer.json()["error"]["fields"]}

    twice = refusal(await api.post(url, json=signup(activity, east.customer)))
    assert twice == {"customer_id": "This person is already registered for this activity."}
    other_estate = refusal(await api.post(url, json=signup(activity, west.customer)))
    assert other_estate == {"customer_id": "There is no such customer in this estate."}
    west_activity = await make_activity(west.project)
    assert refusal(await api.post(url, json=signup(west_activity, li))) == {
        "activity_id": "There is no such activity in this estate."}
    too_many = refusal(await api.post(url, json=signup(activity, li, 9)))
    assert too_many == {"family_count": "Between 0 and 4 family members can come along."}
    closed = await make_activity(east.project, registration_closes_at=now() - timedelta(hours=1))
    assert refusal(await api.post(url, json=signup(closed, li))) == {"activity_id": "Registration has closed."}
    draft = await make_activity(east.project, status=ActivityStatus.DRAFT)
    assert refusal(await api.post(url, json=signup(draft, li))) == {"activity_id": "Registration has not opened yet."}
    members = await make_activity(east.project, members_only=True)
    assert "club members only" in refusal(await api.post(url, json=signup(members, li)))["customer_id"]
    with unscoped():
        assert await Registration.all().count() == 1
        assert sum(a.seats_taken for a in await Activity.all()) == 1

    # Once the activity has started, a sign-up is no longer cancelled through the API.
    with unscoped():
        mine = await Registration.get(customer_id=east.customer.id)
    frozen_time.tick(days=2, minutes=1)
    late = refusal(await api.post(f"{url}/{mine.id}/cancel"))
    assert late == {"id": "The activity has started: the sign-up can no longer be cancelled."}
    await mine.refresh_from_db()
    assert mine.status == RegistrationStatus.CONFIRMED


async def test_a_retried_registration_with_the_same_key_registers_once(app, estates, api_client, events):
    east, _west, _li, _wang = estates
    activity = await make_activity(east.project, capacity=3)
    api = await api_client([east.project], ["activities:write"])
    key = {"Idempotency-Key": "mini-program-7f3a"}
    url = REGISTRATIONS.format(code="EAST")
    first = await api.post(url, json=signup(activity, east.customer, 1), headers=key)
    again = await api.post(url, json=signup(activity, east.customer, 1), headers=key)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    with unscoped():
        assert await Registration.filter(activity_id=activity.id).count() == 1
    await activity.refresh_from_db()
    assert activity.seats_taken == 2
    assert len(events) == 1
    # Without the key, the retry is refused as a duplicate rather than registering twice.
    assert (await api.post(url, json=signup(activity, east.customer, 1))).status_code == 422


async def test_updated_since_returns_what_changed_including_seats_and_waitlist(app, estates, api_client, frozen_time):
    east, _west, li, wang = estates
    quiet = await make_activity(east.project, capacity=1)
    busy = await make_activity(east.project, capacity=1)
    past = await make_activity(east.project, starts_in=-timedelta(days=3))
    api = await api_client([east.project], ["activities:write"])
    activities, registrations = ACTIVITIES.format(code="EAST"), REGISTRATIONS.format(code="EAST")

    everything = (await api.get(activities)).json()
    assert {a["id"] for a in everything["items"]} == {quiet.id, busy.id, past.id}
    upcoming = (await api.get(activities, params={"upcoming": "true"})).json()["items"]
    assert {a["id"] for a in upcoming} == {quiet.id, busy.id}
    assert (await api.get(activities, params={"status": "draft"})).json()["items"] == []

    frozen_time.tick(minutes=5)
    since = now().isoformat()
    seat = (await api.post(registrations, json=signup(busy, east.customer))).json()
    changed = (await api.get(activities, params={"updated_since": since})).json()["items"]
    assert [a["id"] for a in changed] == [busy.id] and changed[0]["seats_taken"] == 1

    # Joining the waitlist changes the activity's waitlist length: it comes again.
    frozen_time.tick(minutes=5)
    since = now().isoformat()
    waiting = (await api.post(registrations, json=signup(busy, li))).json()
    changed = (await api.get(activities, params={"updated_since": since})).json()["items"]
    assert [(a["id"], a["waitlist_length"]) for a in changed] == [(busy.id, 1)]
    assert [r["id"] for r in (await api.get(registrations, params={"updated_since": since})).json()["items"]] == [waiting["id"]]

    # A cancellation changes the cancelled registration and the one moved up.
    frozen_time.tick(minutes=5)
    since = now().isoformat()
    await api.post(f"{registrations}/{seat['id']}/cancel")
    changed = (await api.get(registrations, params={"updated_since": since})).json()["items"]
    assert {(r["id"], r["status"]) for r in changed} == {(seat["id"], "cancelled"), (waiting["id"], "confirmed")}

    # Filters and pages.
    await api.post(registrations, json=signup(quiet, wang))
    mine = (await api.get(registrations, params={"customer_id": li.id})).json()["items"]
    assert [r["id"] for r in mine] == [waiting["id"]]
    of_busy = (await api.get(registrations, params={"activity_id": busy.id})).json()["items"]
    assert {r["id"] for r in of_busy} == {seat["id"], waiting["id"]}
    page = (await api.get(registrations, params={"limit": 2})).json()
    rest = (await api.get(registrations, params={"limit": 2, "cursor": page["next_cursor"]})).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None


async def test_another_estate_and_an_estate_without_activities_do_not_exist_for_the_token(app, estates, api_client):
    east, west, _li, _wang = estates
    theirs = await make_activity(west.project)
    with unscoped():
        their_signup = await reg.register(theirs, west.customer, 0)
    api = await api_client([east.project], ["activities:write"])
    assert (await api.get(f"{ACTIVITIES.format(code='EAST')}/{theirs.id}")).status_code == 404
    assert (await api.get(f"{ACTIVITIES.format(code='WEST')}/{theirs.id}")).status_code == 404
    assert (await api.get(f"{REGISTRATIONS.format(code='EAST')}/{their_signup.id}")).status_code == 404
    assert (await api.post(f"{REGISTRATIONS.format(code='EAST')}/{their_signup.id}/cancel")).status_code == 404
    assert (await api.get(REGISTRATIONS.format(code="EAST"))).json()["items"] == []
    await their_signup.refresh_from_db()
    assert their_signup.status == RegistrationStatus.CONFIRMED

    ours = await make_activity(east.project)
    assert (await api.get(ACTIVITIES.format(code="EAST"))).status_code == 200
    with unscoped():
        await ProjectModule.filter(project_id=east.project.id, module="activities").update(enabled=False)
    assert (await api.get(ACTIVITIES.format(code="EAST"))).status_code == 404
    assert (await api.get(f"{ACTIVITIES.format(code='EAST')}/{ours.id}")).status_code == 404
    answer = await api.post(REGISTRATIONS.format(code="EAST"), json=signup(ours, east.customer))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    with unscoped():
        assert await Registration.filter(activity_id=ours.id).count() == 0


async def test_a_read_only_token_reads_but_cannot_register_or_cancel(app, estates, api_client):
    east, _west, _li, _wang = estates
    activity = await make_activity(east.project)
    with unscoped():
        mine = await reg.register(activity, east.customer, 0)
    reader = await api_client([east.project], ["activities:read"])
    assert (await reader.get(f"{REGISTRATIONS.format(code='EAST')}/{mine.id}")).json()["status"] == "confirmed"
    refused = await reader.post(REGISTRATIONS.format(code="EAST"), json=signup(activity, estates[2]))
    assert refused.status_code == 403 and refused.json()["error"]["required_scope"] == "activities:write"
    assert (await reader.post(f"{REGISTRATIONS.format(code='EAST')}/{mine.id}/cancel")).status_code == 403
    await mine.refresh_from_db()
    assert mine.status == RegistrationStatus.CONFIRMED
    with unscoped():
        assert await Registration.all().count() == 1
