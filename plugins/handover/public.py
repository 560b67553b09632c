"""The owner's booking page, opened from the signed link in the invitation or reminder email.

The link names the unit's handover; it is checked on every request before
anything is read (`core.api.links`), and only then is the estate's data
reached with `unscoped()`. It stays usable until it expires, so the owner can
book, then move or cancel.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.api import Project, form_data, gettext, links, redirect, render, unscoped
from plugins.handover import forms, services
from plugins.handover.models import Appointment, AppointmentState, BookedVia, HandoverBatch, TimeSlot, UnitHandover
from plugins.handover.services import HandoverError
from plugins.handover.views import slot_choices

REASONS = {
    "invalid": "This link is not valid. Please use the link from the latest email, or call the service centre.",
    "expired": "This link has expired. Please call the service centre for a new one.",
    "used": "This link has been used already.",
}


async def _load(request: Request):
    link = await links.check(services.BOOKING_LINK, request.path_params["token"], now=services.clock())
    with unscoped():
        handover = await UnitHandover.get_or_none(id=link.data["h"], project_id=link.data["p"])
        if handover is None:
            raise links.LinkError("invalid")
        project = await Project.get(id=handover.project_id)
        await handover.fetch_related("unit", "owner")
    return handover, project


async def _page(request: Request, handover, project, *, values=None, errors=None, status=200, done="") -> Response:
    with unscoped():
        batch = await HandoverBatch.get(id=handover.batch_id)
        active = await Appointment.filter(active_for=handover.id).prefetch_related("slot").first()
        slots = await TimeSlot.filter(batch_id=batch.id, day__gte=services.local_today(project)).order_by("day", "start_minute")
    return await render(request, "handover/public_booking.html", {
        "handover": handover, "unit": handover.unit, "estate": project, "batch": batch, "active": active,
        "slot_choices": slot_choices([s for s in slots if s.free]), "values": values or {}, "errors": errors or {},
        "done": done, "AppointmentState": AppointmentState, "token": request.path_params["token"],
    }, status_code=status)


async def _refused(request: Request, exc: links.LinkError) -> Response:
    return await render(request, "handover/public_booking.html", {"link_error": gettext(REASONS[exc.reason])}, status_code=404)


async def booking_page(request: Request) -> Response:
    try:
        handover, project = await _load(request)
    except links.LinkError as exc:
        return await _refused(request, exc)
    return await _page(request, handover, project)


async def booking_submit(request: Request) -> Response:
    try:
        handover, project = await _load(request)
    except links.LinkError as exc:
        return await _refused(request, exc)
    values = await form_data(request)
    action = values.get("action", "")
    try:
        with unscoped():
            batch = await HandoverBatch.get(id=handover.batch_id)
            active = await Appointment.filter(active_for=handover.id).first()
            if action == "cancel":
                if active is None or active.state != AppointmentState.BOOKED:
                    raise HandoverError(gettext("There is no appointment to cancel."))
                await services.cancel(active, reason=gettext("cancelled by the owner"))
                message = gettext("Your appointment is cancelled.")
            else:
                if not batch.booking_open:
                    raise HandoverError(gettext("Booking is closed. Please call the service centre."), "slot")
                slot_id = forms.optional_id(values, "slot")
                slot = await TimeSlot.get_or_none(id=slot_id, batch_id=batch.id) if slot_id else None
                if slot is None:
                    raise HandoverError(gettext("Choose a time slot."), "slot")
                if active is not None:
                    await services.reschedule(active, slot, project, via=BookedVia.LINK)
                else:
                    await services.book(handover, slot, project, via=BookedVia.LINK)
                message = gettext("Thank you: we expect you on %(slot)s.", slot=str(slot))
    except HandoverError as exc:
        return await _page(request, handover, project, values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, request.url.path, message)
