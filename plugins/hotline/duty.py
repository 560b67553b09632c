"""Duty log (《客户服务中心值班记录表》): every call and visit of a day at an estate's desk.

The seeds' rule: everything that happens during a shift (calls, visits, any
other reception matter) is on the duty log; the outgoing agent hands over in
writing and the incoming one confirms; the manager checks the log every day.

One page per local day (`/p/<code>/hotline/duty?day=YYYY-MM-DD`) merges
calls from the PBX, work orders recorded at intake (any channel: phone,
walk-in, online) and entries written by hand, in time order, with the day's
shifts, their handover notes and the manager's review mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from tortoise.expressions import Q

from core.api import ctx, form_data, gettext, redirect, render, transaction, now
from core.models import Customer
from plugins.hotline.call_models import Call, DutyEntryKind, DutyLogEntry, DutyReview, DutyShift
from plugins.hotline.telephony import format_duration

NOTE_MAX = 4000
SUMMARY_MAX = 2000


# Core's clock, so the test kit's frozen time reaches these pages too.
clock = now


def local_day(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """The day's start and end in the estate's time zone, as aware UTC."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time.min, zone).astimezone(timezone.utc)
    end = datetime.combine(day + timedelta(days=1), time.min, zone).astimezone(timezone.utc)
    return start, end


@dataclass
class LogRow:
    at: datetime
    kind: str
    who: str
    summary: str
    agent: str
    url: str | None = None


async def day_rows(project, day: date) -> list[LogRow]:
    """Calls, work orders and hand-written entries of the estate's `day`, oldest first."""
    from plugins.hotline.models import ContactChannel, WorkOrder

    start, end = day_bounds(day, project.timezone)
    base = f"/p/{project.code}/"
    rows: list[LogRow] = []
    for call in await Call.filter(started_at__gte=start, started_at__lt=end).select_related("customer", "agent"):
        outcome = call.status_label + (f" · {format_duration(call.duration_seconds)}" if call.duration_seconds else "")
        rows.append(LogRow(
            call.started_at, gettext("Call"), call.customer.name if call.customer else call.caller, outcome,
            str(call.agent) if call.agent else "",
            f"{base}hotline/orders/{call.work_order_id}" if call.work_order_id else None,
        ))
    orders = await WorkOrder.filter(received_at__gte=start, received_at__lt=end).select_related("customer", "created_by")
    for order in orders:
        channel = str(ContactChannel.CHOICES.get(order.channel, order.channel))
        rows.append(LogRow(
            order.received_at, channel, order.customer.name, f"{order.number} {order.subject}",
            str(order.created_by) if order.created_by else "", f"{base}hotline/orders/{order.id}",
        ))
    for entry in await DutyLogEntry.filter(at__gte=start, at__lt=end).select_related("customer", "author"):
        who = entry.customer.name if entry.customer else entry.visitor
        url = f"{base}customers/{entry.customer_id}" if entry.customer_id else None
        rows.append(LogRow(entry.at, entry.kind_label, who, entry.summary, str(entry.author), url))
    rows.sort(key=lambda row: row.at)
    return rows


async def open_shift(user_id: int) -> DutyShift | None:
    return await DutyShift.filter(agent_id=user_id, ended_at__isnull=True).order_by("-started_at").first()


async def pending_handover(user_id: int) -> DutyShift | None:
    """The latest ended shift of someone else whose handover nobody has confirmed yet."""
    latest = await DutyShift.filter(ended_at__isnull=False).order_by("-ended_at").first().select_related("agent")
    if latest is None or latest.acknowledged_at is not None or latest.agent_id == user_id:
        return None
    return latest


def _parse_day(request: Request, tz: str) -> date | None:
    raw = request.query_params.get("day", "")
    if not raw:
        return local_day(clock(), tz)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


async def duty_page(request: Request, *, errors: dict[str, str] | None = None, values: dict[str, Any] | None = None,
                    status_code: int = 200, day: date | None = None) -> Response:
    context = ctx(request)
    project = context.project
    principal = context.principal
    errors = dict(errors or {})
    if day is None:
        day = _parse_day(request, project.timezone)
        if day is None:
            errors["day"] = gettext("Enter a date as YYYY-MM-DD.")
            day, status_code = local_day(clock(), project.timezone), 422
    start, end = day_bounds(day, project.timezone)
    shifts = await DutyShift.filter(Q(ended_at__isnull=True) | Q(ended_at__gte=start), started_at__lt=end).order_by(
        "started_at"
    ).select_related("agent", "acknowledged_by")
    review = await DutyReview.get_or_none(day=day).select_related("reviewer")
    data = {
        "day": day,
        "previous_day": day - timedelta(days=1),
        "next_day": day + timedelta(days=1),
        "is_today": day == local_day(clock(), project.timezone),
        "rows": await day_rows(project, day),
        "shifts": shifts,
        "my_shift": await open_shift(principal.id),
        "handover": await pending_handover(principal.id),
        "review": review,
        "can_review": principal.can("hotline.review_duty", project.id),
        "entry_kinds": list(DutyEntryKind.CHOICES.items()),
        "errors": errors,
        "values": values or {},
        "base": f"/p/{project.code}/hotline/duty",
    }
    return await render(request, "hotline/duty/day.html", data, block="duty", status_code=status_code)


async def duty_view(request: Request) -> Response:
    return await duty_page(request)


async def _refuse(request: Request, errors: dict[str, str], values: dict[str, Any] | None = None) -> Response:
    return await duty_page(request, errors=errors, values=values, status_code=422, day=local_day(clock(), ctx(request).project.timezone))


async def start_shift(request: Request) -> Response:
    context = ctx(request)
    if await open_shift(context.principal.id) is not None:
        return await _refuse(request, {"shift": gettext("Your shift has already started.")})
    await DutyShift.create(project_id=context.project.id, agent_id=context.principal.id, started_at=clock())
    return redirect(request, f"/p/{context.project.code}/hotline/duty", gettext("Shift started."))


async def add_entry(request: Request) -> Response:
    context = ctx(request)
    values = await form_data(request)
    shift = await open_shift(context.principal.id)
    errors: dict[str, str] = {}
    kind = values.get("kind", "")
    summary = (values.get("summary") or "").strip()
    visitor = (values.get("visitor") or "").strip()
    customer_id = None
    if shift is None:
        errors["shift"] = gettext("Start your shift first: entries belong to a shift.")
    if kind not in DutyEntryKind.CHOICES:
        errors["kind"] = gettext("Choose what it was.")
    if not summary:
        errors["summary"] = gettext("Write what the visitor wanted and what was done.")
    elif len(summary) > SUMMARY_MAX:
        errors["summary"] = gettext("At most %(n)s characters.", n=SUMMARY_MAX)
    if len(visitor) > 64:
        errors["visitor"] = gettext("At most %(n)s characters.", n=64)
    if values.get("customer", "").isdigit():
        customer = await Customer.get_or_none(id=int(values["customer"]))
        if customer is None:
            errors["customer"] = gettext("No such customer in this estate.")
        else:
            customer_id = customer.id
    if errors:
        return await _refuse(request, errors, values)
    await DutyLogEntry.create(
        project_id=context.project.id, shift=shift, kind=kind, at=clock(), visitor=visitor,
        customer_id=customer_id, summary=summary, author_id=context.principal.id,
    )
    return redirect(request, f"/p/{context.project.code}/hotline/duty", gettext("Entry added to the duty log."))


async def end_shift(request: Request) -> Response:
    context = ctx(request)
    values = await form_data(request)
    note = (values.get("handover_note") or "").strip()
    shift = await open_shift(context.principal.id)
    errors: dict[str, str] = {}
    if shift is None:
        errors["shift"] = gettext("You have no shift to end.")
    if not note:
        errors["handover_note"] = gettext("Write the handover note: open matters, keys, anything the next agent must know (or “nothing to hand over”).")
    elif len(note) > NOTE_MAX:
        errors["handover_note"] = gettext("At most %(n)s characters.", n=NOTE_MAX)
    if errors:
        return await _refuse(request, errors, values)
    shift.ended_at, shift.handover_note = clock(), note
    await shift.save(update_fields=["ended_at", "handover_note"])
    return redirect(request, f"/p/{context.project.code}/hotline/duty", gettext("Shift ended and handed over."))


async def acknowledge(request: Request) -> Response:
    """The incoming agent confirms having read the outgoing agent's handover note."""
    context = ctx(request)
    shift: DutyShift = request.state.record
    if shift.ended_at is None or shift.acknowledged_at is not None or shift.agent_id == context.principal.id:
        return await _refuse(request, {"handover": gettext("This handover is not waiting for your confirmation.")})
    async with transaction():
        # Only the first confirmation counts, even when two agents click at once.
        updated = await DutyShift.filter(id=shift.id, acknowledged_at__isnull=True).update(
            acknowledged_at=clock(), acknowledged_by_id=context.principal.id
        )
    if not updated:
        return await _refuse(request, {"handover": gettext("This handover is not waiting for your confirmation.")})
    return redirect(request, f"/p/{context.project.code}/hotline/duty", gettext("Handover confirmed."))


async def review_day(request: Request) -> Response:
    """The manager marks a day's duty log as checked."""
    context = ctx(request)
    values = await form_data(request)
    note = (values.get("note") or "").strip()
    try:
        day = date.fromisoformat(values.get("day", ""))
    except ValueError:
        return await _refuse(request, {"day": gettext("Enter a date as YYYY-MM-DD.")}, values)
    errors: dict[str, str] = {}
    if day > local_day(clock(), context.project.timezone):
        errors["review"] = gettext("A day can be reviewed once it has begun.")
    elif await DutyReview.filter(day=day).exists():
        errors["review"] = gettext("This day has already been reviewed.")
    if len(note) > NOTE_MAX:
        errors["note"] = gettext("At most %(n)s characters.", n=NOTE_MAX)
    if errors:
        return await duty_page(request, errors=errors, values=values, status_code=422, day=day)
    await DutyReview.create(project_id=context.project.id, day=day, reviewer_id=context.principal.id, note=note, reviewed_at=clock())
    return redirect(request, f"/p/{context.project.code}/hotline/duty?day={day.isoformat()}", gettext("Duty log marked as reviewed."))


def routes() -> list:
    from core.api import route

    duty, shift = "hotline.duty", "hotline.DutyShift"
    return [
        route("/duty", duty_view, name="hotline_duty", permission=duty),
        route("/duty/start", start_shift, methods=["POST"], name="hotline_duty_start", permission=duty),
        route("/duty/entries", add_entry, methods=["POST"], name="hotline_duty_entry", permission=duty),
        route("/duty/end", end_shift, methods=["POST"], name="hotline_duty_end", permission=duty),
        route("/duty/shifts/{id:int}/acknowledge", acknowledge, methods=["POST"], name="hotline_duty_ack", permission=duty, model=shift),
        route("/duty/review", review_day, methods=["POST"], name="hotline_duty_review", permission="hotline.review_duty"),
    ]
