"""Handover batches and appointments: slots fill up, full slots and double bookings are refused, move, cancel, check-in."""

import asyncio

from core.api import unscoped
from plugins.handover import services
from plugins.handover.models import Appointment, AppointmentState, HandoverState, TimeSlot, UnitHandover
from tests.handover_helpers import clock, estate, local, login, make_batch  # noqa: F401  (fixtures)


async def _handovers():
    with unscoped():
        return await UnitHandover.all().order_by("id").prefetch_related("unit")


async def _slots():
    with unscoped():
        return await TimeSlot.all().order_by("day", "start_minute")


async def test_a_batch_plans_every_unit_and_its_slots_fill_up(make_client, estate):
    boss = await login(make_client, "boss")
    batch_url = await make_batch(boss, estate)
    handovers = await _handovers()
    assert [h.unit.code for h in handovers] == ["1-1-101", "1-1-102", "1-1-103"]
    assert all(h.state == HandoverState.PLANNED and h.owner_id for h in handovers)
    slots = await _slots()
    assert len(slots) == 6 and slots[0].start == "09:00" and slots[0].capacity == 2

    agent = await login(make_client, "agent")
    first = slots[0]
    for handover in handovers[:2]:
        response = await agent.form(f"/p/EAST/handover/handovers/{handover.id}/book", {"slot": first.id, "visitors": "2"})
        assert response.status_code == 303, response.text[:500]
    page = await agent.get(batch_url)
    assert "Full" in page.text or "已满" in page.text

    # The third owner cannot get into the full slot: a clear message, nothing changed.
    response = await agent.form(f"/p/EAST/handover/handovers/{handovers[2].id}/book", {"slot": first.id})
    assert response.status_code == 422
    assert "full" in response.text.lower() or "已满" in response.text
    with unscoped():
        assert (await TimeSlot.get(id=first.id)).booked == 2
        assert not await Appointment.filter(handover_id=handovers[2].id).exists()
        assert (await UnitHandover.get(id=handovers[2].id)).state == HandoverState.PLANNED

    # A second appointment for the same unit is refused too.
    response = await agent.form(f"/p/EAST/handover/handovers/{handovers[0].id}/book", {"slot": slots[1].id})
    assert response.status_code == 422
    with unscoped():
        assert (await TimeSlot.get(id=slots[1].id)).booked == 0

    schedule = await agent.get(f"{batch_url}/schedule?day=2026-05-04")
    assert schedule.status_code == 200 and "1-1-101" in schedule.text and "1-1-102" in schedule.text
    assert "data-print" in schedule.text


async def test_moving_and_cancelling_free_the_seat(make_client, estate):
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    handovers = await _handovers()
    slots = await _slots()
    agent = await login(make_client, "agent")
    await agent.form(f"/p/EAST/handover/handovers/{handovers[0].id}/book", {"slot": slots[0].id})
    with unscoped():
        appointment = await Appointment.get(handover_id=handovers[0].id)

    response = await agent.form(f"/p/EAST/handover/appointments/{appointment.id}/move", {"slot": slots[3].id})
    assert response.status_code == 303
    with unscoped():
        assert [s.booked for s in await TimeSlot.filter(id__in=[slots[0].id, slots[3].id]).order_by("day", "start_minute")] == [0, 1]
        moved = await Appointment.get(active_for=handovers[0].id)
        assert moved.slot_id == slots[3].id
        assert (await Appointment.get(id=appointment.id)).state == AppointmentState.RESCHEDULED

    # Moving into a full slot changes nothing: the old seat stays taken.
    await agent.form(f"/p/EAST/handover/handovers/{handovers[1].id}/book", {"slot": slots[4].id})
    await agent.form(f"/p/EAST/handover/handovers/{handovers[2].id}/book", {"slot": slots[4].id})
    response = await agent.form(f"/p/EAST/handover/appointments/{moved.id}/move", {"slot": slots[4].id})
    assert response.status_code == 422
    with unscoped():
        assert (await TimeSlot.get(id=slots[3].id)).booked == 1
        assert (await TimeSlot.get(id=slots[4].id)).booked == 2
        assert (await Appointment.get(id=moved.id)).state == AppointmentState.BOOKED

    response = await agent.form(f"/p/EAST/handover/appointments/{moved.id}/cancel", {"reason": "业主出差"})
    assert response.status_code == 303
    with unscoped():
        assert (await TimeSlot.get(id=slots[3].id)).booked == 0
        assert (await UnitHandover.get(id=handovers[0].id)).state == HandoverState.PLANNED
    # Cancelling twice is refused.
    response = await agent.form(f"/p/EAST/handover/appointments/{moved.id}/cancel", {})
    assert response.status_code == 422
    # Moving it from a page left open: the move form is gone, so the alert at the top says why.
    response = await agent.form(f"/p/EAST/handover/appointments/{moved.id}/move", {})
    assert response.status_code == 422 and 'id="handover-error"' in response.text


async def test_check_in_only_on_the_day(make_client, estate, clock):
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    handovers = await _handovers()
    slots = await _slots()
    agent = await login(make_client, "agent")
    tomorrow = next(s for s in slots if s.day.day == 5)
    await agent.form(f"/p/EAST/handover/handovers/{handovers[0].id}/book", {"slot": tomorrow.id})
    with unscoped():
        appointment = await Appointment.get(handover_id=handovers[0].id)
    response = await agent.form(f"/p/EAST/handover/appointments/{appointment.id}/checkin", {})
    assert response.status_code == 422
    clock.set(local(2026, 5, 5, 9, 5))
    agent = await login(make_client, "agent")  # a day on, yesterday's session has expired
    response = await agent.form(f"/p/EAST/handover/appointments/{appointment.id}/checkin", {})
    assert response.status_code == 303
    with unscoped():
        assert (await UnitHandover.get(id=handovers[0].id)).state == HandoverState.CHECKED_IN
        assert (await Appointment.get(id=appointment.id)).checked_in_at is not None


async def test_bad_batch_and_slot_input_is_refused_next_to_the_field(make_client, estate):
    boss = await login(make_client, "boss")
    response = await boss.form("/p/EAST/handover/batches/new", {"name": "X", "start_date": "2026-05-06", "end_date": "2026-05-04"})
    assert response.status_code == 422 and "f-end_date-error" in response.text
    batch_url = await make_batch(boss, estate)
    response = await boss.form(batch_url + "/slots", {
        "first_day": "2026-05-04", "last_day": "2026-05-04", "day_start": "9h", "day_end": "11:00", "length": "60", "capacity": "2",
    })
    assert response.status_code == 422 and "f-day_start-error" in response.text
    assert len(await _slots()) == 6


async def test_concurrent_bookings_never_overfill_a_slot(make_client, estate):
    """Three owners' bookings for the last seats of one slot, each in its own transaction: two get in."""
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    handovers = await _handovers()
    slot = (await _slots())[0]
    project = estate["east"]

    async def book(handover):
        with unscoped():
            return await services.book(handover, slot, project, by=estate["agent"])

    results = await asyncio.gather(*(book(h) for h in handovers), return_exceptions=True)
    refused = [r for r in results if isinstance(r, services.HandoverError)]
    assert len(refused) == 1 and refused[0].field == "slot"
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, services.HandoverError)]
    with unscoped():
        assert (await TimeSlot.get(id=slot.id)).booked == 2
        assert await Appointment.filter(slot_id=slot.id, active_for__isnull=False).count() == 2
