"""The shell around every page: project list, navigation, dashboards, module switches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from core import i18n
from core.auth import Principal, sync_roles
from core.kit import DashboardTile, NavItem
from core.models import Project, ProjectModule
from core.plugins import PluginHost

log = logging.getLogger("courtyard.shell")


async def sync_permissions(host: PluginHost) -> list:
    permissions = []
    for result in host.call_sync("register_permissions"):
        permissions.extend(result.value or [])
    await sync_roles(permissions)
    return permissions


def all_permissions(host: PluginHost) -> list:
    permissions = []
    for result in host.call_sync("register_permissions"):
        permissions.extend(result.value or [])
    return permissions


async def projects_for(principal: Principal) -> list[Project]:
    """The active estates the user works in, ordered by code."""
    if principal.is_head_office:
        return await principal.directory.active_projects()
    return await principal.directory.active_projects(only=principal.per_project)


@dataclass
class NavEntry:
    label: Any
    url: str
    icon: str
    group: str
    active: bool
    plugin: str


async def navigation(request: Request, projects: list[Project] | None = None) -> list[NavEntry]:
    """The sidebar's entries: the estate's on its pages; on pages outside any estate (search, account),
    the one estate's for a user who works in one estate only (as `/` takes them there), else the global ones.
    `projects`: the user's estates (`projects_for`), when the caller has them already."""
    from core.web import ctx, enabled_modules

    context = ctx(request)
    project, modules = context.project, context.modules
    host: PluginHost = request.app.state.host
    if project is None and context.principal is not None:
        if projects is None:
            projects = await projects_for(context.principal)
        if len(projects) == 1:
            project = projects[0]
            modules = await enabled_modules(project, host, context.principal.directory)
    results = await host.call(
        "navigation", enabled=modules if project else set(), request=request, project=project
    )
    entries: list[tuple[int, int, NavEntry]] = []
    path = request.url.path
    for rank, result in enumerate(results):
        if result.error is not None:
            continue  # a failing plugin loses its own entries only
        for item in result.value or []:
            item: NavItem
            if item.permission and not context.principal.can(item.permission, project.id if project else None):
                continue
            active = path == item.url or (item.url.rstrip("/") != (f"/p/{project.code}" if project else "") and path.startswith(item.url))
            entries.append((item.order, rank, NavEntry(item.label, item.url, item.icon, item.group, active, result.plugin)))
    entries.sort(key=lambda e: (e[0], e[1]))
    # One entry is current: the most specific one (/fees/payments/1 is "Receipts", not also "Fees").
    longest = max((len(e[2].url) for e in entries if e[2].active), default=0)
    for _order, _rank, entry in entries:
        entry.active = entry.active and len(entry.url) == longest
    return [e[2] for e in entries]


@dataclass
class TileView:
    plugin: str
    tile: DashboardTile | None
    error: bool = False


async def dashboard_tiles(request: Request) -> list[TileView]:
    from core.web import ctx

    context = ctx(request)
    host: PluginHost = request.app.state.host
    results = await host.call("dashboard_tiles", enabled=context.modules, request=request, project=context.project)
    tiles: list[TileView] = []
    for result in results:
        if result.error is not None:
            tiles.append(TileView(result.plugin, None, error=True))
            continue
        for tile in result.value or []:
            if tile.permission and not context.principal.can(tile.permission, context.project.id):
                continue
            tiles.append(TileView(result.plugin, tile))
    tiles.sort(key=lambda t: t.tile.order if t.tile else 1000)
    return tiles


class ModuleError(ValueError):
    pass


async def set_module(host: PluginHost, project: Project, name: str, enabled: bool) -> list[str]:
    """Enable (with its dependencies) or disable a module for one project.

    Returns the names changed. Disabling a module another enabled module
    depends on raises ModuleError naming the dependants.
    """
    plugin = host.by_name.get(name)
    if plugin is None or not plugin.manifest.per_project:
        raise ModuleError(i18n.gettext("Unknown module: %(name)s", name=name))
    current = set(
        await ProjectModule.filter(project_id=project.id, enabled=True).values_list("module", flat=True)
    )
    changed: list[str] = []
    if enabled:
        todo = [name]
        wanted: list[str] = []
        while todo:
            item = todo.pop()
            if item in wanted:
                continue
            wanted.append(item)
            todo.extend(d for d in host.by_name[item].manifest.depends if host.by_name[d].manifest.per_project)
        for item in wanted:
            if item not in current:
                changed.append(item)
    else:
        blockers = [d for d in host.dependants(name) if d in current]
        if blockers:
            raise ModuleError(
                i18n.gettext(
                    "Cannot disable %(name)s: %(others)s depends on it. Disable that first.",
                    name=name,
                    others=", ".join(blockers),
                )
            )
        if name in current:
            changed.append(name)
    for item in changed:
        await ProjectModule.update_or_create(
            defaults={"enabled": enabled}, project_id=project.id, module=item
        )
    return changed
