"""Complaint handling (投诉处理): the eleven-step procedure, deadlines and escalation, surveys, defect feedback."""

from __future__ import annotations

from core.api import (
    HOOK_API_VERSION, JobSpec, Manifest, NavItem, Permission, hookimpl, lazy_gettext as _,
)

MANIFEST = Manifest(
    name="complaints",
    label=_("Complaints"),
    version="0.1.0",
    hook_api=HOOK_API_VERSION,
    description=_(
        "Complaint cases from receipt to root cause: deadlines and escalation, satisfaction surveys, "
        "repeat detection, analysis and defect feedback to head office."
    ),
)


@hookimpl
def register_models():
    return ["plugins.complaints.models"]


@hookimpl
def register_settings():
    from plugins.complaints.cases import DEFAULTS

    return dict(DEFAULTS)


@hookimpl
def register_permissions():
    return [
        Permission("complaints.view", _("See complaint cases"), ("admin", "manager", "agent", "staff", "readonly")),
        Permission("complaints.create", _("Open complaint cases"), ("admin", "manager", "agent")),
        Permission("complaints.handle", _("Work on complaint cases (record, investigate, propose, follow up)"),
                   ("admin", "manager", "agent", "staff")),
        Permission("complaints.assign", _("Assess complaints and assign them; receive overdue escalations"),
                   ("admin", "manager")),
        Permission("complaints.close", _("Close complaint cases and review re-opened ones"), ("admin", "manager")),
        Permission("complaints.analyse", _("See complaint analysis and defect feedback"), ("admin", "manager")),
        Permission("complaints.manage", _("Manage complaint categories"), ("admin", "manager")),
    ]


@hookimpl
def register_jobs():
    from plugins.complaints import jobs

    return [
        JobSpec("complaints.deadlines", "*/10 * * * *", jobs.deadline_watch,
                label=_("Complaint deadline warnings and escalation")),
        JobSpec("complaints.surveys", "0 10 * * *", jobs.send_surveys, label=_("Send satisfaction surveys")),
        JobSpec("complaints.weekly_analysis", "0 8 * * 1", jobs.weekly_analysis,
                label=_("Weekly complaint analysis to managers"), catch_up="skip"),
    ]


@hookimpl
def register_events():
    from core.api import EventSpec

    return [
        EventSpec("complaints.escalated", _("Complaint escalated"),
                  _("A case is overdue and was escalated to the supervisor, the manager or head office.")),
    ]


@hookimpl
def register_api_routes():
    from plugins.complaints import api

    return api.routes()


@hookimpl
def register_routes():
    from plugins.complaints.views import project_routes

    return project_routes()


@hookimpl
def register_global_routes():
    from plugins.complaints.views import global_routes

    return global_routes()


@hookimpl
def navigation(request, project):
    if project is None:
        return [NavItem(_("Defect feedback"), "/complaints/defects", icon="alert", group="admin",
                        permission="complaints.analyse", order=870)]
    base = f"/p/{project.code}/complaints/"
    return [
        NavItem(_("Complaints"), base, icon="complaints", permission="complaints.view", order=30),
        NavItem(_("Complaint analysis"), base + "analysis", icon="chart", permission="complaints.analyse", order=31),
        NavItem(_("Defect feedback"), "/complaints/defects", icon="alert", permission="complaints.analyse", order=32),
        NavItem(_("Complaint categories"), base + "categories", icon="tag", group="admin",
                permission="complaints.manage", order=860),
    ]


@hookimpl
def domain_event(event):
    from plugins.complaints.cases import open_from_hotline, open_from_return_visit

    if event.name == "hotline.complaint_received":
        return open_from_hotline(event)
    if event.name == "activities.return_visit_recorded" and event.data.get("follow_up") == "complaint":
        return open_from_return_visit(event)
    return None


@hookimpl
def dunning_holds(project, unit_ids):
    from plugins.complaints.cases import units_with_open_cases

    return units_with_open_cases(project.id, unit_ids)


@hookimpl
def dashboard_tiles(request, project):
    from plugins.complaints.analysis import dashboard_tiles

    return dashboard_tiles(project)


@hookimpl
def customer_sections(request, customer):
    from plugins.complaints.analysis import customer_section

    async def sections():
        return [await customer_section(customer)]

    return sections()


@hookimpl
def search(request, query, project_ids):
    from plugins.complaints.analysis import search

    return search(query, project_ids)


@hookimpl
def demo_data(project, rng):
    from plugins.complaints.demo import load

    return load(project, rng)
