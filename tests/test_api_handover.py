"""The handover's JSON API: who holds each key set and since when, each unit's handover status, synced by change."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.models import Building, ProjectModule
from core.scope import unscoped
from plugins.handover import services
from plugins.handover.models import HandoverState, HolderKind, TimeSlot, UnitHandover
from tests.handover_helpers import TODAY, clock, estate, local  # noqa: F401  (fixtures)

KEYS = "/api/v1/projects/{code}/handover/key-sets"
HANDOVERS = "/api/v1/projects/{code}/handover/handovers"


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def register(estate, tag: str, unit: int = 0, project: str = "east"):
    units = estate["units"] if project == "east" else estate["west_units"]
    with unscoped():
        return await services.register_keyset(units[unit], tag=tag, kind="entrance", count=2, slot="A-01",
                                              keeper=estate["tech"])


async def plan(estate, project_key: str = "east"):
    """A batch over building 1 from today with two one-hour slots a day; returns (handovers, slots)."""
    project = estate[project_key]
    with unscoped():
        building = await Building.get(code="1", project_id=project.id)
        batch = await services.create_batch(project, name="一期交房", start=TODAY, end=TODAY + timedelta(days=2),
                                            building_ids=[building.id], by=None)
        await services.add_slots(batch, first=TODAY, last=TODAY + timedelta(days=2), start=9 * 60, end=11 * 60,
                                 length=60, capacity=2)
        handovers = await UnitHandover.filter(batch_id=batch.id).order_by("id")
        slots = await TimeSlot.filter(batch_id=batch.id).order_by("day", "start_minute")
    return handovers, slots


async def test_a_key_set_shows_its_holder_since_when_and_until_when(app, estate, clock, api_client):
    api = await api_client([estate["east"]], ["handover:read"])
    keyset = await register(estate, "K-101-A")
    other = await register(estate, "K-102-A", unit=1)
    answer = await api.get(f"{KEYS.format(code='EAST')}/{keyset.id}")
    assert answer.status_code == 200, answer.text
    status = answer.json()
    assert status["state"] == "in" and status["checkout"] is None and status["slot"] == "A-01"
    assert status["custodian"] == {"kind": "staff", "name": "刘师傅", "customer_id": None}
    assert status["web_path"] == f"/p/EAST/handover/keys/{keyset.id}"

    clock.tick(minutes=30)
    since = clock.now()
    owner = estate["owners"][0]
    with unscoped():
        checkout = await services.check_out(keyset, holder_kind=HolderKind.OWNER, holder=owner, purpose="量房",
                                            due_at=local(2026, 5, 4, 12, 0), by=estate["tech"])
    status = (await api.get(f"{KEYS.format(code='EAST')}/{keyset.id}")).json()
    assert status["state"] == "out"
    assert status["custodian"] == {"kind": "owner", "name": "业主1", "customer_id": owner.id}
    held = status["checkout"]
    assert held["id"] == checkout.id and held["holder_name"] == "业主1" and held["holder_customer_id"] == owner.id
    assert held["purpose"] == "量房"
    assert at(held["out_at"]) == local(2026, 5, 4, 9, 30) and at(held["due_at"]) == local(2026, 5, 4, 12, 0)

    # Only the set that changed comes with updated_since; filters by unit and state.
    changed = (await api.get(KEYS.format(code="EAST"), params={"updated_since": since.isoformat()})).json()
    assert [k["tag"] for k in changed["items"]] == ["K-101-A"]
    assert [k["tag"] for k in (await api.get(KEYS.format(code="EAST"), params={"state": "in"})).json()["items"]] == [
        "K-102-A"]
    by_unit = await api.get(KEYS.format(code="EAST"), params={"unit_id": estate["units"][1].id})
    assert [k["id"] for k in by_unit.json()["items"]] == [other.id]
    # In order of change: the set checked out last comes last.
    assert [k["tag"] for k in (await api.get(KEYS.format(code="EAST"))).json()["items"]] == ["K-102-A", "K-101-A"]

    clock.tick(hours=1)
    since = clock.now()
    with unscoped():
        await services.check_in_keys(keyset, returned_by="业主1", receiver=estate["tech"], sealed=False)
    changed = (await api.get(KEYS.format(code="EAST"), params={"updated_since": since.isoformat()})).json()["items"]
    assert [k["tag"] for k in changed] == ["K-101-A"]
    assert changed[0]["state"] == "in" and changed[0]["checkout"] is None and changed[0]["sealed"] is False
    assert changed[0]["custodian"]["kind"] == "staff" and at(changed[0]["updated_at"]) == since


async def test_a_units_handover_status_shows_its_appointment_and_moves_with_it(app, estate, clock, api_client):
    api = await api_client([estate["east"]], ["handover:read"])
    handovers, slots = await plan(estate)
    first = handovers[0]
    status = (await api.get(f"{HANDOVERS.format(code='EAST')}/{first.id}")).json()
    assert status["state"] == "planned" and status["appointment"] is None
    assert status["unit_id"] == estate["units"][0].id and status["owner_id"] == estate["owners"][0].id
    assert status["batch"]["name"] == "一期交房" and status["accepted_at"] is None

    clock.tick(minutes=5)
    since = clock.now()
    with unscoped():
        appointment = await services.book(first, slots[1], estate["east"], by=estate["agent"], visitors=2)
    changed = (await api.get(HANDOVERS.format(code="EAST"), params={"updated_since": since.isoformat()})).json()
    assert [h["id"] for h in changed["items"]] == [first.id]
    status = changed["items"][0]
    assert status["state"] == "booked"
    booked = status["appointment"]
    assert booked["id"] == appointment.id and booked["state"] == "booked" and booked["visitors"] == 2
    assert at(booked["starts_at"]) == local(2026, 5, 4, 10, 0) and at(booked["ends_at"]) == local(2026, 5, 4, 11, 0)

    # Moving the appointment keeps the state but is a change a sync must see.
    clock.tick(minutes=5)
    since = clock.now()
    with unscoped():
        await services.reschedule(appointment, slots[2], estate["east"], by=estate["agent"])
    changed = (await api.get(HANDOVERS.format(code="EAST"), params={"updated_since": since.isoformat()})).json()
    assert [h["id"] for h in changed["items"]] == [first.id]
    assert changed["items"][0]["state"] == "booked"
    assert at(changed["items"][0]["appointment"]["starts_at"]) == local(2026, 5, 5, 9, 0)

    # A unit's status by its id; filters by state.
    by_unit = (await api.get(HANDOVERS.format(code="EAST"), params={"unit_id": estate["units"][1].id})).json()
    assert [h["id"] for h in by_unit["items"]] == [handovers[1].id]
    planned = (await api.get(HANDOVERS.format(code="EAST"), params={"state": HandoverState.PLANNED})).json()
    assert {h["id"] for h in planned["items"]} == {h.id for h in handovers[1:]}


async def test_another_estates_keys_and_handovers_do_not_exist_for_the_token(app, estate, clock, api_client):
    api = await api_client([estate["east"]], ["handover:read"])
    theirs = await register(estate, "W-1", project="west")
    ours = await register(estate, "E-1")
    assert (await api.get(f"{KEYS.format(code='EAST')}/{theirs.id}")).status_code == 404
    assert (await api.get(f"{KEYS.format(code='WEST')}/{theirs.id}")).status_code == 404
    assert (await api.get(KEYS.format(code="WEST"))).status_code == 404
    assert [k["tag"] for k in (await api.get(KEYS.format(code="EAST"))).json()["items"]] == ["E-1"]

    with unscoped():
        await ProjectModule.filter(project_id=estate["east"].id, module="handover").update(enabled=False)
    for url in (KEYS.format(code="EAST"), f"{KEYS.format(code='EAST')}/{ours.id}", HANDOVERS.format(code="EAST")):
        answer = await api.get(url)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", url


async def test_the_handover_scope_is_needed_and_queries_are_checked(app, estate, clock, api_client):
    await register(estate, "E-1")
    other = await api_client([estate["east"]], ["complaints:write", "hotline:write"])
    answer = await other.get(KEYS.format(code="EAST"))
    assert answer.status_code == 403 and answer.json()["error"]["required_scope"] == "handover:read"
    api = await api_client([estate["east"]], ["handover:read"])
    answer = await api.get(KEYS.format(code="EAST"), params={"state": "borrowed", "updated_since": "2026-05-04T09:00"})
    assert answer.status_code == 422
    fields = {f["field"]: f for f in answer.json()["error"]["fields"]}
    assert set(fields) == {"state", "updated_since"} and fields["state"]["location"] == "query"
    # No endpoint changes custody: the key cabinet's checks stay on the pages.
    assert (await api.post(KEYS.format(code="EAST"), json={})).status_code == 405
