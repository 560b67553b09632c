"""What staff (and owners through their link) do to handovers, defects and keys.

Every function runs its changes in one transaction and raises `HandoverError`
(a message for the user, and the form field it belongs to) when the change is
not allowed; nothing is written then. Races between two people acting at once
are settled by the database: conditional UPDATEs that say how many rows they
changed, unique columns, and on PostgreSQL a row lock on the unit's handover
for changes that must see a consistent set of defects.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from core.api import local_today as date_in
from core.api import (
    Customer, EmailError, Sequence, Unit, User, attachments, emit, gettext, links, now, queue_email, timeline, transaction,
)
from plugins.handover.models import (
    Appointment,
    AppointmentState,
    AuditFinding,
    AuditLine,
    AuditState,
    BookedVia,
    CabinetAudit,
    ChecklistLine,
    ChecklistTemplate,
    Contractor,
    Defect,
    DefectState,
    HandoverBatch,
    HandoverState,
    HolderKind,
    Inspection,
    InspectionItem,
    ItemResult,
    KeyCheckout,
    KeySet,
    KeyState,
    Responsible,
    Severity,
    TimeSlot,
    UnitHandover,
)


class HandoverError(ValueError):
    """A refused change; `field` names the form field the message belongs next to."""

    def __init__(self, message: str, field: str = "__all__"):
        super().__init__(message)
        self.message = message
        self.field = field


def clock() -> datetime:
    """Now, aware UTC: core's clock, which the test kit freezes."""
    return now()


def local_today(project, at: datetime | None = None) -> date:
    return date_in(project.timezone, at or clock())


def local_datetime(project, day: date, minute: int) -> datetime:
    """A local wall-clock time of the estate as aware UTC."""
    local = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=ZoneInfo(project.timezone))
    return local.astimezone(timezone.utc)


async def _lock_handover(handover_id: int) -> UnitHandover:
    """The handover row, locked until the transaction ends (PostgreSQL), re-read fresh (both)."""
    return await UnitHandover.filter(id=handover_id).select_for_update().get()


async def _touch_handover(handover_id: int) -> None:
    """Its appointment changed: marked changed (`updated_at`) so API syncs (`updated_since`) see the new time."""
    await UnitHandover.filter(id=handover_id).update()


# Batches and slots -------------------------------------------------------------------


async def create_batch(project, *, name: str, start: date, end: date, building_ids: Iterable[int], by: Any) -> HandoverBatch:
    """A batch planning every unit of the chosen buildings that has no handover yet."""
    building_ids = list(building_ids)
    if end < start:
        raise HandoverError(gettext("The last day is before the first day."), "end_date")
    if not building_ids:
        raise HandoverError(gettext("Choose at least one building."), "buildings")
    units = await Unit.filter(building_id__in=building_ids).order_by("code")
    taken = set(await UnitHandover.filter(unit_id__in=[u.id for u in units]).values_list("unit_id", flat=True))
    fresh = [u for u in units if u.id not in taken]
    if not fresh:
        raise HandoverError(gettext("Every unit of these buildings is already in a batch."), "buildings")
    owners = await _owners([u.id for u in fresh])
    try:
        async with transaction():
            batch = await HandoverBatch.create(
                project_id=project.id, name=name, start_date=start, end_date=end, created_by_id=_uid(by)
            )
            for unit in fresh:
                await UnitHandover.create(project_id=project.id, batch=batch, unit=unit, owner_id=owners.get(unit.id))
    except IntegrityError:
        raise HandoverError(gettext("A batch with this name already exists, or a unit was just planned by someone else."), "name") from None
    return batch


async def _owners(unit_ids: list[int]) -> dict[int, int]:
    """unit id -> the customer id of its current owner (the first one linked)."""
    from core.api import CustomerUnit, Relation

    links = await CustomerUnit.filter(unit_id__in=unit_ids, relation=Relation.OWNER, end_date__isnull=True).order_by("id")
    owners: dict[int, int] = {}
    for link in links:
        owners.setdefault(link.unit_id, link.customer_id)
    return owners


async def add_slots(batch: HandoverBatch, *, first: date, last: date, start: int, end: int, length: int, capacity: int) -> int:
    """Cut each day from `first` to `last` into slots of `length` minutes; returns how many were added."""
    if last < first:
        raise HandoverError(gettext("The last day is before the first day."), "last_day")
    if first < batch.start_date or last > batch.end_date:
        raise HandoverError(gettext("The days must lie within the batch (%(start)s – %(end)s).",
                                    start=batch.start_date.isoformat(), end=batch.end_date.isoformat()), "first_day")
    if end <= start:
        raise HandoverError(gettext("The day must end after it starts."), "day_end")
    if length < 10 or length > end - start:
        raise HandoverError(gettext("A slot lasts from 10 minutes to the whole day."), "length")
    if capacity < 1 or capacity > 500:
        raise HandoverError(gettext("Enter a capacity from 1 to 500."), "capacity")
    existing = set(await TimeSlot.filter(batch_id=batch.id).values_list("day", "start_minute"))
    added = 0
    async with transaction():
        day = first
        while day <= last:
            minute = start
            while minute + length <= end:
                if (day, minute) not in existing:
                    await TimeSlot.create(
                        project_id=batch.project_id, batch=batch, day=day, start_minute=minute,
                        end_minute=minute + length, capacity=capacity,
                    )
                    added += 1
                minute += length
            day += timedelta(days=1)
    if not added:
        raise HandoverError(gettext("These slots exist already."), "first_day")
    return added


# Appointments ---------------------------------------------------------------------------


async def _take_seat(slot_id: int) -> None:
    taken = await TimeSlot.filter(id=slot_id, booked__lt=F("capacity")).update(booked=F("booked") + 1)
    if not taken:
        raise HandoverError(gettext("This time slot is full. Choose another one."), "slot")


async def _create_appointment(handover: UnitHandover, slot: TimeSlot, *, by, via, visitors, note, at) -> Appointment:
    await _take_seat(slot.id)
    try:
        async with transaction():  # a savepoint: the unique column may refuse it
            return await Appointment.create(
                project_id=handover.project_id, handover=handover, slot=slot, active_for=handover.id, via=via,
                visitors=visitors, note=note, booked_by_id=_uid(by), created_at=at,
            )
    except IntegrityError:
        raise HandoverError(gettext("This unit already has an appointment: move or cancel it instead."), "slot") from None


async def _check_slot(handover: UnitHandover, slot: TimeSlot, project) -> None:
    if slot.batch_id != handover.batch_id:
        raise HandoverError(gettext("This time slot belongs to another batch."), "slot")
    if slot.day < local_today(project):
        raise HandoverError(gettext("This time slot is in the past."), "slot")


async def book(handover: UnitHandover, slot: TimeSlot, project, *, by=None, via: str = BookedVia.STAFF,
               visitors: int = 1, note: str = "") -> Appointment:
    """Book a seat in `slot` for the unit's owner; refused when the slot is full or the unit has one."""
    await _check_slot(handover, slot, project)
    if not 1 <= visitors <= 10:
        raise HandoverError(gettext("Enter from 1 to 10 visitors."), "visitors")
    at = clock()
    async with transaction():
        current = await _lock_handover(handover.id)
        if current.state == HandoverState.ACCEPTED:
            raise HandoverError(gettext("This unit has been handed over already."), "slot")
        appointment = await _create_appointment(current, slot, by=by, via=via, visitors=visitors, note=note, at=at)
        await UnitHandover.filter(id=handover.id, state=HandoverState.PLANNED).update(state=HandoverState.BOOKED)
        await _touch_handover(handover.id)
        await timeline.post(current, "appointment", gettext("Appointment booked for %(slot)s", slot=str(slot)),
                            author=by, data={"slot_id": slot.id, "via": via})
    return appointment


async def reschedule(appointment: Appointment, slot: TimeSlot, project, *, by=None, via: str = BookedVia.STAFF) -> Appointment:
    """Move to another slot: the old seat is freed and the new one taken together, or neither."""
    handover = await appointment.handover
    await _check_slot(handover, slot, project)
    if slot.id == appointment.slot_id:
        raise HandoverError(gettext("The appointment is in this time slot already."), "slot")
    at = clock()
    async with transaction():
        await _lock_handover(handover.id)
        moved = await Appointment.filter(id=appointment.id, state=AppointmentState.BOOKED).update(
            state=AppointmentState.RESCHEDULED, active_for=None, cancelled_at=at
        )
        if not moved:
            raise HandoverError(gettext("Only a booked appointment can be moved."), "slot")
        await TimeSlot.filter(id=appointment.slot_id).update(booked=F("booked") - 1)
        old = await appointment.slot
        new = await _create_appointment(handover, slot, by=by, via=via, visitors=appointment.visitors,
                                        note=appointment.note, at=at)
        await _touch_handover(handover.id)
        await timeline.post(handover, "appointment", gettext("Appointment moved from %(old)s to %(new)s", old=str(old), new=str(slot)),
                            author=by, data={"from_slot": old.id, "to_slot": slot.id, "via": via})
    return new


async def cancel(appointment: Appointment, *, by=None, reason: str = "") -> None:
    at = clock()
    handover = await appointment.handover
    async with transaction():
        await _lock_handover(handover.id)
        done = await Appointment.filter(id=appointment.id, state=AppointmentState.BOOKED).update(
            state=AppointmentState.CANCELLED, active_for=None, cancelled_at=at
        )
        if not done:
            raise HandoverError(gettext("Only a booked appointment can be cancelled."))
        await TimeSlot.filter(id=appointment.slot_id).update(booked=F("booked") - 1)
        await UnitHandover.filter(id=handover.id, state=HandoverState.BOOKED).update(state=HandoverState.PLANNED)
        await _touch_handover(handover.id)
        await timeline.post(handover, "appointment", gettext("Appointment cancelled") + (f": {reason}" if reason else ""),
                            author=by, data={"slot_id": appointment.slot_id})


async def check_in(appointment: Appointment, project, *, by) -> None:
    """The owner has arrived: only on the appointment's day."""
    slot = await appointment.slot
    today = local_today(project)
    if slot.day != today:
        raise HandoverError(gettext("The appointment is on %(day)s, not today.", day=slot.day.isoformat()))
    at = clock()
    async with transaction():
        done = await Appointment.filter(id=appointment.id, state=AppointmentState.BOOKED).update(
            state=AppointmentState.CHECKED_IN, checked_in_at=at
        )
        if not done:
            raise HandoverError(gettext("This appointment is not waiting for check-in."))
        handover = await _lock_handover(appointment.handover_id)
        await UnitHandover.filter(id=handover.id, state__in=[HandoverState.PLANNED, HandoverState.BOOKED]).update(
            state=HandoverState.CHECKED_IN
        )
        await _touch_handover(handover.id)
        await timeline.post(handover, "status", gettext("Owner checked in"), author=by,
                            data={"to": HandoverState.CHECKED_IN, "appointment_id": appointment.id})


# Owners' booking links ---------------------------------------------------------------------

BOOKING_LINK = "handover.booking"
BOOKING_LINK_DAYS = 30


def booking_path(handover: UnitHandover, at: datetime) -> str:
    """The owner's personal page to book, move or cancel (a signed link, valid for 30 days, reusable)."""
    token = links.make(BOOKING_LINK, {"h": handover.id, "p": handover.project_id},
                       expires_in=timedelta(days=BOOKING_LINK_DAYS), now=at)
    return f"/handover/appointment/{token}"


async def invite(handovers: Iterable[UnitHandover], project, *, by) -> int:
    """Email each owner a booking link; returns how many were queued. Owners without email are skipped."""
    at = clock()
    sent = 0
    async with transaction():
        for handover in handovers:
            await handover.fetch_related("owner", "unit", "batch")
            owner = handover.owner
            if owner is None or not owner.email:
                continue
            try:
                await queue_email(
                    to=owner.email, template="handover/invitation", locale=owner.locale, project_id=project.id,
                    related=f"handover.UnitHandover:{handover.id}",
                    context={"project": project, "tz": project.timezone, "owner": owner, "unit": handover.unit,
                             "batch": handover.batch, "manage_url": booking_path(handover, at)},
                )
            except EmailError:
                continue
            await timeline.post(handover, "email", gettext("Booking link emailed to %(name)s", name=owner.name), author=by)
            sent += 1
    return sent


# Inspection -----------------------------------------------------------------------------


async def checklist_for(unit: Unit) -> ChecklistTemplate | None:
    """The checklist of the unit's type, or the general one (empty unit type)."""
    return (
        await ChecklistTemplate.filter(project_id=unit.project_id, layout=unit.layout).first()
        or await ChecklistTemplate.filter(project_id=unit.project_id, layout="").first()
    )


def parse_checklist(text: str) -> list[tuple[str, str, bool]]:
    """Lines "Room | Item", a leading "*" marks a mandatory item: [(room, item, mandatory), ...]."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        mandatory = line.startswith("*")
        room, sep, item = line.lstrip("*").partition("|")
        room, item = room.strip(), item.strip()
        if not sep or not room or not item:
            raise HandoverError(gettext("Line %(n)s: write \"Room | Item\".", n=number), "lines")
        if len(room) > 32 or len(item) > 64:
            raise HandoverError(gettext("Line %(n)s is too long (room up to 32, item up to 64 characters).", n=number), "lines")
        lines.append((room, item, mandatory))
    if not lines:
        raise HandoverError(gettext("Add at least one line."), "lines")
    return lines


async def save_checklist(project, template: ChecklistTemplate | None, *, layout: str, name: str, text: str) -> ChecklistTemplate:
    lines = parse_checklist(text)
    try:
        async with transaction():
            if template is None:
                template = await ChecklistTemplate.create(project_id=project.id, layout=layout, name=name)
            else:
                template.layout, template.name = layout, name
                await template.save()
                await ChecklistLine.filter(template_id=template.id).delete()
            for position, (room, item, mandatory) in enumerate(lines):
                await ChecklistLine.create(project_id=project.id, template=template, room=room, item=item,
                                           mandatory=mandatory, position=position)
    except IntegrityError:
        raise HandoverError(gettext("There is a checklist for this unit type already."), "layout") from None
    return template


async def start_inspection(handover: UnitHandover, *, by) -> Inspection:
    unit = await Unit.get(id=handover.unit_id)
    template = await checklist_for(unit)
    if template is None:
        raise HandoverError(gettext("There is no checklist for unit type “%(layout)s”. Add one under Checklists first.",
                                    layout=unit.layout or "—"))
    lines = await ChecklistLine.filter(template_id=template.id).order_by("position", "id")
    async with transaction():
        current = await _lock_handover(handover.id)
        if current.state == HandoverState.ACCEPTED:
            raise HandoverError(gettext("This unit has been handed over already."))
        if await Inspection.filter(handover_id=handover.id, finished_at__isnull=True).exists():
            raise HandoverError(gettext("An inspection of this unit is already under way."))
        inspection = await Inspection.create(
            project_id=handover.project_id, handover=current, checklist_name=template.name, inspector_id=_uid(by),
            started_at=clock(),
        )
        for line in lines:
            await InspectionItem.create(project_id=handover.project_id, inspection=inspection, room=line.room,
                                        item=line.item, mandatory=line.mandatory, position=line.position)
        await UnitHandover.filter(id=handover.id).update(state=HandoverState.INSPECTING)
        await timeline.post(current, "status", gettext("Inspection started (%(checklist)s)", checklist=template.name),
                            author=by, data={"to": HandoverState.INSPECTING, "inspection_id": inspection.id})
    return inspection


async def mark_item_ok(item: InspectionItem, *, by) -> None:
    inspection = await item.inspection
    async with transaction():
        await _lock_handover(inspection.handover_id)
        if await Defect.filter(item_id=item.id, state__in=DefectState.UNRESOLVED).exists():
            raise HandoverError(gettext("This item has an unresolved defect."))
        await InspectionItem.filter(id=item.id).update(result=ItemResult.OK, checked_by_id=_uid(by), checked_at=clock())


async def finish_inspection(inspection: Inspection, *, by) -> None:
    pending = await InspectionItem.filter(inspection_id=inspection.id, result=ItemResult.PENDING).count()
    if pending:
        raise HandoverError(gettext("%(n)s items are not checked yet.", n=pending))
    async with transaction():
        done = await Inspection.filter(id=inspection.id, finished_at__isnull=True).update(finished_at=clock())
        if not done:
            raise HandoverError(gettext("This inspection is finished already."))
        handover = await _lock_handover(inspection.handover_id)
        await timeline.post(handover, "status", gettext("Inspection finished"), author=by, data={"inspection_id": inspection.id})


async def record_defect(handover: UnitHandover, project, *, by, location: str, description: str, category: str,
                        severity: str, responsible: str, contractor_id: int | None, deadline: date,
                        item_id: int | None = None, photos: Iterable[Any] = ()) -> Defect:
    """A defect found on site, numbered, with its photos; marks its checklist item as a defect.

    A photo the server cannot store (disk full) does not lose the defect: it is
    recorded without it and `defect.photo_problem` says why.
    """
    if not location:
        raise HandoverError(gettext("Say where the defect is."), "location")
    if not description:
        raise HandoverError(gettext("Describe the defect."), "description")
    if severity not in Severity.CHOICES:
        raise HandoverError(gettext("Choose one of the listed options."), "severity")
    if responsible == Responsible.CONTRACTOR:
        if contractor_id is None or not await Contractor.filter(id=contractor_id, project_id=handover.project_id, is_active=True).exists():
            raise HandoverError(gettext("Choose the contractor who repairs it under warranty."), "contractor")
    elif responsible == Responsible.IN_HOUSE:
        contractor_id = None
    else:
        raise HandoverError(gettext("Choose who repairs it."), "responsible")
    if deadline < local_today(project):
        raise HandoverError(gettext("The deadline is in the past."), "deadline")
    item = None
    if item_id is not None:
        item = await InspectionItem.get_or_none(id=item_id)
        if item is None or (await item.inspection).handover_id != handover.id:
            raise HandoverError(gettext("Choose an item of this unit's inspection."), "item")
    at = clock()
    async with transaction():
        current = await _lock_handover(handover.id)
        if current.state == HandoverState.ACCEPTED:
            raise HandoverError(gettext("This unit has been handed over already."))
        number = await Sequence.take(handover.project_id, "handover.defect")
        defect = await Defect.create(
            project_id=handover.project_id, number=f"YF{number:06d}", handover=current, unit_id=current.unit_id,
            item=item, mandatory=bool(item and item.mandatory) or severity == Severity.CRITICAL, location=location,
            description=description, category=category, severity=severity, responsible=responsible,
            contractor_id=contractor_id, deadline=deadline, recorded_by_id=_uid(by), created_at=at,
        )
        if item is not None:
            await InspectionItem.filter(id=item.id).update(result=ItemResult.DEFECT, checked_by_id=_uid(by), checked_at=at)
        defect.photo_problem = ""
        for photo in photos:
            try:
                await attachments.attach(defect, photo, author=by)
            except attachments.StorageError as exc:
                # The server's disk is full, not the photo's fault: the defect is kept without it, and the user told.
                defect.photo_problem = str(exc)
            except attachments.AttachmentError as exc:
                raise HandoverError(str(exc), "photo") from None
        await timeline.post(defect, "status", gettext("Defect recorded"), author=by, data={"to": DefectState.OPEN})
        await timeline.post(current, "defect", f"{defect.number} · {location}: {description}", author=by,
                            data={"defect_id": defect.id})
    return defect


async def _defect_step(defect: Defect, source: Iterable[str], target: str, message: str, *, by, note: str = "",
                       **changes) -> None:
    async with transaction():
        await _lock_handover(defect.handover_id)
        done = await Defect.filter(id=defect.id, state__in=list(source)).update(state=target, **changes)
        if not done:
            current = await Defect.get(id=defect.id)
            raise HandoverError(gettext("The defect is “%(state)s” now: reload the page.",
                                        state=DefectState.CHOICES[current.state]))
        await timeline.post(defect, "status", message + (f": {note}" if note else ""), author=by,
                            data={"from": defect.state, "to": target})


async def record_repair(defect: Defect, *, by, note: str) -> None:
    if not note:
        raise HandoverError(gettext("Say what was repaired."), "repair_note")
    await _defect_step(defect, [DefectState.OPEN], DefectState.REPAIRED, gettext("Repaired"), by=by, note=note,
                       repair_note=note, repaired_at=clock())


async def reinspect(defect: Defect, project, *, by, passed: bool, note: str = "", deadline: date | None = None) -> None:
    if passed:
        await _defect_step(defect, [DefectState.REPAIRED], DefectState.VERIFIED, gettext("Re-inspection passed"),
                           by=by, note=note, verified_at=clock())
        return
    if not note:
        raise HandoverError(gettext("Say what is still wrong."), "reinspect_note")
    if deadline is None or deadline < local_today(project):
        raise HandoverError(gettext("Give a new deadline from today on."), "deadline")
    await _defect_step(defect, [DefectState.REPAIRED], DefectState.OPEN, gettext("Re-inspection failed"), by=by,
                       note=note, reopened=F("reopened") + 1, deadline=deadline, escalation_level=0, reminded_on=None)


async def owner_accepts_defect(defect: Defect, *, by) -> None:
    await _defect_step(defect, [DefectState.VERIFIED], DefectState.ACCEPTED, gettext("Owner accepted the repair"),
                       by=by, accepted_at=clock())


# The owner's acceptance --------------------------------------------------------------


async def acceptance_blockers(handover: UnitHandover) -> tuple[list[str], list[Defect]]:
    """(reasons the owner cannot accept yet, open defects they may accept with)."""
    reasons: list[str] = []
    inspection = await Inspection.filter(handover_id=handover.id).order_by("-id").first()
    if inspection is None:
        return [gettext("The unit has not been inspected.")], []
    pending = await InspectionItem.filter(inspection_id=inspection.id, mandatory=True, result=ItemResult.PENDING)
    if pending:
        reasons.append(gettext("Mandatory items not checked: %(items)s",
                               items=", ".join(f"{i.room} · {i.item}" for i in pending)))
    open_defects = await Defect.filter(handover_id=handover.id, state__in=DefectState.UNRESOLVED).order_by("id")
    mandatory = [d for d in open_defects if d.mandatory]
    if mandatory:
        reasons.append(gettext("Unresolved mandatory defects: %(numbers)s",
                               numbers=", ".join(f"{d.number} ({d.location})" for d in mandatory)))
    return reasons, [d for d in open_defects if not d.mandatory]


async def accept(handover: UnitHandover, *, by, signed_by: str, with_open_defects: bool, signed_form: Any = None) -> None:
    """The owner signs: the unit is handed over. Refused with unresolved mandatory items.

    Open defects that are not mandatory may stay open only when the owner
    accepts them as listed (`with_open_defects`); they are recorded on the
    handover. Repairs re-inspected but not yet signed off are accepted with it.
    """
    if not signed_by:
        raise HandoverError(gettext("Enter the name of the person who signed."), "signed_by")
    at = clock()
    async with transaction():
        current = await _lock_handover(handover.id)
        if current.state == HandoverState.ACCEPTED:
            raise HandoverError(gettext("This unit has been handed over already."))
        reasons, open_defects = await acceptance_blockers(current)
        if reasons:
            raise HandoverError(" ".join(reasons))
        if open_defects and not with_open_defects:
            raise HandoverError(gettext("Open defects: %(numbers)s. The owner must accept them as listed.",
                                        numbers=", ".join(d.number for d in open_defects)), "with_open_defects")
        listed = [{"id": d.id, "number": d.number, "location": d.location, "description": d.description}
                  for d in open_defects]
        done = await UnitHandover.filter(id=handover.id).exclude(state=HandoverState.ACCEPTED).update(
            state=HandoverState.ACCEPTED, accepted_at=at, signed_by=signed_by, accepted_by_id=_uid(by),
            open_defects_accepted=listed,
        )
        if not done:
            raise HandoverError(gettext("This unit has been handed over already."))
        for defect in await Defect.filter(handover_id=handover.id, state=DefectState.VERIFIED):
            await Defect.filter(id=defect.id).update(state=DefectState.ACCEPTED, accepted_at=at)
            await timeline.post(defect, "status", gettext("Accepted by the owner at handover"), author=by,
                                data={"from": DefectState.VERIFIED, "to": DefectState.ACCEPTED})
        if signed_form is not None:
            try:
                await attachments.attach(current, signed_form, author=by)
            except attachments.AttachmentError as exc:
                raise HandoverError(str(exc), "signed_form") from None
        body = gettext("Handed over, signed by %(name)s", name=signed_by)
        if listed:
            body += " · " + gettext("open defects accepted: %(numbers)s", numbers=", ".join(d["number"] for d in listed))
        await timeline.post(current, "status", body, author=by, data={"to": HandoverState.ACCEPTED, "open_defects": listed})


# Keys ------------------------------------------------------------------------------------


def _uid(who: Any) -> int | None:
    if who is None or isinstance(who, int):
        return who
    return who.id


def _name(who: Any) -> str:
    return str(getattr(who, "display_name", "") or getattr(who, "username", "") or getattr(who, "name", "") or who)


async def register_keyset(unit: Unit, *, tag: str, kind: str, count: int, slot: str, keeper: User, sealed: bool = True,
                          by=None, replaces: KeySet | None = None) -> KeySet:
    """A key set into the cabinet, in the custody of `keeper` (a staff user)."""
    if not tag:
        raise HandoverError(gettext("Enter the tag number."), "tag")
    if not slot:
        raise HandoverError(gettext("Enter the cabinet slot."), "slot")
    if not 1 <= count <= 50:
        raise HandoverError(gettext("Enter from 1 to 50 keys."), "count")
    try:
        async with transaction():
            keyset = await KeySet.create(
                project_id=unit.project_id, unit=unit, tag=tag, kind=kind, count=count, slot=slot, sealed=sealed,
                state=KeyState.IN, custodian_kind=HolderKind.STAFF, custodian_user=keeper, custodian_name=_name(keeper),
                replaces=replaces,
            )
            await timeline.post(keyset, "status", gettext("Registered in slot %(slot)s, custodian %(name)s",
                                                          slot=slot, name=_name(keeper)), author=by,
                                data={"to": KeyState.IN, "custodian": _name(keeper)})
    except IntegrityError:
        raise HandoverError(gettext("Tag %(tag)s is used by another key set.", tag=tag), "tag") from None
    return keyset


def _not_in_message(keyset: KeySet) -> str:
    return gettext("Key set %(tag)s is not in the cabinet (%(state)s, with %(name)s).", tag=keyset.tag,
                   state=KeyState.CHOICES[keyset.state], name=keyset.custodian_name)


# Which column of a key set or checkout names the holder of each kind.
HOLDER_COLUMNS = {HolderKind.STAFF: ("user", User), HolderKind.OWNER: ("customer", Customer),
                  HolderKind.CONTRACTOR: ("contractor", Contractor)}


async def check_out(keyset: KeySet, *, holder_kind: str, holder: Any, purpose: str, due_at: datetime, by) -> KeyCheckout:
    """Hand a set from the cabinet to an owner, a contractor or a staff member, who becomes its custodian."""
    if holder is None:
        raise HandoverError(gettext("Choose who takes the keys."), "holder")
    if not purpose:
        raise HandoverError(gettext("Say why the keys are taken."), "purpose")
    at = clock()
    if due_at <= at:
        raise HandoverError(gettext("The keys must be due back later than now."), "due_at")
    column = HOLDER_COLUMNS.get(holder_kind)
    if column is None or not isinstance(holder, column[1]):
        raise HandoverError(gettext("Choose who takes the keys."), "holder")
    which, who = column[0], holder
    name = _name(holder)
    async with transaction():
        moved = await KeySet.filter(id=keyset.id, state=KeyState.IN).update(
            state=KeyState.OUT, custodian_kind=holder_kind, custodian_name=name,
            custodian_user_id=who.id if which == "user" else None,
            custodian_customer_id=who.id if which == "customer" else None,
            custodian_contractor_id=who.id if which == "contractor" else None,
        )
        if not moved:
            raise HandoverError(_not_in_message(await KeySet.get(id=keyset.id)))
        checkout = await KeyCheckout.create(
            project_id=keyset.project_id, keyset_id=keyset.id, open_for=keyset.id, holder_kind=holder_kind,
            holder_name=name, purpose=purpose, out_at=at, due_at=due_at, issued_by_id=_uid(by),
            **{f"holder_{which}_id": who.id},
        )
        await timeline.post(keyset, "checkout", gettext("Checked out to %(name)s (%(kind)s): %(purpose)s",
                                                        name=name, kind=HolderKind.CHOICES[holder_kind], purpose=purpose),
                            author=by, data={"checkout_id": checkout.id, "due_at": due_at.isoformat(), "custodian": name})
        await emit("handover.key_checked_out", keyset.project_id, actor_id=_uid(by), keyset_id=keyset.id,
                   checkout_id=checkout.id, unit_id=keyset.unit_id, tag=keyset.tag, holder_kind=holder_kind,
                   holder_name=name, purpose=purpose, out_at=at.isoformat(), due_at=due_at.isoformat())
    return checkout


async def check_in_keys(keyset: KeySet, *, returned_by: str, receiver: User, sealed: bool, slot: str = "") -> KeyCheckout:
    """The borrower brings the set back to `receiver`, who becomes its custodian in the cabinet."""
    if not returned_by:
        raise HandoverError(gettext("Enter who brought the keys back."), "returned_by")
    at = clock()
    async with transaction():
        checkout = await KeyCheckout.filter(open_for=keyset.id).first()
        moved = await KeySet.filter(id=keyset.id, state=KeyState.OUT).update(
            state=KeyState.IN, custodian_kind=HolderKind.STAFF, custodian_user_id=receiver.id,
            custodian_customer_id=None, custodian_contractor_id=None, custodian_name=_name(receiver),
            sealed=sealed, **({"slot": slot} if slot else {}),
        )
        if not moved or checkout is None:
            current = await KeySet.get(id=keyset.id)
            raise HandoverError(gettext("Key set %(tag)s is not checked out (%(state)s).", tag=current.tag,
                                        state=KeyState.CHOICES[current.state]))
        await KeyCheckout.filter(id=checkout.id, open_for=keyset.id).update(
            open_for=None, returned_at=at, returned_by_name=returned_by, received_by_id=receiver.id
        )
        note = gettext("Returned by %(who)s to %(receiver)s", who=returned_by, receiver=_name(receiver))
        if not sealed:
            note += " · " + gettext("seal broken")
        await timeline.post(keyset, "return", note, author=receiver,
                            data={"checkout_id": checkout.id, "custodian": _name(receiver), "sealed": sealed})
        await emit("handover.keys_returned", keyset.project_id, actor_id=receiver.id, keyset_id=keyset.id,
                   checkout_id=checkout.id, unit_id=keyset.unit_id, tag=keyset.tag, returned_by=returned_by,
                   received_by=_name(receiver), sealed=sealed, returned_at=at.isoformat())
    await checkout.refresh_from_db()
    return checkout


async def hand_keys_to_owner(handover: UnitHandover, *, by) -> list[KeySet]:
    """At handover the owner receives every set in the cabinet: the company's custody ends."""
    if handover.state != HandoverState.ACCEPTED:
        raise HandoverError(gettext("The owner has not accepted the unit yet."))
    owner = await Customer.get_or_none(id=handover.owner_id) if handover.owner_id else None
    if owner is None:
        raise HandoverError(gettext("The unit has no owner on record."))
    async with transaction():
        await _lock_handover(handover.id)
        out = await KeySet.filter(unit_id=handover.unit_id, state=KeyState.OUT)
        if out:
            raise HandoverError(gettext("Get these key sets back first: %(tags)s",
                                        tags=", ".join(f"{k.tag} ({k.custodian_name})" for k in out)))
        sets = await KeySet.filter(unit_id=handover.unit_id, state=KeyState.IN)
        if not sets:
            raise HandoverError(gettext("There are no key sets of this unit in the cabinet."))
        for keyset in sets:
            moved = await KeySet.filter(id=keyset.id, state=KeyState.IN).update(
                state=KeyState.OWNER, custodian_kind=HolderKind.OWNER, custodian_user_id=None,
                custodian_customer_id=owner.id, custodian_contractor_id=None, custodian_name=owner.name,
            )
            if not moved:
                raise HandoverError(_not_in_message(await KeySet.get(id=keyset.id)))
            await timeline.post(keyset, "status", gettext("Handed to the owner %(name)s at handover", name=owner.name),
                                author=by, data={"to": KeyState.OWNER, "custodian": owner.name})
        await timeline.post(handover, "keys", gettext("Keys handed to the owner: %(tags)s",
                                                      tags=", ".join(k.tag for k in sets)), author=by)
    return sets


async def report_lost(keyset: KeySet, *, by, note: str) -> None:
    """A set is lost: the reporting staff member stays its custodian until it is re-keyed."""
    if not note:
        raise HandoverError(gettext("Say how the keys were lost."), "lost_note")
    async with transaction():
        current = await KeySet.filter(id=keyset.id).select_for_update().get()
        if current.state not in (KeyState.IN, KeyState.OUT):
            raise HandoverError(gettext("Only a key set in the company's custody can be reported lost."))
        previous = current.custodian_name
        moved = await KeySet.filter(id=keyset.id, state=current.state).update(
            state=KeyState.LOST, custodian_kind=HolderKind.STAFF, custodian_user_id=_uid(by), custodian_customer_id=None,
            custodian_contractor_id=None, custodian_name=_name(by),
        )
        if not moved:
            raise HandoverError(gettext("The key set changed meanwhile: reload the page."))
        await KeyCheckout.filter(open_for=keyset.id).update(open_for=None, returned_by_name=gettext("(lost)"))
        await timeline.post(keyset, "status", gettext("Reported lost (last with %(name)s): %(note)s", name=previous, note=note),
                            author=by, data={"from": current.state, "to": KeyState.LOST, "custodian": _name(by)})


async def rekey(keyset: KeySet, *, by, tag: str, count: int, slot: str, keeper: User) -> KeySet:
    """After a loss the lock is changed: the unit's sets of that kind are retired, a new set is registered."""
    unit = await Unit.get(id=keyset.unit_id)
    async with transaction():
        if keyset.state != KeyState.LOST:
            raise HandoverError(gettext("Only a lost key set is re-keyed."))
        same = await KeySet.filter(unit_id=keyset.unit_id, kind=keyset.kind, state__in=[KeyState.IN, KeyState.OUT, KeyState.LOST])
        out = [k for k in same if k.state == KeyState.OUT]
        if out:
            raise HandoverError(gettext("Get these key sets back first: %(tags)s",
                                        tags=", ".join(f"{k.tag} ({k.custodian_name})" for k in out)))
        for old in same:
            moved = await KeySet.filter(id=old.id, state=old.state).update(state=KeyState.RETIRED)
            if not moved:
                raise HandoverError(gettext("The key set changed meanwhile: reload the page."))
            await timeline.post(old, "status", gettext("Retired: the lock was changed"), author=by,
                                data={"from": old.state, "to": KeyState.RETIRED})
        return await register_keyset(unit, tag=tag, kind=keyset.kind, count=count, slot=slot, keeper=keeper, by=by,
                                     replaces=keyset)


async def start_audit(project, *, by) -> CabinetAudit:
    """A cabinet count listing every set that should be in the cabinet, slot by slot."""
    if await CabinetAudit.filter(project_id=project.id, state=AuditState.OPEN).exists():
        raise HandoverError(gettext("An audit of the cabinet is already under way: finish it first."))
    async with transaction():
        audit = await CabinetAudit.create(project_id=project.id, started_by_id=_uid(by), started_at=clock())
        for keyset in await KeySet.filter(project_id=project.id, state=KeyState.IN).order_by("slot", "tag"):
            await AuditLine.create(project_id=project.id, audit=audit, keyset=keyset, expected_slot=keyset.slot,
                                   expected_state=keyset.state, expected_custodian=keyset.custodian_name)
    return audit


async def record_finding(line: AuditLine, *, by, finding: str, note: str = "") -> None:
    if finding not in AuditFinding.CHOICES or finding == AuditFinding.PENDING:
        raise HandoverError(gettext("Choose what you found."), "finding")
    if finding != AuditFinding.PRESENT and not note:
        raise HandoverError(gettext("Describe the discrepancy."), "note")
    async with transaction():
        audit = await CabinetAudit.get(id=line.audit_id)
        if audit.state != AuditState.OPEN:
            raise HandoverError(gettext("This audit is finished."))
        await AuditLine.filter(id=line.id).update(finding=finding, note=note, checked_by_id=_uid(by), checked_at=clock())


async def finish_audit(audit: CabinetAudit, *, by) -> int:
    """Close the audit; every discrepancy goes into its key set's history. Returns how many."""
    pending = await AuditLine.filter(audit_id=audit.id, finding=AuditFinding.PENDING).count()
    if pending:
        raise HandoverError(gettext("%(n)s slots are not confirmed yet.", n=pending))
    async with transaction():
        lines = await AuditLine.filter(audit_id=audit.id).exclude(finding=AuditFinding.PRESENT).prefetch_related("keyset")
        done = await CabinetAudit.filter(id=audit.id, state=AuditState.OPEN).update(
            state=AuditState.DONE, finished_at=clock(), discrepancies=len(lines)
        )
        if not done:
            raise HandoverError(gettext("This audit is finished."))
        for line in lines:
            await timeline.post(line.keyset, "audit", gettext("Cabinet audit: %(finding)s (%(note)s)",
                                                              finding=AuditFinding.CHOICES[line.finding], note=line.note),
                                author=by, data={"audit_id": audit.id, "finding": line.finding})
    return len(lines)
