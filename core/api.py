"""The public API for plugins: everything a plugin may import from core is here.

    from core.api import Manifest, hookimpl, route, Permission, NavItem, ...

Anything imported from another `core.*` module is internal and may change
without notice. This module follows `HOOK_API_VERSION`.
"""

from __future__ import annotations

import pluggy

from core.i18n import gettext, lazy_gettext, ngettext
from core.kit import (
    HOOK_API_VERSION,
    CallEvent,
    CallEventError,
    CustomerSection,
    DashboardTile,
    DomainEvent,
    JobSpec,
    Manifest,
    NavItem,
    Permission,
    SearchResult,
)
from core import attachments, realtime, timeline  # realtime.publish/user_channel; timeline.post/history/context, attachments.attach/list_for/context
from core.db import transaction
from core.events import emit
from core.jobs import JobContext, JobError, queue_run, run_job_now
from core.plugins import current_host  # the plugin host, to call project hooks (host.call(..., enabled=...))
from core.listing import Column, Filter, ListView
from core.outbox import EmailError, queue_email
from core.models import Building, Customer, CustomerUnit, Project, Relation, Sequence, Unit, UnitUse, User
from core.models import Channel, CustomerPhone, Department, Membership, Role  # staff, departments, contact channels
from core.people import PhoneError, create_customer, display_phone, normalize_phone, try_normalize_phone
from core.customers import customer_search_q  # name / pinyin / phone match for customer lookups
from core.sla import WorkingCalendar, deadline, project_calendar  # SLA deadlines in working time
from core.scope import OutOfScope, ProjectScopedModel, current_scope, unscoped
from core.templating import may_see_personal_data, render
from core.web import ctx, enabled_modules, form_data, plugin_url, project_url, redirect, route, toast

hookimpl = pluggy.HookimplMarker("courtyard")

__all__ = [
    "HOOK_API_VERSION",
    "CallEvent",
    "CallEventError",
    "Building",
    "Channel",
    "CustomerPhone",
    "Department",
    "Membership",
    "PhoneError",
    "Role",
    "WorkingCalendar",
    "create_customer",
    "customer_search_q",
    "deadline",
    "display_phone",
    "normalize_phone",
    "project_calendar",
    "try_normalize_phone",
    "Customer",
    "CustomerUnit",
    "Project",
    "Relation",
    "Sequence",
    "Unit",
    "UnitUse",
    "User",
    "Column",
    "CustomerSection",
    "DashboardTile",
    "DomainEvent",
    "EmailError",
    "Filter",
    "JobContext",
    "JobError",
    "JobSpec",
    "ListView",
    "Manifest",
    "NavItem",
    "OutOfScope",
    "Permission",
    "ProjectScopedModel",
    "SearchResult",
    "attachments",
    "ctx",
    "current_host",
    "enabled_modules",
    "current_scope",
    "emit",
    "form_data",
    "gettext",
    "hookimpl",
    "lazy_gettext",
    "may_see_personal_data",
    "ngettext",
    "plugin_url",
    "project_url",
    "queue_run",
    "queue_email",
    "redirect",
    "realtime",
    "render",
    "route",
    "run_job_now",
    "timeline",
    "toast",
    "transaction",
    "unscoped",
]
