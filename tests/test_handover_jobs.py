"""Handover jobs with frozen time: owners' reminders and booking links, overdue keys, defect deadlines."""

from core.api import timeline, unscoped
from plugins.handover import services
from plugins.handover.models import Appointment, Defect, HolderKind, KeyCheckout, KeySet, TimeSlot, UnitHandover
from tests.handover_helpers import clock, estate, local, login, make_batch  # noqa: F401  (fixtures)


async def _handovers():
    with unscoped():
        return await UnitHandover.all().order_by("id")


async def test_owners_get_a_booking_link_and_a_reminder_the_day_before(make_client, estate, clock, outbox, run_job):
    boss = await login(make_client, "boss")
    batch_url = await make_batch(boss, estate)
    response = await boss.form(batch_url + "/invite", {})
    assert response.status_code == 303
    invitations = await outbox.messages(to="owner1@example.com")
    assert len(invitations) == 1 and "1-1-101" in invitations[0].subject
    path = next(line for line in invitations[0].text.splitlines() if "/handover/appointment/" in line)
    path = path[path.index("/handover/appointment/"):].strip()

    # The owner books through the link, without logging in.
    owner = make_client()
    page = await owner.get(path)
    assert page.status_code == 200 and "1-1-101" in page.text
    with unscoped():
        slot = await TimeSlot.filter(day=local(2026, 5, 5).date()).order_by("start_minute").first()
    response = await owner.form(path, {"action": "book", "slot": str(slot.id)})
    assert response.status_code == 303, response.text[:500]
    handover = (await _handovers())[0]
    with unscoped():
        appointment = await Appointment.get(active_for=handover.id)
    assert appointment.via == "link" and appointment.slot_id == slot.id

    # A tampered link shows a friendly refusal.
    assert (await owner.get(path[:-3] + "xyz")).status_code == 404

    # The evening before (18:00 on 4 May), the owner is reminded; a second run sends nothing more.
    clock.set(local(2026, 5, 4, 18, 0))
    await run_job("handover.appointment_reminders", estate["east"])
    reminders = await outbox.messages(to="owner1@example.com")
    assert len(reminders) == 2 and "09:00" in reminders[-1].subject
    clock.tick(minutes=5)
    await run_job("handover.appointment_reminders", estate["east"])
    assert len(await outbox.messages(to="owner1@example.com")) == 2

    # The owner cancels through the same link.
    response = await owner.form(path, {"action": "cancel"})
    assert response.status_code == 303
    with unscoped():
        assert not await Appointment.filter(active_for=handover.id).exists()
        assert (await TimeSlot.get(id=slot.id)).booked == 0


async def test_overdue_keys_alert_the_custodian_and_the_manager_once(make_client, estate, clock, outbox, run_job):
    with unscoped():
        keyset = await services.register_keyset(estate["units"][0], tag="K-1", kind="entrance", count=2, slot="A-01",
                                                keeper=estate["tech"])
        await services.check_out(keyset, holder_kind=HolderKind.OWNER, holder=estate["owners"][0], purpose="量房",
                                 due_at=local(2026, 5, 4, 12, 0), by=estate["agent"])
    clock.set(local(2026, 5, 4, 11, 45))
    await run_job("handover.overdue_keys", estate["east"])
    assert await outbox.messages(to="owner1@example.com") == []

    clock.set(local(2026, 5, 4, 14, 0))
    await run_job("handover.overdue_keys", estate["east"])
    to_owner = await outbox.messages(to="owner1@example.com")
    assert len(to_owner) == 1 and "1-1-101" in to_owner[0].subject
    assert len(await outbox.messages(to="boss@example.com")) == 1  # the manager
    assert len(await outbox.messages(to="agent@example.com")) == 1  # who issued the keys
    with unscoped():
        checkout = await KeyCheckout.get()
        assert checkout.overdue_alerted_at == local(2026, 5, 4, 14, 0)
        assert (await timeline.history(await KeySet.get(id=keyset.id)))[0].kind == "overdue"

    clock.tick(minutes=15)
    await run_job("handover.overdue_keys", estate["east"])
    assert len(await outbox.messages(to="boss@example.com")) == 1

    tech = await login(make_client, "tech")
    overdue = await tech.get("/p/EAST/handover/checkouts?overdue=1")
    assert overdue.status_code == 200 and "K-1" in overdue.text


async def test_defect_deadlines_remind_the_contractor_then_escalate(make_client, estate, clock, outbox, run_job):
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    handover = (await _handovers())[0]
    with unscoped():
        defect = await services.record_defect(
            handover, estate["east"], by=estate["tech"], location="客厅", description="墙面开裂", category="walls",
            severity="major", responsible="contractor", contractor_id=estate["builder"].id,
            deadline=local(2026, 5, 6).date(),
        )
    clock.set(local(2026, 5, 5, 8, 0))
    await run_job("handover.defect_deadlines", estate["east"])
    due = await outbox.messages(to="warranty@builder.example")
    assert len(due) == 1 and "YF000001" in due[0].subject

    clock.set(local(2026, 5, 7, 8, 0))
    await run_job("handover.defect_deadlines", estate["east"])
    escalated = await outbox.messages(to="boss@example.com")
    assert len(escalated) == 1 and "YF000001" in escalated[0].subject
    with unscoped():
        assert (await Defect.get(id=defect.id)).escalation_level == 1

    clock.set(local(2026, 5, 8, 8, 0))
    await run_job("handover.defect_deadlines", estate["east"])
    assert len(await outbox.messages(to="boss@example.com")) == 1  # no repeat at the same level

    clock.set(local(2026, 5, 13, 8, 0))
    await run_job("handover.defect_deadlines", estate["east"])
    assert len(await outbox.messages(to="boss@example.com")) == 2
    with unscoped():
        assert (await Defect.get(id=defect.id)).escalation_level == 2
    boss = await login(make_client, "boss")  # days on, the first session has expired
    listing = await boss.get("/p/EAST/handover/defects?overdue=1")
    assert "YF000001" in listing.text
