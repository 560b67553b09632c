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
    CustomerSection,
    DashboardTile,
    DomainEvent,
    JobSpec,
    Manifest,
    NavItem,
    Permission,
    SearchResult,
)
from core.db import transaction
from core.events import emit
from core.scope import OutOfScope, ProjectScopedModel, current_scope, unscoped
from core.templating import render
from core.web import ctx, form_data, plugin_url, project_url, redirect, route, toast

hookimpl = pluggy.HookimplMarker("courtyard")

__all__ = [
    "HOOK_API_VERSION",
    "CustomerSection",
    "DashboardTile",
    "DomainEvent",
    "JobSpec",
    "Manifest",
    "NavItem",
    "OutOfScope",
    "Permission",
    "ProjectScopedModel",
    "SearchResult",
    "ctx",
    "current_scope",
    "emit",
    "form_data",
    "gettext",
    "hookimpl",
    "lazy_gettext",
    "ngettext",
    "plugin_url",
    "project_url",
    "redirect",
    "render",
    "route",
    "toast",
    "transaction",
    "unscoped",
]
