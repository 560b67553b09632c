"""Activity pages: list, form, detail with sign-ups and waitlist, invitations, check-in desk, feedback results."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from tortoise.expressions import Q

from core.api import (
    Building, Column, Customer, EmailError, Filter, ListView, Project, ctx, customer_search_q, gettext,
    lazy_gettext as _, project_url, queue_email, redirect, render, timeline, transaction, unscoped,
)
from plugins.activities import forms, registration as reg, sharing, timeutil, tokens
from plugins.activities.stats import is_no_show
from plugins.activities.models import (
    Activity, ActivityStatus, Member, MemberLevel, MemberStatus, Registration, RegistrationChannel, RegistrationStatus,
)

VIEW, MANAGE, REGISTER, CHECKIN = "activities.view", "activities.manage", "activities.register", "activities.checkin"


def base(request: Request) -> str:
    return project_url(request, "activities/")


def tz(request: Request) -> str:
    return ctx(request).project.timezone


def can(request: Request, permission: str) -> bool:
    context = ctx(request)
    return context.principal.can(permission, context.project.id)


# List ----------------------------------------------------------------------------------


def _seats(activity: Activity) -> str:
    return f"{activity.seats_taken} / {activity.capacity}"


ACTIVITIES = ListView(
    "activities", _("Activities"), model=Activity,
    columns=[
        Column("title", _("Activity"), sort=True, link=lambda a, r: f"{base(r)}{a.id}"),
        Column("starts_at", _("Starts"), format="datetime", sort=True),
        Column("place", _("Place")),
        Column("seats", _("Seats taken"), value=_seats),
        Column("cost", _("Cost per person"), format="money", sort=True),
        Column("status", _("Status"), format="choice", choices=ActivityStatus.CHOICES, sort=True),
    ],
    filters=[
        Filter.choice("status", _("Status"), ActivityStatus.CHOICES),
        Filter.date_range("starts_at", _("Starts")),
    ],
    search=["title", "place"],
    default_sort="-starts_at",
)


async def activity_list(request: Request) -> Response:
    actions = [(gettext("New activity"), base(request) + "new")] if can(request, MANAGE) else []
    return await ACTIVITIES.response(request, actions=actions)


# Form ----------------------------------------------------------------------------------


async def _choices(request: Request) -> dict:
    buildings = [(b.id, b.name) for b in await Building.all()]
    levels = [(lv.id, lv.name) for lv in await MemberLevel.all()]
    estates = [(p.id, p.name) for p in await sharing.invitable_estates(ctx(request).principal, ctx(request).project.id)]
    return {"building_options": buildings, "level_options": levels, "estate_options": estates}


async def _form_values(activity: Activity | None, zone: str) -> dict:
    if activity is None:
        return {"capacity": "", "max_family": "4", "cost": "0", "audience_buildings": [], "audience_levels": [],
                "guest_estates": []}
    guests = [] if activity.is_guest else [
        row.project_id for row in await sharing.guest_rows(activity) if row.status != ActivityStatus.CANCELLED
    ]
    return {
        "guest_estates": guests,
        "title": activity.title, "description": activity.description, "place": activity.place,
        "starts_at": timeutil.input_value(activity.starts_at, zone), "ends_at": timeutil.input_value(activity.ends_at, zone),
        "capacity": str(activity.capacity), "max_family": str(activity.max_family), "cost": str(activity.cost),
        "registration_opens_at": timeutil.input_value(activity.registration_opens_at, zone),
        "registration_closes_at": timeutil.input_value(activity.registration_closes_at, zone),
        "members_only": activity.members_only, "audience_buildings": activity.audience_buildings or [],
        "audience_levels": activity.audience_levels or [],
    }


async def _render_form(request, activity, values, errors=None, status_code=200):
    return await render(request, "activities/form.html", {
        "activity": activity, "values": values, "errors": errors or {}, "base": base(request),
        "shared": await sharing.summary(activity) if activity else None, **await _choices(request),
    }, status_code=status_code)


async def activity_new(request: Request) -> Response:
    return await _render_form(request, None, await _form_values(None, tz(request)))


async def activity_edit(request: Request) -> Response:
    activity = request.state.record
    return await _render_form(request, activity, await _form_values(activity, tz(request)))


def _parse_audience(form, raw: dict, p: forms.Parsed, buildings: set[int], levels: set[int]) -> None:
    v = p.values
    v["members_only"] = bool(raw.get("members_only"))
    v["audience_buildings"] = forms.id_list(form.getlist("audience_buildings"), buildings, "audience_buildings", p)
    v["audience_levels"] = forms.id_list(form.getlist("audience_levels"), levels, "audience_levels", p)


async def _parse_activity(request: Request, activity: Activity | None) -> tuple[forms.Parsed, dict]:
    form = await request.form()
    raw = {k: v for k, v in form.multi_items() if k != "csrftoken"}
    zone = tz(request)
    p = forms.Parsed()
    v = p.values
    buildings = {b.id for b in await Building.all()}
    levels = {lv.id for lv in await MemberLevel.all()}
    shown = {**raw, "members_only": bool(raw.get("members_only")), "audience_buildings": form.getlist("audience_buildings"),
             "audience_levels": form.getlist("audience_levels"), "guest_estates": form.getlist("guest_estates")}
    if activity is not None and activity.is_guest:
        # An invited estate chooses only its own audience; the host decides the rest.
        _parse_audience(form, raw, p, buildings, levels)
        return p, shown
    v["title"] = forms.text(raw, "title", p, required=True, max_length=120)
    v["place"] = forms.text(raw, "place", p, max_length=200)
    v["description"] = forms.text(raw, "description", p, max_length=5000)
    v["starts_at"] = forms.moment(raw, "starts_at", p, zone, required=True)
    v["ends_at"] = forms.moment(raw, "ends_at", p, zone, required=True)
    v["registration_opens_at"] = forms.moment(raw, "registration_opens_at", p, zone)
    v["registration_closes_at"] = forms.moment(raw, "registration_closes_at", p, zone)
    v["capacity"] = forms.integer(raw, "capacity", p, low=1, high=forms.MAX_CAPACITY)
    v["max_family"] = forms.integer(raw, "max_family", p, low=0, high=20, default=4)
    v["cost"] = forms.money(raw, "cost", p)
    _parse_audience(form, raw, p, buildings, levels)
    estates = {e.id for e in await sharing.invitable_estates(ctx(request).principal, ctx(request).project.id)}
    p.extra["wanted"] = set(forms.id_list(form.getlist("guest_estates"), estates, "guest_estates", p))
    p.extra["manageable"] = estates
    if v["starts_at"] and v["ends_at"] and v["ends_at"] <= v["starts_at"]:
        p.errors["ends_at"] = gettext("The end must be after the start.")
    closes = v["registration_closes_at"]
    if closes and v["ends_at"] and closes > v["ends_at"]:
        p.errors["registration_closes_at"] = gettext("Registration must close before the activity ends.")
    if v["registration_opens_at"] and (closes or v["starts_at"]) and v["registration_opens_at"] >= (closes or v["starts_at"]):
        p.errors["registration_opens_at"] = gettext("Registration must open before it closes.")
    if activity is not None and v["capacity"] is not None and v["capacity"] < activity.seats_taken:
        p.errors["capacity"] = gettext(
            "%(taken)s seats are already taken: cancel sign-ups before lowering the capacity.", taken=activity.seats_taken
        )
    return p, shown


def _shared_message(message: str, invited: list[str], withdrawn: list[str]) -> str:
    if invited:
        message += " " + gettext("Open to the owners of %(estates)s too.", estates="、".join(invited))
    if withdrawn:
        message += " " + gettext("Invitation withdrawn: %(estates)s.", estates="、".join(withdrawn))
    return message


async def activity_create(request: Request) -> Response:
    parsed, shown = await _parse_activity(request, None)
    if parsed.errors:
        return await _render_form(request, None, shown, parsed.errors, 422)
    principal = ctx(request).principal
    async with transaction():
        activity = await Activity.create(project_id=ctx(request).project.id, created_by_id=principal.id, **parsed.values)
        await timeline.post(activity, "status", gettext("Activity created as a draft."), author=principal)
        invited, _withdrawn = await sharing.set_guests(activity, **parsed.extra, by=principal)
    message = _shared_message(gettext("Activity saved as a draft."), invited, [])
    return redirect(request, f"{base(request)}{activity.id}", message)


async def activity_update(request: Request) -> Response:
    activity: Activity = request.state.record
    parsed, shown = await _parse_activity(request, activity)
    if parsed.errors:
        return await _render_form(request, activity, shown, parsed.errors, 422)
    principal = ctx(request).principal
    if activity.is_guest:
        async with transaction():
            await Activity.filter(id=activity.id).update(**parsed.values)
            await timeline.post(activity, "note", gettext("Audience changed."), author=principal)
        return redirect(request, f"{base(request)}{activity.id}", gettext("Activity saved."))
    values = dict(parsed.values)
    capacity = values.pop("capacity")
    try:
        async with transaction():
            # Capacity only together with the seat count it must cover (a sign-up may have come in meanwhile).
            if not await Activity.filter(id=activity.id, seats_taken__lte=capacity).update(
                capacity=capacity, **values
            ):
                fresh = await Activity.get(id=activity.id)
                errors = {"capacity": gettext(
                    "%(taken)s seats are already taken: cancel sign-ups before lowering the capacity.",
                    taken=fresh.seats_taken,
                )}
                return await _render_form(request, fresh, shown, errors, 422)
            await activity.refresh_from_db()
            await sharing.copy_to_guests(activity)
            invited, withdrawn = await sharing.set_guests(activity, **parsed.extra, by=principal)
            promoted = await reg.promote_waiting(activity) if activity.status == ActivityStatus.PUBLISHED else []
            await timeline.post(activity, "note", gettext("Details changed."), author=principal)
    except sharing.SharingError as exc:
        return await _render_form(request, await Activity.get(id=activity.id), shown, {"guest_estates": str(exc)}, 422)
    message = _shared_message(gettext("Activity saved."), invited, withdrawn)
    if promoted:
        message += " " + gettext("%(count)s people moved up from the waitlist.", count=len(promoted))
    return redirect(request, f"{base(request)}{activity.id}", message)


async def activity_status(request: Request) -> Response:
    """Publish (registration opens) or cancel an activity, with the estates it invited."""
    activity: Activity = request.state.record
    target = request.path_params["action"]
    allowed = {"publish": (ActivityStatus.DRAFT, ActivityStatus.PUBLISHED), "cancel": (ActivityStatus.PUBLISHED, ActivityStatus.CANCELLED),
               "cancel-draft": (ActivityStatus.DRAFT, ActivityStatus.CANCELLED)}
    if target not in allowed:
        raise HTTPException(404)
    here = f"{base(request)}{activity.id}"
    if activity.is_guest:
        return redirect(request, here, gettext("The host estate publishes or cancels this activity."), "warning")
    source, status = allowed[target]
    principal = ctx(request).principal
    if activity.status != source:
        return redirect(request, here, gettext("The activity was changed meanwhile."), "warning")
    if status == ActivityStatus.CANCELLED:
        told = await reg.cancel_activity(activity, by=principal)
        if told is None:
            return redirect(request, here, gettext("The activity was changed meanwhile."), "warning")
        return redirect(request, here, gettext("Activity cancelled; %(count)s registered and waiting people were told by email.",
                                               count=told))
    async with transaction():
        if not await Activity.filter(id=activity.id, status=source).update(status=status):
            return redirect(request, here, gettext("The activity was changed meanwhile."), "warning")
        await sharing.publish_guests(activity)
        await timeline.post(activity, "status", str(ActivityStatus.CHOICES[status]), author=principal,
                            data={"from": source, "to": status})
    return redirect(request, here, str(ActivityStatus.CHOICES[status]))


# Detail ----------------------------------------------------------------------------------


async def _registrations(activity: Activity) -> dict:
    # Within the estate's scope: for a shared activity, this estate's own sign-ups only.
    rows = await Registration.filter(activity_id=activity.id).select_related("customer").order_by("id")
    confirmed = [r for r in rows if r.status == RegistrationStatus.CONFIRMED]
    waiting = sorted((r for r in rows if r.status == RegistrationStatus.WAITLISTED), key=lambda r: (r.waitlisted_at, r.id))
    ended = activity.ends_at <= timeutil.now()
    return {
        "confirmed": confirmed,
        "waiting": waiting,
        "cancelled": [r for r in rows if r.status == RegistrationStatus.CANCELLED],
        "checked_in": sum(1 for r in confirmed if r.checked_in_at),
        "people_checked_in": sum(r.seats for r in confirmed if r.checked_in_at),
        "no_shows": sum(1 for r in confirmed if not r.checked_in_at) if ended else None,
        "ended": ended,
        "own_seats": sum(r.seats for r in confirmed),
    }


async def _render_detail(request, activity, *, errors=None, values=None, matches=None, status_code=200):
    problem = reg.window_problem(activity, timeutil.now())
    context = {
        "activity": activity, "base": base(request), "errors": errors or {}, "values": values or {"family_count": "0"},
        "matches": matches or [], "window_problem": problem, "status_labels": ActivityStatus.CHOICES,
        "can_manage": can(request, MANAGE), "can_register": can(request, REGISTER), "can_checkin": can(request, CHECKIN),
        "shared": await sharing.summary(activity),
        **await _registrations(activity), **await timeline.context(request, activity),
    }
    return await render(request, "activities/detail.html", context, status_code=status_code)


async def activity_detail(request: Request) -> Response:
    return await _render_detail(request, request.state.record)


async def customer_matches(request: Request) -> Response:
    """Customers matching the register form's search box (htmx)."""
    activity = request.state.record
    q = request.query_params.get("q", "").strip()
    matches = await Customer.filter(customer_search_q(q)).limit(10) if len(q) >= 1 else []
    return await render(request, "activities/_matches.html", {"matches": matches, "activity": activity, "values": {}})


async def register_submit(request: Request) -> Response:
    activity: Activity = request.state.record
    form = {k: v for k, v in (await request.form()).multi_items() if k != "csrftoken"}
    errors: dict[str, str] = {}
    customer = None
    raw_id = (form.get("customer") or "").strip()
    if not raw_id.isdigit() or (customer := await Customer.get_or_none(id=int(raw_id))) is None:
        errors["customer"] = gettext("Search for the owner and pick them from the list.")
    family = 0
    try:
        family = reg.parse_family(form.get("family_count", "0"), activity)
    except reg.RegistrationError as exc:
        errors[exc.field] = exc.message
    if not errors:
        try:
            registration = await reg.register(activity, customer, family, by=ctx(request).principal)
        except reg.RegistrationError as exc:
            errors[exc.field] = exc.message
    if errors:
        matches = [customer] if customer else []
        return await _render_detail(request, await Activity.get(id=activity.id), errors=errors, values=form,
                                    matches=matches, status_code=422)
    if registration.status == RegistrationStatus.CONFIRMED:
        message = gettext("%(name)s is registered: %(seats)s seats, check-in code %(code)s.",
                          name=customer.name, seats=registration.seats, code=registration.code)
    else:
        message = gettext("The activity is full: %(name)s is on the waitlist and moves up automatically when a seat frees up.",
                          name=customer.name)
    return redirect(request, f"{base(request)}{activity.id}", message)


async def _registration_of(request: Request, activity: Activity) -> Registration:
    found = await Registration.get_or_none(id=request.path_params["reg"], activity_id=activity.id)
    if found is None:
        raise HTTPException(404)
    return found


async def registration_cancel(request: Request) -> Response:
    activity: Activity = request.state.record
    registration = await _registration_of(request, activity)
    if not await reg.cancel(registration, by=ctx(request).principal):
        return redirect(request, f"{base(request)}{activity.id}", gettext("This sign-up was already cancelled."), "warning")
    return redirect(request, f"{base(request)}{activity.id}", gettext("Sign-up cancelled; free seats went to the waitlist."))


# Invitations -----------------------------------------------------------------------------------


async def invitees(activity: Activity) -> list[Customer]:
    """Club members of the activity's estate and audience who agreed to be contacted and have an email
    address, not yet signed up.

    Read for that estate only (an invited estate's row reaches that estate's members, never others').
    """
    with unscoped():
        members = await Member.filter(
            project_id=activity.project_id, status=MemberStatus.ACTIVE, consent_to_contact=True
        ).select_related("customer")
        signed_up = set(await Registration.filter(activity_id=activity.id).values_list("customer_id", flat=True))
        found = []
        for member in members:
            customer = member.customer
            if not customer.email or customer.id in signed_up:
                continue
            if await reg.audience_problem(activity, customer) is None:
                found.append(customer)
    return found


async def _invite(activity: Activity, project, author) -> int:
    """Email the invitations of one estate's row; how many went out."""
    sent = 0
    for customer in await invitees(activity):
        context = {
            "name": customer.name, "estate": project.name, "title": activity.title, "place": activity.place,
            "starts_at": activity.starts_at, "tz": project.timezone, "cost": activity.cost,
            "description": activity.description, "max_family": activity.max_family,
            "join_url": tokens.invite_url(activity, customer.id),
        }
        try:
            await queue_email(to=customer.email, template="activities/invitation", context=context,
                              locale=customer.locale, project_id=project.id,
                              related=f"activities.Activity:{activity.id}")
        except EmailError:
            continue
        sent += 1
    with unscoped():
        await Activity.filter(id=activity.id).update(invitations_sent_at=timeutil.now())
        await timeline.post(activity, "email", gettext("Invitations sent to %(count)s members.", count=sent),
                            author=author, data={"count": sent})
    return sent


async def send_invitations(request: Request) -> Response:
    """Invite the audience of this estate; from the host, also of each invited estate the user manages."""
    activity: Activity = request.state.record
    problem = reg.window_problem(activity, timeutil.now())
    if problem:
        return redirect(request, f"{base(request)}{activity.id}", problem, "error")
    principal = ctx(request).principal
    targets = [(activity, ctx(request).project)]
    if not activity.is_guest:
        for row in await sharing.guest_rows(activity):
            if row.status == ActivityStatus.PUBLISHED and principal.can(MANAGE, row.project_id):
                with unscoped():
                    targets.append((row, await Project.get(id=row.project_id)))
    async with transaction():
        counts = [await _invite(row, project, principal) for row, project in targets]
    message = gettext("Invitations sent to %(count)s members.", count=sum(counts))
    if len(targets) > 1:
        message += " " + gettext("(%(estates)s estates)", estates=len(targets))
    return redirect(request, f"{base(request)}{activity.id}", message)


# Check-in desk ------------------------------------------------------------------------------------


def checkin_problem(activity: Activity, zone: str) -> str | None:
    """Check-in runs on the day: from local midnight of the start until six hours after the end."""
    at = timeutil.now()
    if activity.status != ActivityStatus.PUBLISHED:
        return gettext("This activity is not open.")
    if at < timeutil.day_start(timeutil.local(activity.starts_at, zone).date(), zone):
        return gettext("Check-in opens on the day of the activity.")
    if at > activity.ends_at + timedelta(hours=6):
        return gettext("This activity is over.")
    return None


async def _find(activity: Activity, q: str) -> list[Registration]:
    q = q.strip()
    if not q:
        return []
    rows = Registration.filter(activity_id=activity.id).exclude(status=RegistrationStatus.CANCELLED)
    by_code = await rows.filter(code=q.upper().replace(" ", "")).select_related("customer")
    if by_code:
        return by_code
    ids = await Customer.filter(customer_search_q(q)).limit(50).values_list("id", flat=True)
    return await rows.filter(customer_id__in=list(ids)).select_related("customer").limit(20)


async def _checkin_page(request, activity, *, q="", found=None, done=None, message=None, level="info", status_code=200):
    counts = await _registrations(activity)
    return await render(request, "activities/checkin.html", {
        "activity": activity, "base": base(request), "q": q, "found": found or [], "done": done,
        "message": message, "level": level, "problem": checkin_problem(activity, tz(request)), **counts,
    }, block="desk", status_code=status_code)


async def checkin_page(request: Request) -> Response:
    activity = request.state.record
    q = request.query_params.get("q", "")
    return await _checkin_page(request, activity, q=q, found=await _find(activity, q))


async def checkin_lookup(request: Request) -> Response:
    """The desk's one box: a scanned or typed code checks in at once; a name or phone lists matches."""
    activity: Activity = request.state.record
    q = ((await request.form()).get("q") or "").strip()
    found = await _find(activity, q)
    exact = [r for r in found if r.code == q.upper().replace(" ", "")]
    if len(exact) == 1:
        return await _do_checkin(request, activity, exact[0])
    if not found:
        return await _checkin_page(request, activity, q=q, message=gettext("Nobody found for “%(q)s”.", q=q),
                                   level="warning", status_code=422 if q else 200)
    return await _checkin_page(request, activity, q=q, found=found)


async def checkin_submit(request: Request) -> Response:
    activity: Activity = request.state.record
    registration = await Registration.get_or_none(id=request.path_params["reg"], activity_id=activity.id)
    if registration is None:
        raise HTTPException(404)
    return await _do_checkin(request, activity, registration)


async def _do_checkin(request: Request, activity: Activity, registration: Registration) -> Response:
    problem = checkin_problem(activity, tz(request))
    customer = await Customer.get(id=registration.customer_id)
    if problem:
        return await _checkin_page(request, activity, message=problem, level="error", status_code=422)
    if registration.status == RegistrationStatus.WAITLISTED:
        message = gettext("%(name)s is on the waitlist and has no seat.", name=customer.name)
        return await _checkin_page(request, activity, message=message, level="error", status_code=422)
    if registration.status == RegistrationStatus.CANCELLED:
        message = gettext("%(name)s cancelled this sign-up.", name=customer.name)
        return await _checkin_page(request, activity, message=message, level="error", status_code=422)
    if not await reg.check_in(registration, by=ctx(request).principal):
        await registration.refresh_from_db()
        message = gettext("%(name)s was already checked in at %(time)s.", name=customer.name,
                          time=timeutil.local(registration.checked_in_at, tz(request)).strftime("%H:%M"))
        return await _checkin_page(request, activity, message=message, level="warning")
    message = ngettext_seats(customer.name, registration.seats)
    return await _checkin_page(request, activity, done=registration, message=message, level="success")


def ngettext_seats(name: str, seats: int) -> str:
    from core.api import ngettext

    return ngettext("Welcome, %(name)s: checked in.", "Welcome, %(name)s: checked in with %(num)s people.", seats,
                    name=name)


# Feedback results -----------------------------------------------------------------------------------


async def feedback_results(request: Request) -> Response:
    activity: Activity = request.state.record
    rows = await Registration.filter(activity_id=activity.id, status=RegistrationStatus.CONFIRMED).select_related("customer")
    attended = [r for r in rows if r.checked_in_at]
    answered = [r for r in attended if r.rating]
    counts = Counter(r.rating for r in answered)
    average = round(sum(r.rating for r in answered) / len(answered), 2) if answered else None
    chart = {
        "type": "bar",
        "labels": [gettext("%(n)s stars", n=n) for n in range(1, 6)],
        "datasets": [{"label": gettext("Answers"), "data": [counts.get(n, 0) for n in range(1, 6)]}],
    }
    return await render(request, "activities/feedback.html", {
        "activity": activity, "base": base(request), "attended": len(attended), "surveyed": sum(1 for r in attended if r.feedback_sent_at),
        "answered": answered, "average": average, "chart": chart, "shared": await sharing.summary(activity),
        "comments": sorted((r for r in answered if r.comment), key=lambda r: r.feedback_at, reverse=True),
    })


# Sign-ups across activities (export) ---------------------------------------------------------------


async def _activity_options(request: Request):
    return [(str(a.id), a.title) for a in await Activity.all().order_by("-starts_at").limit(200)]


SIGNUPS = ListView(
    "activities-signups", _("Sign-ups"), model=Registration,
    columns=[
        Column("activity", _("Activity"), field="activity.title", sort="activity__starts_at",
               link=lambda r, rq: f"{base(rq)}{r.activity_id}"),
        Column("customer", _("Name"), field="customer.name", sort="customer__name"),
        Column("seats", _("Seats"), format="number"),
        Column("status", _("Status"), format="choice", choices=RegistrationStatus.CHOICES, sort=True),
        Column("channel", _("Registered"), format="choice", choices=RegistrationChannel.CHOICES),
        Column("code", _("Check-in code")),
        Column("created_at", _("Signed up"), format="datetime", sort=True),
        Column("checked_in_at", _("Checked in"), format="datetime", sort=True),
        Column("no_show", _("No-show"), format="boolean", value=lambda r: is_no_show(r, timeutil.now())),
        Column("rating", _("Rating"), format="number", sort=True),
        Column("comment", _("Comment"), wrap=True),
    ],
    filters=[
        Filter.choice("activity", _("Activity"), _activity_options, field="activity_id"),
        Filter.choice("status", _("Status"), RegistrationStatus.CHOICES),
        Filter.boolean("checked_in", _("Checked in"), apply=lambda q, yes: q.filter(checked_in_at__isnull=not yes)),
        Filter.boolean("no_show", _("No-show"), apply=lambda q, yes: _no_shows(q, yes)),
    ],
    search=["customer__name", "customer__name_pinyin", "code"],
    select_related=["activity", "customer"],
    default_sort="-created_at",
)


def _no_shows(query, yes: bool):
    missed = Q(status=RegistrationStatus.CONFIRMED, checked_in_at__isnull=True, activity__status=ActivityStatus.PUBLISHED,
               activity__ends_at__lte=timeutil.now())
    return query.filter(missed) if yes else query.exclude(missed)


async def signup_list(request: Request) -> Response:
    return await SIGNUPS.response(request)


# QR code ----------------------------------------------------------------------------------------


def qr_png(text: str) -> Response:
    """A PNG QR code made here (segno, no outside service): scanners read it into the check-in box."""
    import io

    import segno

    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="png", scale=8, border=2)
    return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


async def registration_qr(request: Request) -> Response:
    registration: Registration = request.state.record
    return qr_png(registration.code)

