"""Core registers its own features through the same hooks plugins use."""

from __future__ import annotations

from core.api import HOOK_API_VERSION, Manifest, NavItem, Permission, hookimpl, lazy_gettext as _
from core.web import route

MANIFEST = Manifest(
    name="core",
    label=_("Core"),
    version="0.1.0",
    hook_api=HOOK_API_VERSION,
    description=_("Estates, customers, staff, search, dashboards, jobs and email."),
    per_project=False,
)

ALL_ROLES = ("admin", "manager", "agent", "staff", "cashier", "readonly")


@hookimpl
def register_models():
    return ["core.models", "core.auth", "core.access"]


@hookimpl
def register_permissions():
    return [
        Permission("core.view", _("See the estate's units and customers"), ALL_ROLES),
        Permission("core.edit_customers", _("Create and edit customers"), ("admin", "manager", "agent")),
        Permission("core.view_personal_data", _("See ID-card numbers and full phone numbers"), ("admin", "manager")),
        Permission("core.import", _("Import buildings, units and customers"), ("admin", "manager")),
        Permission("core.manage_modules", _("Enable and disable modules"), ("admin",)),
        Permission("core.manage_users", _("Manage users, roles and memberships"), ("admin",)),
        Permission("core.view_access_log", _("See the access log"), ("admin",)),
        Permission("core.manage_jobs", _("See and run scheduled jobs"), ("admin",)),
        Permission("core.manage_outbox", _("See and retry outgoing email"), ("admin",)),
    ]


@hookimpl
def register_routes():
    from core import views

    return [
        route("/", views.dashboard, name="dashboard", permission="core.view"),
        route("/modules", views.modules_page, name="modules", permission="core.manage_modules"),
        route(
            "/modules/{name}", views.module_toggle, methods=["POST"], name="module_toggle",
            permission="core.manage_modules",
        ),
    ]


@hookimpl
def register_global_routes():
    from core import views

    return [
        route("/", views.home, name="home"),
        route("/login", views.login_page, name="login", public=True),
        route("/login", views.login_submit, methods=["POST"], name="login_submit", public=True),
        route("/logout", views.logout, methods=["POST"], name="logout", public=True),
        route("/lang", views.set_language, methods=["POST"], name="lang", public=True),
    ]


@hookimpl
def navigation(request, project):
    if project is None:
        return []
    base = f"/p/{project.code}/"
    return [
        NavItem(_("Dashboard"), base, icon="home", order=0),
        NavItem(_("Modules"), base + "modules", icon="puzzle", group="admin", permission="core.manage_modules", order=900),
    ]
