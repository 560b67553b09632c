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
    return ["core.models", "core.auth", "core.access", "core.timeline", "core.attachments", "core.importer", "core.jobs", "core.outbox", "core.realtime", "core.links", "core.rest", "core.webhooks"]


@hookimpl
def register_jobs():
    from core.api import JobSpec
    from core.outbox import send_email_job
    from core.realtime import cleanup_job
    from core import rest, webhooks

    return [
        # Also kicked right after email is queued; this catches the rest and the retries.
        JobSpec(
            "core.send_email", "* * * * *", send_email_job, label=_("Send queued email"), per_project=False,
            catch_up="once", timeout_seconds=600, max_attempts=1, transactional=False,
        ),
        JobSpec(
            "core.realtime_cleanup", "17 * * * *", cleanup_job, label=_("Delete old realtime messages"),
            per_project=False, catch_up="skip",
        ),
        # Also kicked right after an event is queued; this catches the rest and the retries.
        JobSpec(
            "core.deliver_webhooks", "* * * * *", webhooks.deliver_job, label=_("Deliver webhooks"), per_project=False,
            catch_up="once", timeout_seconds=600, max_attempts=1, transactional=False,
        ),
        JobSpec(
            "core.api_cleanup", "23 * * * *", rest.cleanup_job, label=_("Delete old API idempotency keys and rate counters"),
            per_project=False, catch_up="skip",
        ),
    ]


@hookimpl
def register_permissions():
    return [
        Permission("core.view", _("See the estate's units and customers"), ALL_ROLES),
        Permission("core.edit_customers", _("Create and edit customers"), ("admin", "manager", "agent")),
        # Notes and files are writes: the read-only role only reads the timeline.
        Permission("core.annotate", _("Add notes and files to records"), tuple(r for r in ALL_ROLES if r != "readonly")),
        Permission("core.view_personal_data", _("See ID-card numbers and full phone numbers"), ("admin", "manager")),
        Permission("core.import", _("Import buildings, units and customers"), ("admin", "manager")),
        Permission("core.manage_modules", _("Enable and disable modules"), ("admin",)),
        Permission("core.manage_users", _("Manage users, roles and memberships"), ("admin",)),
        Permission("core.view_access_log", _("See the access log"), ("admin",)),
        Permission("core.manage_jobs", _("See and run scheduled jobs"), ("admin",)),
        Permission("core.manage_outbox", _("See and retry outgoing email"), ("admin",)),
        Permission("core.manage_integrations", _("Manage API tokens and webhooks (head office)"), ("admin",)),
    ]


@hookimpl
def register_api_routes():
    from core.customers_api import routes

    return routes()


@hookimpl
def domain_event(event):
    """Every event of every estate: queue it for the webhook subscribers that want it (same transaction)."""
    from core.webhooks import enqueue

    return enqueue(event)


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
        *_customer_routes(),
        *_record_routes(),
        *_import_routes(),
    ]


def _record_routes():
    """Timeline notes and attachments of any record; the record itself is checked in the view."""
    from core import attachments, timeline

    return [
        route("/timeline/{label}/{id:int}", timeline.timeline_fragment, name="timeline", permission="core.view"),
        route(
            "/timeline/{label}/{id:int}/notes", timeline.add_note, methods=["POST"], name="timeline_note",
            permission="core.annotate",
        ),
        route(
            "/files/{label}/{id:int}", attachments.upload, methods=["POST"], name="attachment_upload",
            permission="core.annotate",
        ),
        route("/files/{id:int}", attachments.download, name="attachment", permission="core.view", model="core.Attachment"),
    ]


def _import_routes():
    from core import import_views as v

    perm, batch = "core.import", "core.ImportBatch"
    return [
        route("/import", v.import_page, name="import", permission=perm),
        route("/import", v.import_upload, methods=["POST"], name="import_upload", permission=perm),
        route("/import/template.xlsx", v.template_download, name="import_template", permission=perm),
        route("/import/{id:int}", v.batch_page, name="import_batch", permission=perm, model=batch),
        route("/import/{id:int}/progress", v.batch_progress, name="import_progress", permission=perm, model=batch),
        route(
            "/import/{id:int}/commit", v.batch_commit, methods=["POST"], name="import_commit", permission=perm,
            model=batch,
        ),
    ]


def _customer_routes():
    from core import customers as c

    view, edit, customer = "core.view", "core.edit_customers", "core.Customer"
    return [
        route("/customers", c.customer_list, name="customers", permission=view),
        route("/customers/new", c.customer_new, name="customer_new", permission=edit),
        route("/customers/new", c.customer_save, methods=["POST"], name="customer_create", permission=edit),
        route("/customers/{id:int}", c.customer_detail, name="customer", permission=view, model=customer),
        route("/customers/{id:int}/edit", c.customer_edit, name="customer_edit", permission=edit, model=customer),
        route(
            "/customers/{id:int}/edit", c.customer_save, methods=["POST"], name="customer_update",
            permission=edit, model=customer,
        ),
        route(
            "/customers/{id:int}/units", c.customer_link_unit, methods=["POST"], name="customer_link_unit",
            permission=edit, model=customer,
        ),
        route(
            "/customers/{id:int}/units/{link:int}/end", c.customer_end_link, methods=["POST"],
            name="customer_end_link", permission=edit, model=customer,
        ),
        route("/units", c.unit_list, name="units", permission=view),
        route("/units/{id:int}", c.unit_detail, name="unit", permission=view, model="core.Unit"),
        route("/buildings", c.building_list, name="buildings", permission=view),
    ]


@hookimpl
def register_global_routes():
    from core import realtime, views
    from core.search import search_page

    return [
        route("/", views.home, name="home"),
        route("/search", search_page, name="search"),
        route("/events", realtime.events, name="events"),
        route("/login", views.login_page, name="login", public=True),
        route("/login", views.login_submit, methods=["POST"], name="login_submit", public=True),
        route("/logout", views.logout, methods=["POST"], name="logout", public=True),
        route("/lang", views.set_language, methods=["POST"], name="lang", public=True),
        route("/account/password", views.password_page, name="account_password"),
        route("/account/password", views.password_submit, methods=["POST"], name="account_password_submit"),
        *_admin_routes(),
        *_jobs_routes(),
        *_integration_routes(),
    ]


def _integration_routes():
    from core import integrations_admin as i

    perm = "core.manage_integrations"
    return [
        route("/admin/api-tokens", i.tokens_page, name="admin_api_tokens", permission=perm),
        route("/admin/api-tokens/new", i.token_new, name="admin_api_token_new", permission=perm),
        route("/admin/api-tokens/new", i.token_create, methods=["POST"], name="admin_api_token_create", permission=perm),
        route("/admin/api-tokens/{id:int}", i.token_detail, name="admin_api_token", permission=perm),
        route("/admin/api-tokens/{id:int}/revoke", i.token_revoke, methods=["POST"], name="admin_api_token_revoke", permission=perm),
        route("/admin/webhooks", i.subscriptions_page, name="admin_webhooks", permission=perm),
        route("/admin/webhooks/new", i.subscription_new, name="admin_webhook_new", permission=perm),
        route("/admin/webhooks/new", i.subscription_create, methods=["POST"], name="admin_webhook_create", permission=perm),
        route("/admin/webhooks/{id:int}", i.subscription_detail, name="admin_webhook", permission=perm),
        route("/admin/webhooks/{id:int}", i.subscription_update, methods=["POST"], name="admin_webhook_update", permission=perm),
        route("/admin/webhooks/{id:int}/secret", i.subscription_secret, methods=["POST"], name="admin_webhook_secret", permission=perm),
        route("/admin/webhooks/{id:int}/test", i.subscription_test, methods=["POST"], name="admin_webhook_test", permission=perm),
        route(
            "/admin/webhooks/{id:int}/replay-failed", i.subscription_replay_failed, methods=["POST"],
            name="admin_webhook_replay_failed", permission=perm,
        ),
        route("/admin/webhooks/deliveries/{id:int}", i.delivery_detail, name="admin_webhook_delivery", permission=perm),
        route(
            "/admin/webhooks/deliveries/{id:int}/replay", i.delivery_replay, methods=["POST"],
            name="admin_webhook_delivery_replay", permission=perm,
        ),
    ]


def _jobs_routes():
    from core import jobs_admin as j

    jobs, mail = "core.manage_jobs", "core.manage_outbox"
    return [
        route("/jobs", j.jobs_page, name="jobs", permission=jobs),
        route("/jobs/runs/{id:int}", j.run_fragment, name="job_run", permission=jobs),
        route("/jobs/{name}", j.job_detail, name="job", permission=jobs),
        route("/jobs/{name}/run", j.job_run_now, methods=["POST"], name="job_run_now", permission=jobs),
        route("/jobs/{name}/toggle", j.job_toggle, methods=["POST"], name="job_toggle", permission=jobs),
        route("/outbox", j.outbox_page, name="outbox", permission=mail),
        route("/outbox/retry", j.outbox_retry, methods=["POST"], name="outbox_retry_all", permission=mail),
        route("/outbox/{id:int}", j.outbox_message, name="outbox_message", permission=mail),
        route("/outbox/{id:int}/retry", j.outbox_retry, methods=["POST"], name="outbox_retry", permission=mail),
    ]


def _admin_routes():
    from core import accounts_admin as admin

    manage, user, role = "core.manage_users", "core.User", "core.Role"
    return [
        route("/admin/users", admin.users_list, name="admin_users", permission=manage),
        route("/admin/users/new", admin.user_new, name="admin_user_new", permission=manage),
        route("/admin/users/new", admin.user_create, methods=["POST"], name="admin_user_create", permission=manage),
        route("/admin/users/{id:int}", admin.user_detail, name="admin_user", permission=manage, model=user),
        route("/admin/users/{id:int}", admin.user_update, methods=["POST"], name="admin_user_update", permission=manage, model=user),
        route("/admin/users/{id:int}/active", admin.user_set_active, methods=["POST"], name="admin_user_active", permission=manage, model=user),
        route("/admin/users/{id:int}/password", admin.user_reset_password, methods=["POST"], name="admin_user_password", permission=manage, model=user),
        route("/admin/users/{id:int}/memberships", admin.membership_add, methods=["POST"], name="admin_membership_add", permission=manage, model=user),
        route(
            "/admin/users/{id:int}/memberships/{membership:int}/delete", admin.membership_remove, methods=["POST"],
            name="admin_membership_remove", permission=manage, model=user,
        ),
        route("/admin/roles", admin.roles_list, name="admin_roles", permission=manage),
        route("/admin/roles/new", admin.role_new, name="admin_role_new", permission=manage),
        route("/admin/roles/new", admin.role_create, methods=["POST"], name="admin_role_create", permission=manage),
        route("/admin/roles/{id:int}", admin.role_detail, name="admin_role", permission=manage, model=role),
        route("/admin/roles/{id:int}", admin.role_update, methods=["POST"], name="admin_role_update", permission=manage, model=role),
        route("/admin/access-log", admin.access_log, name="admin_access_log", permission="core.view_access_log"),
    ]


def _system_navigation(request):
    from core import integrations_admin, jobs_admin

    return [*jobs_admin.navigation_items(request), *integrations_admin.navigation_items(request)]


@hookimpl
def navigation(request, project):
    # Account administration is global: its entries show on project pages and on the admin pages themselves.
    admin = [
        NavItem(_("Users"), "/admin/users", icon="users", group="admin", permission="core.manage_users", order=910),
        NavItem(_("Roles"), "/admin/roles", icon="shield", group="admin", permission="core.manage_users", order=920),
        NavItem(_("Access log"), "/admin/access-log", icon="clock", group="admin", permission="core.view_access_log", order=930),
        *_system_navigation(request),
    ]
    if project is None:
        return admin
    base = f"/p/{project.code}/"
    return [
        NavItem(_("Dashboard"), base, icon="home", order=0),
        NavItem(_("Customers"), base + "customers", icon="users", permission="core.view", order=10),
        NavItem(_("Units"), base + "units", icon="building", permission="core.view", order=11),
        NavItem(_("Buildings"), base + "buildings", icon="list", permission="core.view", order=12),
        NavItem(_("Import"), base + "import", icon="upload", group="admin", permission="core.import", order=890),
        NavItem(_("Modules"), base + "modules", icon="puzzle", group="admin", permission="core.manage_modules", order=900),
        *admin,
    ]


@hookimpl
def search(request, query, project_ids):
    from core.search import core_results

    return core_results(request, query, project_ids)
