"""Fee collection (物业费收取及催缴): bills, payments and receipts, arrears and dunning."""

from __future__ import annotations

from core.api import (
    HOOK_API_VERSION, CustomerSection, JobSpec, Manifest, NavItem, Permission, hookimpl,
    lazy_gettext as _,
)

MANIFEST = Manifest(
    name="fees",
    label=_("Fees"),
    version="0.1.0",
    hook_api=HOOK_API_VERSION,
    description=_("Monthly bills, payments with receipts, arrears ageing, dunning and collection rate."),
)


@hookimpl
def register_models():
    return ["plugins.fees.models"]


@hookimpl
def register_settings():
    # Bills fall due on this day of their month.
    return {"due_day": 15}


@hookimpl
def register_permissions():
    return [
        Permission("fees.view", _("See bills, payments and arrears"), ("admin", "manager", "agent", "cashier", "readonly")),
        Permission("fees.post_payment", _("Post payments and print receipts"), ("admin", "manager", "cashier")),
        Permission("fees.approve", _("Approve reversals, discounts and exemptions"), ("admin", "manager")),
        Permission("fees.manage", _("Manage fee items, rates and dunning steps"), ("admin", "manager")),
        Permission("fees.run_bills", _("Run the monthly bill run"), ("admin", "manager")),
    ]


@hookimpl
def register_jobs():
    from plugins.fees import jobs

    return [
        JobSpec("fees.bill_run", "0 2 1 * *", jobs.bill_run_job, label=_("Monthly bill run"), catch_up="once",
                timeout_seconds=6 * 3600, transactional=False),
        JobSpec("fees.dunning", "0 9 * * *", jobs.dunning_job, label=_("Dunning steps"), catch_up="once",
                timeout_seconds=3600, transactional=False),
        JobSpec("fees.snapshot", "50 23 * * *", jobs.snapshot_job, label=_("Daily collection snapshot"),
                catch_up="once"),
    ]


@hookimpl
def register_events():
    from core.api import EventSpec

    return [
        EventSpec("fees.bill_issued", _("Bill issued"),
                  _("One per bill of a bill run, committed with the bill (tens of thousands per month in a large estate).")),
        EventSpec("fees.bill_run_completed", _("Bill run completed"),
                  _("A month's bill run finished: bills created, bills and amount of the month.")),
        EventSpec("fees.payment_posted", _("Payment posted"), _("A payment was recorded with its receipt number.")),
        EventSpec("fees.payment_reversed", _("Payment reversed"),
                  _("A manager reversed a payment; the reversal has its own receipt number.")),
    ]


@hookimpl
def register_routes():
    from plugins.fees.views import routes

    return routes()


@hookimpl
def register_api_routes():
    from plugins.fees import api

    return api.routes()


@hookimpl
def navigation(request, project):
    base = f"/p/{project.code}/fees/"
    return [
        NavItem(_("Fees"), base, icon="fees", permission="fees.view", order=40),
        NavItem(_("Arrears"), base + "arrears", icon="alert", permission="fees.view", order=41),
        NavItem(_("Receipts"), base + "payments", icon="receipts", permission="fees.view", order=42),
        NavItem(_("Fee setup"), base + "setup", icon="settings", group="admin", permission="fees.manage", order=800),
    ]


@hookimpl
async def dashboard_tiles(request, project):
    from plugins.fees.views import dashboard_tiles as tiles

    return await tiles(request, project)


@hookimpl
async def customer_sections(request, customer):
    from plugins.fees.views import customer_account

    context = await customer_account(request, customer)
    return [CustomerSection(_("Fees"), "fees/_customer_section.html", context, order=40, permission="fees.view")]


@hookimpl
async def search(request, query, project_ids):
    from plugins.fees.views import search_results

    return await search_results(query, project_ids)


@hookimpl
async def demo_data(project, rng):
    from plugins.fees.demo import load

    await load(project, rng)
