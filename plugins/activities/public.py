"""Pages owners open from emails, without logging in: register, ticket (QR code, cancel), feedback survey.

Every page first verifies its signed link (`core.api.links`); only then is
the data of that one registration or invitation read, `unscoped()`. A link
that was tampered with, has expired or (invitation, survey) was already used
gets a polite page saying so, and changes nothing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.api import Customer, Project, gettext, lazy_gettext as _, links, render, transaction, unscoped
from plugins.activities import registration as reg, timeutil, tokens
from plugins.activities.models import Activity, Registration, RegistrationChannel, RegistrationStatus
from plugins.activities.views import qr_png

REASONS = {
    "invalid": (400, _("This link is not valid. Please use the link exactly as it came in the email.")),
    "expired": (410, _("This link has expired.")),
    "used": (410, _("This link has already been used.")),
}


async def _refused(request: Request, error: links.LinkError, used_message: str | None = None) -> Response:
    status, message = REASONS.get(error.reason, REASONS["invalid"])
    text = used_message if error.reason == "used" and used_message else str(message)
    return await render(request, "activities/public.html", {"page": "refused", "message": text}, status_code=status)


async def _facts(activity_id: int, customer_id: int):
    with unscoped():
        activity = await Activity.get_or_none(id=activity_id)
        customer = await Customer.get_or_none(id=customer_id)
        if activity is None or customer is None or activity.project_id != customer.project_id:
            return None
        project = await Project.get(id=activity.project_id)
    return activity, customer, project


def _context(activity: Activity, project: Project, **extra) -> dict:
    # Public pages have no estate in their URL: times are shown in the activity's estate zone here.
    starts = timeutil.local(activity.starts_at, project.timezone).strftime("%Y-%m-%d %H:%M")
    ends = timeutil.local(activity.ends_at, project.timezone).strftime("%H:%M")
    return {"activity": activity, "estate": project, "when": f"{starts}–{ends}", **extra}


# Invitation: register once -----------------------------------------------------------------


async def join_page(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        link = await links.check(tokens.INVITE, token, now=timeutil.now())
    except links.LinkError as exc:
        return await _refused(request, exc, str(USED_INVITE))
    facts = await _facts(link.data["a"], link.data["c"])
    if facts is None:
        return await _refused(request, links.LinkError("invalid"))
    activity, customer, project = facts
    return await _join(request, token, activity, customer, project)


async def _join(request, token, activity, customer, project, errors=None, values=None, status_code=200):
    with unscoped():
        existing = await Registration.get_or_none(activity_id=activity.id, customer_id=customer.id)
    problem = reg.window_problem(activity, timeutil.now())
    return await render(request, "activities/public.html", _context(
        activity, project, page="join", token=token, customer=customer, problem=problem, errors=errors or {},
        values=values or {"family_count": "0"},
        existing=existing if existing and existing.status != RegistrationStatus.CANCELLED else None,
    ), status_code=status_code)


async def join_submit(request: Request) -> Response:
    token = request.path_params["token"]
    form = await request.form()
    try:
        link = await links.check(tokens.INVITE, token, now=timeutil.now())
    except links.LinkError as exc:
        return await _refused(request, exc, str(USED_INVITE))
    facts = await _facts(link.data["a"], link.data["c"])
    if facts is None:
        return await _refused(request, links.LinkError("invalid"))
    activity, customer, project = facts
    values = {"family_count": form.get("family_count", "0")}
    with unscoped():
        try:
            family = reg.parse_family(values["family_count"], activity)
            async with transaction():
                await links.redeem(tokens.INVITE, token, now=timeutil.now())
                registration = await reg.register(activity, customer, family, channel=RegistrationChannel.LINK)
        except links.LinkError as exc:
            return await _refused(request, exc, str(USED_INVITE))
        except reg.RegistrationError as exc:
            await activity.refresh_from_db()
            return await _join(request, token, activity, customer, project, {exc.field: exc.message}, values, 422)
    return await render(request, "activities/public.html", _context(
        activity, project, page="registered", registration=registration, customer=customer,
        ticket_url=tokens.ticket_url(registration, activity),
    ))


# Ticket: code, QR code, cancel ------------------------------------------------------------------


async def _ticket(token: str):
    link = await links.check(tokens.TICKET, token, now=timeutil.now())
    with unscoped():
        registration = await Registration.get_or_none(id=link.data["r"])
        if registration is None:
            raise links.LinkError("invalid")
        activity = await Activity.get(id=registration.activity_id)
        customer = await Customer.get(id=registration.customer_id)
        project = await Project.get(id=registration.project_id)
    return registration, activity, customer, project


async def ticket_page(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        registration, activity, customer, project = await _ticket(token)
    except links.LinkError as exc:
        return await _refused(request, exc)
    return await render(request, "activities/public.html", _context(
        activity, project, page="ticket", registration=registration, customer=customer, token=token,
        can_cancel=registration.status != RegistrationStatus.CANCELLED and timeutil.now() < activity.starts_at,
    ))


async def ticket_qr(request: Request) -> Response:
    try:
        registration, *rest = await _ticket(request.path_params["token"])
    except links.LinkError:
        return Response(status_code=404)
    return qr_png(registration.code)


async def ticket_cancel(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        registration, activity, customer, project = await _ticket(token)
    except links.LinkError as exc:
        return await _refused(request, exc)
    if timeutil.now() >= activity.starts_at:
        message = gettext("The activity has started: it can no longer be cancelled here.")
    else:
        with unscoped():
            cancelled = await reg.cancel(registration, reason=gettext("(by the owner, from the ticket link)"),
                                         cancelled_by=reg.CancelledBy.OWNER)
        message = gettext("Your sign-up is cancelled. Thank you for letting us know.") if cancelled else gettext(
            "This sign-up was already cancelled."
        )
    return await render(request, "activities/public.html", _context(activity, project, page="done", message=message))


# Feedback survey: answered once ---------------------------------------------------------------------


async def _survey(token: str):
    link = await links.check(tokens.FEEDBACK, token, now=timeutil.now())
    with unscoped():
        registration = await Registration.get_or_none(id=link.data["r"])
        if registration is None:
            raise links.LinkError("invalid")
        activity = await Activity.get(id=registration.activity_id)
        project = await Project.get(id=registration.project_id)
    return registration, activity, project


USED_SURVEY = _("You have already answered this survey. Thank you for your feedback!")
USED_INVITE = _("You have already answered this invitation. See your ticket in the confirmation email.")


async def feedback_page(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        registration, activity, project = await _survey(token)
    except links.LinkError as exc:
        return await _refused(request, exc, str(USED_SURVEY))
    return await render(request, "activities/public.html", _context(
        activity, project, page="feedback", token=token, errors={}, values={},
    ))


async def feedback_submit(request: Request) -> Response:
    token = request.path_params["token"]
    form = await request.form()
    try:
        registration, activity, project = await _survey(token)
    except links.LinkError as exc:
        return await _refused(request, exc, str(USED_SURVEY))
    values = {"rating": (form.get("rating") or "").strip(), "comment": (form.get("comment") or "").strip()}
    errors = {}
    if values["rating"] not in {"1", "2", "3", "4", "5"}:
        errors["rating"] = gettext("Choose from one to five stars.")
    if len(values["comment"]) > 2000:
        errors["comment"] = gettext("At most %(max)s characters.", max=2000)
    if errors:
        return await render(request, "activities/public.html", _context(
            activity, project, page="feedback", token=token, errors=errors, values=values,
        ), status_code=422)
    try:
        with unscoped():
            async with transaction():
                await links.redeem(tokens.FEEDBACK, token, now=timeutil.now())
                await Registration.filter(id=registration.id, rating__isnull=True).update(
                    rating=int(values["rating"]), comment=values["comment"], feedback_at=timeutil.now(),
                )
    except links.LinkError as exc:
        return await _refused(request, exc, str(USED_SURVEY))
    return await render(request, "activities/public.html", _context(
        activity, project, page="done", message=gettext("Thank you for your feedback!"),
    ))
