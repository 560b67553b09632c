"""Visitor registration at the gate (访客登记): a Courtyard plugin.

The worked example of docs/tutorial.md: a model and its migration, a list page
with an htmx action, a customer-360 section, a dashboard tile, permissions, a
nightly job and an email.
"""

from core.api import (
    HOOK_API_VERSION,
    CustomerSection,
    JobSpec,
    Manifest,
    NavItem,
    Permission,
    hookimpl,
    lazy_gettext as _,
    route,
)

MANIFEST = Manifest(
    name="visitors",
    label=_("Visitors"),
    version="1.0.0",
    hook_api=HOOK_API_VERSION,
    description=_("Visitor registration at the gate"),
)


@hookimpl
def register_models():
    return ["courtyard_visitors.models"]


@hookimpl
def register_permissions():
    return [
        Permission("visitors.view", _("See the visitor log"), roles=("admin", "manager", "agent", "staff", "readonly")),
        Permission("visitors.register", _("Register visitors and sign them out"), roles=("admin", "manager", "agent", "staff")),
        Permission("visitors.summary", _("Receive the nightly visitor summary"), roles=("manager",)),
    ]


@hookimpl
def register_routes():
    from courtyard_visitors import views

    return [
        route("/", views.visitor_list, name="visitors", permission="visitors.view"),
        route("/new", views.register_form, name="visitor_new", permission="visitors.register"),
        route("/new", views.register_submit, methods=["POST"], permission="visitors.register"),
        route(
            "/{id:int}/left", views.mark_left, methods=["POST"], name="visitor_left",
            permission="visitors.register", model="visitors.Visitor",
        ),
    ]


@hookimpl
def navigation(request, project):
    if project is None:
        return []
    return [NavItem(_("Visitors"), f"/p/{project.code}/visitors/", icon="users", permission="visitors.view", order=40)]


@hookimpl
def dashboard_tiles(request, project):
    from courtyard_visitors import views

    async def tiles():
        return [await views.today_tile(project)]

    return tiles()


@hookimpl
def customer_sections(request, customer):
    from courtyard_visitors import views

    async def sections():
        visitors = await views.recent_visitors_of(customer)
        return [
            CustomerSection(
                _("Recent visitors"), "visitors/section.html", {"visitors": visitors},
                order=60, permission="visitors.view",
            )
        ]

    return sections()


@hookimpl
def register_jobs():
    from courtyard_visitors import jobs

    return [
        JobSpec(
            "visitors.close_open_visits", "30 23 * * *", jobs.close_open_visits,
            label=_("Close visits left open and email the day's summary"),
        )
    ]
