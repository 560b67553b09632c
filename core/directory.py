"""Estates, their modules and every user's roles, kept in each app process between requests.

Every page needs them, an administrator changes them a few times a day. The
database keeps an *access stamp* (`core_access_stamp`) that triggers on
`core_project`, `core_project_module`, `core_role` and `core_membership` move
in the same transaction as any change to those tables (migration core 0008),
whichever process or tool wrote it. Each request reads the stamp together with
its session (one statement); when it has moved, this process forgets all it
kept. So a revoked membership or a switched-off module holds from the next
request on, in every process, as if nothing were cached.

Callers get copies: a view may change what it was given without touching the
next request's view of it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from core.models import Membership, Project, ProjectModule
from core.scope import unscoped

# A process serving more users than this starts over rather than grow without bound.
MAX_USERS = 10_000


@dataclass(frozen=True)
class Grants:
    """What a user's memberships allow (see `core.auth.Principal`)."""

    head_office: frozenset[str]
    per_project: dict[int, frozenset[str]]
    roles: dict[int | None, tuple[str, ...]]


@dataclass
class Directory:
    stamp: int | None = None
    _projects: list[Project] | None = None  # active estates, by code
    _modules: dict[int, frozenset[str]] = field(default_factory=dict)
    _grants: dict[int, Grants] = field(default_factory=dict)

    def check(self, stamp: int | None) -> bool:
        """Use what is kept if `stamp` (read with the session) is the one it was kept under.

        Returns False, and keeps nothing, when there is no stamp to compare with
        (no session, or a database older than migration core 0008).
        """
        if stamp is None or stamp != self.stamp:
            self._projects, self._modules, self._grants = None, {}, {}
            self.stamp = stamp
        return stamp is not None

    async def _active(self) -> list[Project]:
        if self._projects is not None:
            return self._projects
        with unscoped():
            projects = await Project.filter(is_active=True).order_by("code")
        if self.stamp is not None:
            self._projects = projects
        return projects

    async def active_projects(self, only=None) -> list[Project]:
        """Every active estate, or those whose id is in `only`, ordered by code (copies)."""
        return [_copy(p) for p in await self._active() if only is None or p.id in only]

    async def active_project_ids(self) -> list[int]:
        return [p.id for p in await self._active()]

    async def project(self, code: str) -> Project | None:
        """The active estate with this code (a copy), or None."""
        if self.stamp is None:
            with unscoped():
                return await Project.get_or_none(code=code, is_active=True)
        found = next((p for p in await self._active() if p.code == code), None)
        return _copy(found) if found is not None else None

    async def modules(self, project_id: int) -> set[str]:
        """The per-estate modules switched on for the estate (modules on everywhere are the host's to add)."""
        kept = self._modules.get(project_id)
        if kept is None:
            kept = frozenset(
                await ProjectModule.filter(project_id=project_id, enabled=True).values_list("module", flat=True)
            )
            if self.stamp is not None:
                self._modules[project_id] = kept
        return set(kept)

    async def grants(self, user_id: int) -> Grants:
        kept = self._grants.get(user_id)
        if kept is None:
            head_office: set[str] = set()
            per_project: dict[int, set[str]] = {}
            roles: dict[int | None, list[str]] = {}
            for membership in await Membership.filter(user_id=user_id).select_related("role"):
                perms = set(membership.role.permissions or [])
                roles.setdefault(membership.project_id, []).append(membership.role.code)
                if membership.project_id is None:
                    head_office |= perms
                else:
                    per_project.setdefault(membership.project_id, set()).update(perms)
            kept = Grants(
                frozenset(head_office),
                {pid: frozenset(p) for pid, p in per_project.items()},
                {pid: tuple(codes) for pid, codes in roles.items()},
            )
            if self.stamp is not None:
                if len(self._grants) >= MAX_USERS:
                    self._grants.clear()
                self._grants[user_id] = kept
        return kept


def _copy(project: Project) -> Project:
    """A copy that shares nothing mutable: its own dicts and lists (JSON fields), the rest shared as is.

    `copy.deepcopy` of a model instance costs ~45 microseconds: every page copied all 200 estates of the
    benchmark's group (9 ms, a third of the work-order list's CPU), also to pick one estate manager's one.
    """
    clone = copy.copy(project)
    for name, value in vars(project).items():
        if isinstance(value, (dict, list, set)):
            setattr(clone, name, copy.deepcopy(value))
    return clone


STAMP_SQL = "(SELECT value FROM core_access_stamp WHERE id = 1)"
