"""Pages of handover batches, time slots, appointments, the unit's handover and the owner's acceptance."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from core.api import (
    Building,
    Column,
    Customer,
    CustomerUnit,
    Filter,
    ListView,
    attachments,
    ctx,
    errors_for,
    form_data,
    gettext,
    lazy_gettext as _,
    plugin_url,
    redirect,
    render,
    timeline,
    transaction,
)
from plugins.handover import forms, services
from plugins.handover.models import (
    Appointment,
    AppointmentState,
    BookedVia,
    Defect,
    DefectCategory,
    DefectState,
    HandoverBatch,
    HandoverState,
    Inspection,
    InspectionItem,
    ItemResult,
    KeyKind,
    KeySet,
    KeyState,
    Responsible,
    Severity,
    TimeSlot,
    UnitHandover,
    Contractor,
)
from plugins.handover.services import HandoverError


def base(request: Request) -> str:
    return plugin_url(request, "handover")


def can(request: Request, permission: str) -> bool:
    context = ctx(request)
    return context.principal.can(permission, context.project.id)


def today(request: Request) -> date:
    return services.local_today(ctx(request).project)


# Batches --------------------------------------------------------------------------------


async def _batch_counts(batch_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for batch_id, state in await UnitHandover.filter(batch_id__in=batch_ids).values_list("batch_id", "state"):
        counts[batch_id][state] += 1
        counts[batch_id]["total"] += 1
    return counts


def _progress(batch, request) -> str:
    counts = request.state.handover_counts.get(batch.id, {})
    return f"{counts.get(HandoverState.ACCEPTED, 0)} / {counts.get('total', 0)}"


batches_list = ListView(
    "handover-batches", _("Handover batches"), model=HandoverBatch,
    columns=[
        Column("name", _("Batch"), sort=True, link=lambda b, r: f"{base(r)}batches/{b.id}"),
        Column("start_date", _("First day"), format="date", sort=True),
        Column("end_date", _("Last day"), format="date", sort=True),
        Column("booking_open", _("Booking open"), format="boolean"),
        Column("progress", _("Handed over / planned"), value=_progress),
    ],
    search=["name"], default_sort="-start_date",
)


async def batch_list(request: Request) -> Response:
    ids = await HandoverBatch.all().values_list("id", flat=True)
    request.state.handover_counts = await _batch_counts(list(ids))
    actions = [(gettext("New batch"), f"{base(request)}batches/new")] if can(request, "handover.manage") else []
    actions.append((gettext("All units"), f"{base(request)}handovers"))
    return await batches_list.response(request, actions=actions)


async def _batch_form(request: Request, values=None, errors=None, status=200) -> Response:
    buildings = await Building.all().order_by("code")
    return await render(request, "handover/batch_form.html", {
        "base": base(request), "buildings": [(b.id, f"{b.code} · {b.name}") for b in buildings],
        "values": values or {}, "errors": errors or {},
    }, status_code=status)


async def batch_new(request: Request) -> Response:
    return await _batch_form(request)


async def batch_create(request: Request) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if k != "csrftoken"}
    values["buildings"] = form.getlist("buildings")
    try:
        name = forms.text(values, "name", 64, required=True, label_missing=gettext("Name the batch."))
        start, end = forms.day(values, "start_date"), forms.day(values, "end_date")
        ids = [int(v) for v in values["buildings"] if v.isdigit()]
        batch = await services.create_batch(ctx(request).project, name=name, start=start, end=end, building_ids=ids,
                                            by=ctx(request).principal)
    except HandoverError as exc:
        return await _batch_form(request, values, {exc.field: exc.message}, 422)
    return redirect(request, f"{base(request)}batches/{batch.id}", gettext("Batch created. Now add its time slots."))


async def _batch_page(request: Request, batch: HandoverBatch, *, values=None, errors=None, status=200) -> Response:
    slots = await TimeSlot.filter(batch_id=batch.id).order_by("day", "start_minute")
    days: dict[date, list[TimeSlot]] = defaultdict(list)
    for slot in slots:
        days[slot.day].append(slot)
    counts = (await _batch_counts([batch.id])).get(batch.id, {})
    return await render(request, "handover/batch.html", {
        "base": base(request), "batch": batch, "days": dict(days), "counts": counts, "HandoverState": HandoverState,
        "values": values or {"first_day": batch.start_date.isoformat(), "last_day": batch.end_date.isoformat(),
                             "day_start": "09:00", "day_end": "17:00", "length": 60, "capacity": 4},
        "errors": errors or {}, "can_manage": can(request, "handover.manage"),
    }, status_code=status)


async def batch_detail(request: Request) -> Response:
    return await _batch_page(request, request.state.record)


async def slots_add(request: Request) -> Response:
    batch = request.state.record
    values = await form_data(request)
    try:
        added = await services.add_slots(
            batch, first=forms.day(values, "first_day"), last=forms.day(values, "last_day"),
            start=forms.minute_of_day(values, "day_start"), end=forms.minute_of_day(values, "day_end"),
            length=forms.integer(values, "length", 10, 24 * 60), capacity=forms.integer(values, "capacity", 1, 500),
        )
    except HandoverError as exc:
        return await _batch_page(request, batch, values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}batches/{batch.id}", gettext("%(n)s time slots added.", n=added))


async def booking_toggle(request: Request) -> Response:
    batch = request.state.record
    await HandoverBatch.filter(id=batch.id).update(booking_open=not batch.booking_open)
    message = gettext("Booking closed.") if batch.booking_open else gettext("Booking opened.")
    return redirect(request, f"{base(request)}batches/{batch.id}", message)


async def day_schedule(request: Request) -> Response:
    """The printable schedule of one handover day: who comes when, for which unit."""
    batch = request.state.record
    try:
        day = date.fromisoformat(request.query_params.get("day", ""))
    except ValueError:
        day = batch.start_date
    appointments = await (
        Appointment.filter(slot__batch_id=batch.id, slot__day=day,
                           state__in=[AppointmentState.BOOKED, AppointmentState.CHECKED_IN])
        .prefetch_related("slot", "handover__unit", "handover__owner")
    )
    appointments.sort(key=lambda a: (a.slot.start_minute, a.handover.unit.code))
    phones = await _phones([a.handover.owner_id for a in appointments if a.handover.owner_id])
    return await render(request, "handover/schedule.html", {
        "base": base(request), "batch": batch, "day": day, "appointments": appointments, "phones": phones,
        "AppointmentState": AppointmentState,
    })


async def _phones(customer_ids: list[int]) -> dict[int, str]:
    from core.api import CustomerPhone

    phones: dict[int, str] = {}
    for phone in await CustomerPhone.filter(customer_id__in=customer_ids).order_by("id"):
        phones.setdefault(phone.customer_id, phone.number)
    return phones


# The units of batches -----------------------------------------------------------------


async def _batch_choices(request):
    return [(b.id, b.name) for b in await HandoverBatch.all()]


handovers_list = ListView(
    "handovers", _("Units to hand over"), model=UnitHandover,
    columns=[
        Column("unit", _("Unit"), field="unit.code", sort="unit__code", link=lambda h, r: f"{base(r)}handovers/{h.id}"),
        Column("batch", _("Batch"), field="batch.name", sort="batch__name"),
        Column("owner", _("Owner"), field="owner.name", sort="owner__name"),
        Column("layout", _("Unit type"), field="unit.layout"),
        Column("state", _("Status"), format="choice", choices=HandoverState.CHOICES, sort=True),
        Column("accepted_at", _("Handed over"), format="datetime", sort=True),
        Column("signed_by", _("Signed by")),
    ],
    filters=[
        Filter.choice("batch", _("Batch"), _batch_choices, field="batch_id"),
        Filter.choice("state", _("Status"), HandoverState.CHOICES),
    ],
    search=["unit__code", "owner__name", "signed_by"], select_related=["unit", "batch", "owner"], default_sort="unit",
)


async def handover_list(request: Request) -> Response:
    return await handovers_list.response(request)


# One unit's handover --------------------------------------------------------------------


async def handover_context(request: Request, handover: UnitHandover) -> dict:
    await handover.fetch_related("unit", "batch", "owner", "accepted_by")
    appointments = await Appointment.filter(handover_id=handover.id).prefetch_related("slot", "booked_by").order_by("-id")
    active = next((a for a in appointments if a.active_for is not None), None)
    slots = await TimeSlot.filter(batch_id=handover.batch_id, day__gte=today(request)).order_by("day", "start_minute")
    inspection = await Inspection.filter(handover_id=handover.id).order_by("-id").first()
    rooms: dict[str, list[InspectionItem]] = defaultdict(list)
    if inspection:
        for item in await InspectionItem.filter(inspection_id=inspection.id).order_by("position", "id"):
            rooms[item.room].append(item)
    defects = await Defect.filter(handover_id=handover.id).prefetch_related("contractor").order_by("id")
    blockers, open_defects = await services.acceptance_blockers(handover)
    keysets = await KeySet.filter(unit_id=handover.unit_id).order_by("tag")
    linked = await CustomerUnit.filter(unit_id=handover.unit_id, end_date__isnull=True).prefetch_related("customer")
    may = {p: can(request, f"handover.{p}") for p in ("book", "inspect", "keys", "manage")}
    return {
        "base": base(request), "handover": handover, "unit": handover.unit, "batch": handover.batch,
        "appointments": appointments, "active": active, "slots": slots, "inspection": inspection,
        "rooms": dict(rooms), "defects": defects, "blockers": blockers, "open_defects": open_defects,
        "keysets": keysets, "today": today(request), "slot_choices": slot_choices(slots),
        "unit_customers": [(link.customer.id, link.customer.name) for link in linked], "contractors": await Contractor.filter(is_active=True),
        "HandoverState": HandoverState, "AppointmentState": AppointmentState, "ItemResult": ItemResult,
        "DefectState": DefectState, "Severity": Severity, "Responsible": Responsible, "DefectCategory": DefectCategory,
        "KeyState": KeyState, "BookedVia": BookedVia,
        "can": may, "on_page": forms_on_page(handover, active, today(request), bool(linked), keysets, may),
        **await timeline.context(request, handover), **await attachments.context(request, handover),
    }


def forms_on_page(handover: UnitHandover, active: Appointment | None, day: date, has_customers: bool,
                  keysets: list[KeySet], may: dict[str, bool]) -> set[str]:
    """The forms the unit's page offers in the handover's state (handover.html shows exactly these)."""
    shown: set[str] = set()
    if handover.state != HandoverState.ACCEPTED:
        if may["book"]:
            if active and active.state == AppointmentState.BOOKED:
                shown |= {"move", "cancel"} | ({"checkin"} if active.slot.day == day else set())
            elif not active:
                shown.add("book")
            if not active and handover.owner and handover.owner.email:
                shown.add("invite")
            if not handover.owner and has_customers:
                shown.add("owner")
        if may["manage"]:
            shown.add("accept")
    elif may["keys"] and any(k.state == KeyState.IN for k in keysets):
        shown.add("keys_to_owner")
    return shown


def slot_choices(slots: list[TimeSlot]) -> list[tuple[int, str]]:
    return [
        (s.id, gettext("%(slot)s · %(free)s of %(capacity)s free", slot=str(s), free=s.free, capacity=s.capacity))
        for s in slots
    ]


async def _handover_page(request: Request, handover: UnitHandover, *, form: str = "", values=None, errors=None,
                         status: int = 200) -> Response:
    context = await handover_context(request, handover)
    context.update(form=form, values=values or {}, errors=errors_for(errors, form, context["on_page"]))
    return await render(request, "handover/handover.html", context, status_code=status)


async def handover_detail(request: Request) -> Response:
    return await _handover_page(request, request.state.record)


def _back(request: Request, handover_id: int) -> str:
    return f"{base(request)}handovers/{handover_id}"


async def _slot(slot_id: int | None) -> TimeSlot:
    slot = await TimeSlot.get_or_none(id=slot_id) if slot_id else None
    if slot is None:
        raise HandoverError(gettext("Choose a time slot."), "slot")
    return slot


async def book_submit(request: Request) -> Response:
    handover = request.state.record
    values = await form_data(request)
    try:
        slot = await _slot(forms.optional_id(values, "slot"))
        await services.book(handover, slot, ctx(request).project, by=ctx(request).principal,
                            visitors=forms.integer(values, "visitors", 1, 10, default=1),
                            note=forms.text(values, "note", 255))
    except HandoverError as exc:
        return await _handover_page(request, handover, form="book", values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, _back(request, handover.id), gettext("Appointment booked."))


async def _appointment(request: Request) -> tuple[UnitHandover, Appointment]:
    appointment = request.state.record
    return await UnitHandover.get(id=appointment.handover_id), appointment


async def move_submit(request: Request) -> Response:
    handover, appointment = await _appointment(request)
    values = await form_data(request)
    try:
        if appointment.state != AppointmentState.BOOKED:  # a page left open: say so, not which field is empty
            raise HandoverError(gettext("Only a booked appointment can be moved."))
        slot = await _slot(forms.optional_id(values, "slot"))
        await services.reschedule(appointment, slot, ctx(request).project, by=ctx(request).principal)
    except HandoverError as exc:
        return await _handover_page(request, handover, form="move", values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, _back(request, handover.id), gettext("Appointment moved."))


async def cancel_submit(request: Request) -> Response:
    handover, appointment = await _appointment(request)
    values = await form_data(request)
    try:
        await services.cancel(appointment, by=ctx(request).principal, reason=forms.text(values, "reason", 200))
    except HandoverError as exc:
        return await _handover_page(request, handover, form="cancel", values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, _back(request, handover.id), gettext("Appointment cancelled."))


async def checkin_submit(request: Request) -> Response:
    handover, appointment = await _appointment(request)
    try:
        await services.check_in(appointment, ctx(request).project, by=ctx(request).principal)
    except HandoverError as exc:
        return await _handover_page(request, handover, errors={exc.field: exc.message}, status=422)
    return redirect(request, _back(request, handover.id), gettext("Owner checked in."))


async def owner_submit(request: Request) -> Response:
    """Set the owner who books and signs (when the unit had none or another one on record)."""
    handover = request.state.record
    values = await form_data(request)
    try:
        if handover.state == HandoverState.ACCEPTED:
            raise HandoverError(gettext("This unit has been handed over already."), "owner")
        customer_id = forms.optional_id(values, "owner")
        owner = await Customer.get_or_none(id=customer_id) if customer_id else None
        if owner is None:
            raise HandoverError(gettext("Choose the owner."), "owner")
    except HandoverError as exc:
        return await _handover_page(request, handover, form="owner", values=values, errors={exc.field: exc.message}, status=422)
    async with transaction():
        await UnitHandover.filter(id=handover.id).update(owner_id=owner.id)
        await timeline.post(handover, "note", gettext("Owner set to %(name)s", name=owner.name), author=ctx(request).principal)
    return redirect(request, _back(request, handover.id), gettext("Owner saved."))


async def accept_submit(request: Request) -> Response:
    handover = request.state.record
    async with request.form(max_files=1, max_fields=20) as form:
        values = {k: v for k, v in form.items() if k not in ("csrftoken", "signed_form")}
        upload = form.get("signed_form")
        signed_form = upload if isinstance(upload, UploadFile) and upload.filename else None
        try:
            await services.accept(
                handover, by=ctx(request).principal, signed_by=forms.text(values, "signed_by", 64),
                with_open_defects=forms.checked(values, "with_open_defects"), signed_form=signed_form,
            )
        except HandoverError as exc:
            return await _handover_page(request, handover, form="accept", values=values, errors={exc.field: exc.message},
                                        status=422)
    return redirect(request, _back(request, handover.id), gettext("The unit is handed over."))


async def handover_form(request: Request) -> Response:
    """The printable handover form (交房确认单) for the owner's signature."""
    context = await handover_context(request, request.state.record)
    return await render(request, "handover/handover_form.html", context)


async def keys_to_owner_submit(request: Request) -> Response:
    handover = request.state.record
    try:
        await services.hand_keys_to_owner(handover, by=ctx(request).principal)
    except HandoverError as exc:
        return await _handover_page(request, handover, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}handovers/{handover.id}/key-receipt", gettext("Keys handed to the owner."))


async def key_receipt(request: Request) -> Response:
    """The printable receipt of the keys the owner received at handover."""
    handover = request.state.record
    await handover.fetch_related("unit", "owner")
    keysets = await KeySet.filter(unit_id=handover.unit_id, state=KeyState.OWNER).order_by("tag")
    if not keysets:
        raise HTTPException(404)
    return await render(request, "handover/key_receipt.html", {
        "base": base(request), "unit": handover.unit, "keysets": keysets, "checkout": None, "kinds": KeyKind.CHOICES,
        "receiver": handover.owner.name if handover.owner else handover.signed_by, "at": handover.accepted_at,
        "back": _back(request, handover.id),
    })


async def invite_submit(request: Request) -> Response:
    """Email the owner their booking link (from the unit's page) or every owner of a batch without an appointment."""
    record = request.state.record
    project = ctx(request).project
    if isinstance(record, HandoverBatch):
        targets = await UnitHandover.filter(batch_id=record.id, state=HandoverState.PLANNED)
        back = f"{base(request)}batches/{record.id}"
    else:
        targets, back = [record], _back(request, record.id)
    sent = await services.invite(targets, project, by=ctx(request).principal)
    if not sent:
        return redirect(request, back, gettext("No owner with an email address to invite."), level="warning")
    return redirect(request, back, gettext("Booking links emailed to %(n)s owners.", n=sent))
