"""Member club, activities and return visits (会员活动 / 客户关系维护).

Owners join an estate's club (number, level, join date, consent to be
contacted; points optional per estate). Activities have seats, a
registration window, a cost, and an audience: estates, buildings and
membership levels. Staff register owners (with family members) or owners
register from a signed invitation link; when the seats are taken people join
a waitlist that moves up by itself when someone cancels. Check-in on the day
by name, phone or the QR code of the ticket; feedback by a single-use survey
link; return-visit plans (定期回访) make call lists spread over the staff.

Group-wide activities: a manager who manages activities in several estates
opens an activity of one estate (the host) to the others ("Also open to"
on the activity form). Each invited estate gets its own row of the activity
in that estate, so the ordinary project scope still keeps estates apart:
staff of an invited estate see the activity, register and check in their
own owners and see only their own sign-ups, plus the overall seat and
waitlist counts; an estate not invited sees nothing. Seats and the waitlist
are shared and counted on the host's row (the last seat goes to exactly one
person, whichever estate registers them). The host decides title, times,
place, seats, window, cost and status; each estate picks its own audience
(buildings, levels). Invitations go per estate, only to club members of
that estate's audience who agreed to be contacted (from the host's page
also to each invited estate the sender manages). Cancelling the host's activity
cancels it everywhere and emails every registered and waiting person in
their language. Details: `models.py`, `sharing.py`, `registration.py`.

Domain events: `activities.registration_confirmed`,
`activities.registration_cancelled`, `activities.return_visit_recorded`
(data documented in `domain_event`, core/hookspecs.py).

JSON API (`api.py`, scopes `activities:read` / `activities:write`): the
owners' WeChat mini-program lists activities with their seats and waitlist,
registers owners and cancels sign-ups through the same rules as staff.
"""

from __future__ import annotations

from core.api import HOOK_API_VERSION, Manifest, Permission, hookimpl, lazy_gettext as _

MANIFEST = Manifest(
    name="activities",
    label=_("Activities"),
    version="0.1.0",
    hook_api=HOOK_API_VERSION,
    description=_("Owners' club and levels, community events with waitlist and check-in, feedback, return visits."),
)


@hookimpl
def register_models():
    return ["plugins.activities.models"]


@hookimpl
def register_permissions():
    return [
        Permission("activities.view", _("See members, activities and return visits"),
                   ("admin", "manager", "agent", "staff", "readonly")),
        Permission("activities.manage", _("Manage the club, activities and return-visit plans"), ("admin", "manager")),
        Permission("activities.register", _("Register owners for activities and cancel sign-ups"),
                   ("admin", "manager", "agent")),
        Permission("activities.checkin", _("Check participants in at an activity"), ("admin", "manager", "agent", "staff")),
        Permission("activities.visit", _("Make return-visit calls"), ("admin", "manager", "agent")),
    ]


@hookimpl
def register_api_routes():
    from plugins.activities import api

    return api.routes()


@hookimpl
def register_events():
    from core.api import EventSpec

    return [
        EventSpec("activities.return_visit_recorded", _("Return visit recorded"),
                  _("A periodic return-visit call was recorded, with its outcome.")),
        EventSpec("activities.registration_confirmed", _("Activity registration confirmed"),
                  _("A person holds a seat at an activity: registered at once or moved up from the waitlist.")),
        EventSpec("activities.registration_cancelled", _("Activity registration cancelled"),
                  _("A seat or waitlist place ended: cancelled by staff, by the owner, or with the whole activity.")),
    ]


@hookimpl
def register_routes():
    from core.api import route
    from plugins.activities import views as v

    VIEW, MANAGE, REGISTER, CHECKIN = v.VIEW, v.MANAGE, v.REGISTER, v.CHECKIN
    activity = "activities.Activity"
    return [
        route("/", v.activity_list, name="activities", permission=VIEW),
        route("/new", v.activity_new, name="activity_new", permission=MANAGE),
        route("/new", v.activity_create, methods=["POST"], name="activity_create", permission=MANAGE),
        route("/signups", v.signup_list, name="activity_signups", permission=VIEW),
        route("/{id:int}", v.activity_detail, name="activity", permission=VIEW, model=activity),
        route("/{id:int}/edit", v.activity_edit, name="activity_edit", permission=MANAGE, model=activity),
        route("/{id:int}/edit", v.activity_update, methods=["POST"], name="activity_update", permission=MANAGE, model=activity),
        route("/{id:int}/status/{action}", v.activity_status, methods=["POST"], name="activity_status", permission=MANAGE,
              model=activity),
        route("/{id:int}/invite", v.send_invitations, methods=["POST"], name="activity_invite", permission=MANAGE,
              model=activity),
        route("/{id:int}/customers", v.customer_matches, name="activity_customers", permission=REGISTER, model=activity),
        route("/{id:int}/register", v.register_submit, methods=["POST"], name="activity_register", permission=REGISTER,
              model=activity),
        route("/{id:int}/registrations/{reg:int}/cancel", v.registration_cancel, methods=["POST"],
              name="activity_registration_cancel", permission=REGISTER, model=activity),
        route("/{id:int}/checkin", v.checkin_page, name="activity_checkin", permission=CHECKIN, model=activity),
        route("/{id:int}/checkin", v.checkin_lookup, methods=["POST"], name="activity_checkin_lookup",
              permission=CHECKIN, model=activity),
        route("/{id:int}/checkin/{reg:int}", v.checkin_submit, methods=["POST"], name="activity_checkin_submit",
              permission=CHECKIN, model=activity),
        route("/{id:int}/feedback", v.feedback_results, name="activity_feedback", permission=VIEW, model=activity),
        route("/registrations/{id:int}/qr.png", v.registration_qr, name="registration_qr", permission=VIEW,
              model="activities.Registration"),
        *_visit_routes(MANAGE),
        *_member_routes(MANAGE),
    ]


def _member_routes(MANAGE):
    from core.api import route
    from plugins.activities import member_views as mv

    member = "activities.Member"
    return [
        route("/members", mv.member_list, name="members", permission="activities.view"),
        route("/members/new", mv.member_new, name="member_new", permission=MANAGE),
        route("/members/new", mv.member_create, methods=["POST"], name="member_create", permission=MANAGE),
        route("/members/customers", mv.member_matches, name="member_customers", permission=MANAGE),
        route("/members/{id:int}", mv.member_detail, name="member", permission="activities.view", model=member),
        route("/members/{id:int}", mv.member_update, methods=["POST"], name="member_update", permission=MANAGE,
              model=member),
        route("/club", mv.club_page, name="club", permission=MANAGE),
        route("/club", mv.club_save, methods=["POST"], name="club_save", permission=MANAGE),
        route("/club/levels", mv.level_add, methods=["POST"], name="club_level_add", permission=MANAGE),
    ]


def _visit_routes(MANAGE):
    from core.api import route
    from plugins.activities import visit_views as vv

    plan, visit, VIEW, VISIT = "activities.VisitPlan", "activities.Visit", "activities.view", vv.VISIT
    return [
        route("/plans", vv.plan_list, name="visit_plans", permission=VIEW),
        route("/plans/new", vv.plan_new, name="visit_plan_new", permission=MANAGE),
        route("/plans/new", vv.plan_create, methods=["POST"], name="visit_plan_create", permission=MANAGE),
        route("/plans/{id:int}", vv.plan_detail, name="visit_plan", permission=VIEW, model=plan),
        route("/plans/{id:int}/edit", vv.plan_edit, name="visit_plan_edit", permission=MANAGE, model=plan),
        route("/plans/{id:int}/edit", vv.plan_update, methods=["POST"], name="visit_plan_update", permission=MANAGE,
              model=plan),
        route("/plans/{id:int}/generate", vv.plan_generate, methods=["POST"], name="visit_plan_generate",
              permission=MANAGE, model=plan),
        route("/visits", vv.call_list, name="visit_calls", permission=VISIT),
        route("/visits/{id:int}", vv.visit_page, name="visit", permission=VISIT, model=visit),
        route("/visits/{id:int}", vv.visit_record, methods=["POST"], name="visit_record", permission=VISIT, model=visit),
    ]


@hookimpl
def register_global_routes():
    from core.api import route
    from plugins.activities import public as p

    return [
        route("/join/{token}", p.join_page, name="activity_join", public=True),
        route("/join/{token}", p.join_submit, methods=["POST"], name="activity_join_submit", public=True),
        route("/ticket/{token}", p.ticket_page, name="activity_ticket", public=True),
        route("/ticket/{token}/qr.png", p.ticket_qr, name="activity_ticket_qr", public=True),
        route("/ticket/{token}/cancel", p.ticket_cancel, methods=["POST"], name="activity_ticket_cancel", public=True),
        route("/feedback/{token}", p.feedback_page, name="activity_feedback_form", public=True),
        route("/feedback/{token}", p.feedback_submit, methods=["POST"], name="activity_feedback_submit", public=True),
    ]


@hookimpl
def navigation(request, project):
    from core.api import NavItem

    base = f"/p/{project.code}/activities/"
    return [
        NavItem(_("Activities"), base, icon="calendar", permission="activities.view", order=50),
        NavItem(_("Club members"), base + "members", icon="users", permission="activities.view", order=51),
        NavItem(_("Return visits"), base + "visits", icon="phone", permission="activities.visit", order=52),
        NavItem(_("Return-visit plans"), base + "plans", icon="list", permission="activities.view", order=53),
    ]


@hookimpl
def register_jobs():
    from core.api import JobSpec
    from plugins.activities import jobs

    return [
        JobSpec("activities.reminders", "0 10 * * *", jobs.reminder_job, label=_("Activity reminders for tomorrow"),
                catch_up="once"),
        JobSpec("activities.feedback", "15 * * * *", jobs.feedback_job, label=_("Feedback surveys after activities"),
                catch_up="once"),
        JobSpec("activities.visit_lists", "30 6 * * *", jobs.visit_list_job, label=_("Return-visit call lists"),
                catch_up="once"),
    ]


@hookimpl
async def customer_sections(request, customer):
    from core.api import CustomerSection
    from plugins.activities.stats import customer_context

    context = await customer_context(request, customer)
    return [CustomerSection(_("Club and activities"), "activities/_customer_section.html", context, order=50,
                            permission="activities.view")]


@hookimpl
async def dashboard_tiles(request, project):
    from plugins.activities.stats import dashboard_tiles as tiles

    return await tiles(request, project)


@hookimpl
async def search(request, query, project_ids):
    from plugins.activities.stats import search_results

    return await search_results(request, query, project_ids)


@hookimpl
async def demo_data(project, rng):
    from plugins.activities.demo import load

    await load(project, rng)
