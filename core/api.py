"""The public API for plugins: everything a plugin may import from core is here.

    from core.api import Manifest, hookimpl, route, Permission, NavItem, ...

Anything imported from another `core.*` module is internal and may change
without notice (tests may also use `core.testing`, the test kit). This module
follows `HOOK_API_VERSION`; docs/plugins.md describes each name.

Declaring a plugin: `Manifest`, `HOOK_API_VERSION`, `hookimpl`, and the values
hooks return: `Permission`, `NavItem`, `DashboardTile`, `CustomerSection`,
`SearchResult`, `JobSpec`, `CallEvent`/`CallEventError` (PBX adapters);
`HookDeprecationWarning` is warned for deprecated hooks.

Pages: `route`, `render`, `ctx`, `form_data`, `errors_for` (a page of several
forms: the refused form's errors), `redirect`, `toast`,
`project_url`, `plugin_url`, `enabled_modules`, `may_see_personal_data`;
lists: `ListView`, `Column`, `Filter`; a plugin's own spreadsheet import:
`read_spreadsheet` (rows of an .xlsx/.csv file, streamed), `SpreadsheetError`,
`header_key` (a column name as compared).

Data: `ProjectScopedModel`, `unscoped`, `current_scope`, `OutOfScope`,
`transaction`; core's models `Project`, `Building`, `Unit`, `UnitUse`,
`Customer`, `CustomerPhone`, `CustomerUnit`, `Relation`, `Channel`, `User`,
`Role`, `Membership`, `Department`, `Sequence`; people: `create_customer`,
`customer_search_q`, `normalize_phone`, `try_normalize_phone`, `display_phone`,
`PhoneError`, `users_with_permission`; search providers: `newest_matches` (newest records
with one of some numbers, without a backward walk of the whole table).

Records' history and files: `timeline`, `attachments`; events between plugins:
`emit`, `emit_many` (many events of one name), `DomainEvent`; live updates: `realtime`; signed links: `links`;
working-time deadlines: `deadline`, `project_calendar`, `WorkingCalendar`.

JSON API for integrations (hook `register_api_routes`): `api_route` builds an
`ApiRoute`; handlers get an `ApiCall` and raise `ApiError`; models derive from
`ApiModel`; lists take a `ListQuery` (its filters sent: `query.sent(...)`) and answer
`Page[...]` through `paginate`; ids in queries and bodies are at most `MAX_ID`;
records synced by integrations mix in `ChangeTracked` (`updated_at`). Events
offered to webhook subscribers: `EventSpec` (hook `register_events`).

Jobs and email: `JobContext`, `JobError`, `queue_run`, `run_job_now`,
`queue_email`, `EmailError`; time: `now` (core's clock, frozen in tests).

Text: `gettext`, `lazy_gettext`, `ngettext`, `pgettext`, `lazy_pgettext` (each
looks in the calling plugin's own catalog, then core's); `local_today` (the
date in an estate's time zone). The plugin host: `current_host`.
"""

from __future__ import annotations

import pluggy

from core.i18n import local_today
# The calling plugin's catalog first (the plugin whose package the calling module is in), then core's.
from core.i18n import plugin_gettext as gettext, plugin_lazy_gettext as lazy_gettext, plugin_ngettext as ngettext
from core.i18n import plugin_lazy_pgettext as lazy_pgettext, plugin_pgettext as pgettext  # msgctxt
from core.clock import now  # the current time, aware UTC; frozen by the test kit's `frozen_time`
from core.kit import (
    HOOK_API_VERSION,
    CallEvent,
    HookDeprecationWarning,
    CallEventError,
    ApiRoute,
    CustomerSection,
    DashboardTile,
    DomainEvent,
    EventSpec,
    JobSpec,
    Manifest,
    NavItem,
    Permission,
    SearchResult,
)
from core import links  # signed, expiring, single-use links for people who never log in (surveys)
from core import attachments, realtime, timeline  # realtime.publish/user_channel; timeline.post/history/context, attachments.attach/list_for/context
from core.db import transaction
from core.events import emit, emit_many
from core.jobs import JobContext, JobError, queue_run, run_job_now
from core.plugins import current_host  # the plugin host, to call project hooks (host.call(..., enabled=...))
from core.listing import Column, Filter, ListView
from core.importer import ImportFileError as SpreadsheetError, _key as header_key, read_rows as read_spreadsheet
from core.outbox import EmailError, queue_email
from core.models import Building, Customer, CustomerUnit, Project, Relation, Sequence, Unit, UnitUse, User
from core.models import ChangeTracked  # `updated_at` on every save, for `updated_since` syncs
from core.rest import MAX_ID, ApiCall, ApiError, ApiModel, ListQuery, Page, api_route, paginate  # the JSON API kit
from core.models import Channel, CustomerPhone, Department, Membership, Role  # staff, departments, contact channels
from core.accounts import users_with_permission  # active staff holding a permission in an estate
from core.people import PhoneError, create_customer, display_phone, normalize_phone, try_normalize_phone
from core.customers import customer_search_q  # name / pinyin / phone match for customer lookups
from core.search import newest_matches  # search providers: newest records with one of some numbers
from core.sla import WorkingCalendar, deadline, project_calendar  # SLA deadlines in working time
from core.scope import OutOfScope, ProjectScopedModel, current_scope, unscoped
from core.templating import may_see_personal_data, render
from core.web import ctx, enabled_modules, errors_for, form_data, plugin_url, project_url, redirect, route, toast

hookimpl = pluggy.HookimplMarker("courtyard")

__all__ = [
    "HOOK_API_VERSION",
    "ApiCall",
    "ApiError",
    "ApiModel",
    "ApiRoute",
    "ChangeTracked",
    "EventSpec",
    "ListQuery",
    "Page",
    "api_route",
    "paginate",
    "MAX_ID",
    "HookDeprecationWarning",
    "now",
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
    "newest_matches",
    "deadline",
    "display_phone",
    "normalize_phone",
    "project_calendar",
    "try_normalize_phone",
    "users_with_permission",
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
    "emit_many",
    "SpreadsheetError",
    "header_key",
    "read_spreadsheet",
    "errors_for",
    "form_data",
    "gettext",
    "hookimpl",
    "lazy_gettext",
    "lazy_pgettext",
    "local_today",
    "links",
    "may_see_personal_data",
    "ngettext",
    "pgettext",
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
