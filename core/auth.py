"""Staff accounts: passwords, server-side sessions and who may do what where.

Sessions live in the database (`core_session`), so a session id can be
renewed at login, dropped at logout and expired on idle or absolute timeout,
whichever app process served it. The cookie holds a random token; the table
holds only its SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, RawSQL
from tortoise.models import Model

from core import clock
from core.db import long_write_in_progress
from core.directory import STAMP_SQL, Directory
from core.models import Membership, Project, Role, User

SESSION_COOKIE = "courtyard_session"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """A real hash to verify against when the account does not exist, so the
    response time does not tell whether a username is known. Made when first
    needed: hashing at import would lengthen every process's start-up."""
    return _hasher.hash(secrets.token_urlsafe(16))


def burn_time_verifying(password: str) -> None:
    verify_password(_dummy_hash(), password)


def now() -> datetime:
    return clock.now()  # core's clock, so the test kit's frozen_time governs sessions and lockouts


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Session(Model):
    id = fields.IntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    user = fields.ForeignKeyField("core.User", related_name="sessions", on_delete=fields.CASCADE)
    created_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()
    ip = fields.CharField(max_length=64, default="")
    data = fields.JSONField(default=dict)

    class Meta:
        table = "core_session"


async def open_session(user: User, ip: str = "") -> str:
    """Create a fresh session (a new id every login) and return its cookie token."""
    token = secrets.token_urlsafe(32)
    at = now()
    await Session.create(token_hash=_digest(token), user=user, created_at=at, last_seen_at=at, ip=ip)
    return token


async def close_session(token: str | None) -> None:
    if token:
        await Session.filter(token_hash=_digest(token)).delete()


async def load_session(token: str | None, idle: timedelta, absolute: timedelta) -> Session | None:
    """The live session for a cookie token, or None (expired sessions are deleted)."""
    if not token:
        return None
    # The access stamp comes along: it tells whether this process's directory is still current.
    session = await (
        Session.filter(token_hash=_digest(token)).select_related("user")
        .annotate(access_stamp=RawSQL(STAMP_SQL)).first()
    )
    if session is None:
        return None
    at = now()
    if at - session.last_seen_at > idle or at - session.created_at > absolute or not session.user.is_active:
        await session.delete()
        return None
    # Touch at most once a minute: keeps idle timeout exact enough without a write per request.
    # Not while an import holds SQLite's write lock: the touch would make this request, and
    # every one behind it, wait for the import's commit; a skipped touch only expires sooner.
    if at - session.last_seen_at > timedelta(minutes=1) and not long_write_in_progress():
        session.last_seen_at = at
        await Session.filter(id=session.id).update(last_seen_at=at)
    return session


@dataclass
class Principal:
    """The logged-in user with the permissions of each membership resolved."""

    user: User
    head_office: set[str] = field(default_factory=set)  # permissions in every project
    per_project: dict[int, set[str]] = field(default_factory=dict)
    roles: dict[int | None, list[str]] = field(default_factory=dict)  # project id (None: all) -> role codes
    directory: Directory = field(default_factory=Directory, repr=False)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def display_name(self) -> str:
        return self.user.display_name or self.user.username

    @property
    def is_head_office(self) -> bool:
        return None in self.roles

    def can(self, permission: str, project_id: int | None = None) -> bool:
        """Has `permission` in the project, or (project None) at head office or in any project."""
        if permission in self.head_office:
            return True
        if project_id is None:
            return any(permission in perms for perms in self.per_project.values())
        return permission in self.per_project.get(project_id, set())

    def can_anywhere(self, permission: str) -> bool:
        return permission in self.head_office or any(permission in p for p in self.per_project.values())

    def member_of(self, project_id: int) -> bool:
        return self.is_head_office or project_id in self.per_project

    async def project_ids(self) -> list[int]:
        if self.is_head_office:
            # Head office belongs to every active estate.
            return await self.directory.active_project_ids()
        return sorted(self.per_project)


async def load_principal(user: User, directory: Directory | None = None) -> Principal:
    """The user's permissions, from `directory` when the request has one (else straight from the database)."""
    directory = directory or Directory()
    grants = await directory.grants(user.id)
    principal = Principal(
        user,
        head_office=set(grants.head_office),
        per_project={pid: set(perms) for pid, perms in grants.per_project.items()},
        roles={pid: list(codes) for pid, codes in grants.roles.items()},
    )
    principal.directory = directory
    return principal


BUILTIN_ROLES = {
    "admin": "Administrator",
    "manager": "Manager",
    "agent": "Agent",
    "staff": "Department staff",
    "cashier": "Cashier",
    "readonly": "Read-only",
}


async def sync_roles(permissions: list) -> None:
    """Create the built-in roles and grant newly declared permissions by default.

    A permission is offered to a role's defaults once; if an admin later
    removes it, it stays removed.
    """
    for code, name in BUILTIN_ROLES.items():
        role, _ = await Role.get_or_create(code=code, defaults={"name": name, "builtin": True})
        granted = set(role.permissions or [])
        seen = set(role.seen_defaults or [])
        for permission in permissions:
            if code in permission.roles and permission.code not in seen:
                granted.add(permission.code)
                seen.add(permission.code)
        if granted != set(role.permissions or []) or seen != set(role.seen_defaults or []):
            role.permissions = sorted(granted)
            role.seen_defaults = sorted(seen)
            await role.save()


async def end_sessions(user_id: int, keep_token: str | None = None) -> int:
    """End every session of a user (deactivation, password reset), except the one given."""
    query = Session.filter(user_id=user_id)
    if keep_token:
        query = query.exclude(token_hash=_digest(keep_token))
    return await query.delete()


# Login throttling -------------------------------------------------------------


class LoginThrottle(Model):
    """Failed logins per account ("user:<name>") and per client address ("ip:<addr>").

    An attempt is counted before its password is checked and given back when it succeeds.
    Kept in the database so every app process counts the same failures.
    """

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=128, unique=True)
    failures = fields.IntField(default=0)
    last_failure_at = fields.DatetimeField()
    locked_until = fields.DatetimeField(null=True)

    class Meta:
        table = "core_login_throttle"


def throttle_keys(username: str, ip: str) -> dict[str, str]:
    keys = {"user": "user:" + username.strip().lower()[:120]}
    if ip:
        keys["ip"] = "ip:" + ip[:120]
    return keys


async def locked_keys(keys: dict[str, str]) -> list[str]:
    """The kinds ("user", "ip") currently locked out."""
    rows = await LoginThrottle.filter(key__in=list(keys.values()), locked_until__gt=now())
    locked = {row.key for row in rows}
    return [kind for kind, key in keys.items() if key in locked]


async def claim_attempt(keys: dict[str, str], limits: dict[str, int], window: timedelta) -> list[str]:
    """Count a login attempt *before* its password is checked; return the kinds ("user",
    "ip") already over their limit: such an attempt is refused without checking.

    Counting first is what holds under a concurrent brute force: of forty guesses sent at
    once, only the first `limit` get a password check (checking first and counting after
    let all forty through). Failures older than the lockout window are forgotten, so a
    few typos a day never add up to a lockout.
    """
    at = now()
    over = []
    for kind, key in keys.items():
        row = await LoginThrottle.get_or_none(key=key)
        if row is None:
            try:
                row = await LoginThrottle.create(key=key, failures=1, last_failure_at=at)
            except IntegrityError:  # another request created it meanwhile
                row = await LoginThrottle.get(key=key)
                await LoginThrottle.filter(id=row.id).update(failures=F("failures") + 1, last_failure_at=at)
        elif (row.locked_until is not None and row.locked_until <= at) or (
            row.locked_until is None and at - row.last_failure_at > window
        ):
            # Counting starts again after a lockout or a quiet window. Only one of several
            # simultaneous requests restarts the count; the others add to it.
            unchanged = {"locked_until__isnull": True} if row.locked_until is None else {"locked_until": row.locked_until}
            restarted = await LoginThrottle.filter(id=row.id, last_failure_at=row.last_failure_at, **unchanged).update(
                failures=1, last_failure_at=at, locked_until=None
            )
            if not restarted:
                await LoginThrottle.filter(id=row.id).update(failures=F("failures") + 1, last_failure_at=at)
        else:
            await LoginThrottle.filter(id=row.id).update(failures=F("failures") + 1, last_failure_at=at)
        # None: a successful login of the account cleared its count meanwhile (counting restarts).
        counted = await LoginThrottle.get_or_none(id=row.id)
        if counted is not None and counted.failures > limits[kind]:
            over.append(kind)
    return over


async def lock_when_reached(keys: dict[str, str], limits: dict[str, int], window: timedelta) -> list[str]:
    """After a failed attempt: lock the kinds that reached their limit for the window; return
    the kinds newly locked (for the access log). Counting starts again after the lockout."""
    at = now()
    newly_locked = []
    for kind, key in keys.items():
        locked = await LoginThrottle.filter(key=key, failures__gte=limits[kind], locked_until__isnull=True).update(
            locked_until=at + window
        )
        if locked:
            newly_locked.append(kind)
    return newly_locked


async def forgive_attempt(keys: dict[str, str]) -> None:
    """A successful login gives back the attempt `claim_attempt` counted for the address."""
    if "ip" in keys:
        await LoginThrottle.filter(key=keys["ip"], failures__gt=0).update(failures=F("failures") - 1)


async def clear_failures(username: str) -> None:
    """A successful login forgets the account's failures (not the address's: one good
    password must not reset the count of an address guessing other accounts)."""
    await LoginThrottle.filter(key=throttle_keys(username, "")["user"]).delete()
