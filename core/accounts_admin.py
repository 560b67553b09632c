"""Admin pages for staff accounts, memberships, roles and the access log.

Who may manage whom:
- A head-office admin (`core.manage_users` in a membership for all projects)
  manages every account, every membership and the roles.
- A project admin (`core.manage_users` in some projects only) sees the users
  who belong to those projects and adds or removes memberships there. They
  change an account itself (details, password reset, deactivation) only when
  all of its memberships are in projects they manage, so nobody can take over
  a head-office account or a colleague of another estate. Roles are shared by
  every project, so only head office edits them; project admins read them.
- Nobody changes their own memberships or deactivates themselves through
  these pages (another admin does), so an admin cannot lock everyone out.

Users outside what you manage answer 404, like records of another estate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from tortoise.expressions import Q

from core import accounts, auth, i18n
from core.access import AccessEvent, record
from core.db import transaction
from core.i18n import gettext as _, lazy_gettext as _l
from core.models import Department, Membership, Project, Role, User
from core.scope import unscoped
from core.shell import all_permissions
from core.templating import render
from core.web import ctx, form_data, redirect

MANAGE = "core.manage_users"
HEAD_OFFICE = "all"  # form value of a membership in every project
PAGE_SIZE = 50

ROLE_LABELS = {
    "admin": _l("Administrator"),
    "manager": _l("Manager"),
    "agent": _l("Agent"),
    "staff": _l("Department staff"),
    "cashier": _l("Cashier"),
    "readonly": _l("Read-only"),
}

ACTION_LABELS = {
    "login": _l("Logged in"),
    "login.failed": _l("Failed login"),
    "login.locked": _l("Login locked out"),
    "logout": _l("Logged out"),
    "password.changed": _l("Password changed"),
    "password.reset": _l("Password reset by admin"),
    "user.created": _l("User created"),
    "user.changed": _l("User changed"),
    "user.deactivated": _l("User deactivated"),
    "user.reactivated": _l("User reactivated"),
    "membership.added": _l("Membership added"),
    "membership.removed": _l("Membership removed"),
    "role.created": _l("Role created"),
    "role.changed": _l("Role permissions changed"),
    "module.enabled": _l("Module enabled"),
    "module.disabled": _l("Module disabled"),
}


def role_label(role: Role) -> str:
    """Built-in roles keep their translated name until an admin renames them."""
    if role.builtin and role.code in ROLE_LABELS and role.name == auth.BUILTIN_ROLES.get(role.code):
        return str(ROLE_LABELS[role.code])
    return role.name


# Who manages what -------------------------------------------------------------


@dataclass
class Authority:
    """What the current admin may manage (see the module docstring)."""

    user_id: int
    everywhere: bool
    project_ids: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, request: Request) -> "Authority":
        principal = ctx(request).principal
        return cls(
            user_id=principal.id,
            everywhere=MANAGE in principal.head_office,
            project_ids={pid for pid, perms in principal.per_project.items() if MANAGE in perms},
        )

    def manages_project(self, project_id: int | None) -> bool:
        return self.everywhere or (project_id is not None and project_id in self.project_ids)

    def users(self):
        if self.everywhere:
            return User.all()
        return User.filter(memberships__project_id__in=sorted(self.project_ids)).distinct()

    async def sees(self, user: User) -> bool:
        if self.everywhere:
            return True
        return await Membership.filter(user_id=user.id, project_id__in=sorted(self.project_ids)).exists()

    async def manages_account(self, user: User) -> bool:
        if self.everywhere:
            return True
        project_ids = await Membership.filter(user_id=user.id).values_list("project_id", flat=True)
        return bool(project_ids) and all(self.manages_project(pid) for pid in project_ids)

    async def projects(self) -> list[Project]:
        query = Project.filter(is_active=True)
        if not self.everywhere:
            query = query.filter(id__in=sorted(self.project_ids))
        return await query.order_by("code")


async def _visible_user(request: Request) -> tuple[Authority, User]:
    """The user of the URL, or 404 when it is outside what the admin manages."""
    authority = Authority.of(request)
    user: User = request.state.record
    with unscoped():
        if not await authority.sees(user):
            raise HTTPException(404)
    return authority, user


async def _account_user(request: Request) -> tuple[Authority, User]:
    """Like `_visible_user`, for changes to the account itself (403 if only partly managed)."""
    authority, user = await _visible_user(request)
    with unscoped():
        if not await authority.manages_account(user):
            raise HTTPException(403)
    return authority, user


def _require_head_office(request: Request) -> None:
    if not Authority.of(request).everywhere:
        raise HTTPException(403)


# Users ------------------------------------------------------------------------


async def users_list(request: Request) -> Response:
    authority = Authority.of(request)
    q = request.query_params.get("q", "").strip()
    status = request.query_params.get("status", "active")
    try:
        page = max(int(request.query_params.get("page", "1")), 1)
    except ValueError:
        page = 1
    with unscoped():
        query = authority.users()
        if q:
            query = query.filter(Q(username__icontains=q) | Q(display_name__icontains=q))
        if status in ("active", "inactive"):
            query = query.filter(is_active=status == "active")
        total = await query.count()
        users = await query.order_by("username").offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
        memberships = await Membership.filter(user_id__in=[u.id for u in users]).select_related(
            "project", "role", "department"
        )
    by_user: dict[int, list[Membership]] = {}
    for membership in memberships:
        by_user.setdefault(membership.user_id, []).append(membership)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)

    def page_url(number: int) -> str:
        return "/admin/users?" + urlencode({"q": q, "status": status, "page": number})

    return await render(
        request,
        "core/accounts/users.html",
        {
            "rows": [(u, by_user.get(u.id, [])) for u in users],
            "q": q,
            "status": status,
            "total": total,
            "page": page,
            "pages": pages,
            "page_url": page_url,
            "role_label": role_label,
        },
        block="results",
    )


async def _membership_choices(authority: Authority) -> dict:
    with unscoped():
        projects = await authority.projects()
        roles = await Role.all().order_by("id")
        departments = await Department.filter(project_id__in=[p.id for p in projects]).select_related("project")
    project_options = ([(HEAD_OFFICE, _("All projects — head office"))] if authority.everywhere else []) + [
        (str(p.id), f"{p.name} ({p.code})") for p in projects
    ]
    return {
        "project_options": project_options,
        "role_options": [(str(r.id), role_label(r)) for r in roles],
        "department_options": [
            (str(d.id), f"{d.project.name} · {d.name}") for d in sorted(departments, key=lambda d: (d.project.code, d.name))
        ],
    }


async def _clean_membership(authority: Authority, data: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """Project (None: head office), role and department of a membership form, or errors."""
    errors: dict[str, str] = {}
    values: dict = {"project_id": None, "role": None, "department_id": None}
    raw_project = data.get("project", "")
    with unscoped():
        if raw_project == HEAD_OFFICE and authority.everywhere:
            pass
        elif raw_project.isdigit() and authority.manages_project(int(raw_project)) and await Project.filter(
            id=int(raw_project), is_active=True
        ).exists():
            values["project_id"] = int(raw_project)
        else:
            errors["project"] = _("Choose a project from the list.")
        raw_role = data.get("role", "")
        role = await Role.get_or_none(id=int(raw_role)) if raw_role.isdigit() else None
        if role is None:
            errors["role"] = _("Choose a role from the list.")
        values["role"] = role
        raw_department = data.get("department", "")
        if raw_department:
            department = await Department.get_or_none(id=int(raw_department)) if raw_department.isdigit() else None
            if department is None or department.project_id != values["project_id"]:
                errors["department"] = _("Choose a department of the chosen project, or none.")
            else:
                values["department_id"] = department.id
    return values, errors


def _membership_text(project: Project | None, role: Role) -> str:
    return f"{project.code if project else _('All projects — head office')} / {role.code}"


async def user_new(request: Request) -> Response:
    authority = Authority.of(request)
    return await render(
        request,
        "core/accounts/user_new.html",
        {"values": {"locale": i18n.DEFAULT_LOCALE}, "errors": {}, **await _membership_choices(authority), "locales": i18n.LOCALE_NAMES},
    )


async def user_create(request: Request) -> Response:
    authority = Authority.of(request)
    data = await form_data(request)
    values, errors = await accounts.clean_profile(data)
    membership, membership_errors = await _clean_membership(authority, data)
    errors.update(membership_errors)
    password_errors = accounts.new_password_errors(
        data.get("new_password", ""), data.get("repeat_password", ""), values.get("username", "")
    )
    errors.update(password_errors)
    if not errors:
        try:
            user = await _create_user(request, values, membership, data["new_password"])
        except accounts.AccountError as exc:  # the username was taken a moment ago
            errors["username"] = str(exc)
    if errors:
        return await render(
            request,
            "core/accounts/user_new.html",
            {"values": data, "errors": errors, **await _membership_choices(authority), "locales": i18n.LOCALE_NAMES},
            status_code=422,
        )
    return redirect(request, f"/admin/users/{user.id}", _("User %(name)s created.", name=user.username))


async def _create_user(request: Request, values: dict, membership: dict, password: str) -> User:
    with unscoped():
        async with transaction():
            project = await Project.get(id=membership["project_id"]) if membership["project_id"] else None
            department = await Department.get(id=membership["department_id"]) if membership["department_id"] else None
            user = await accounts.create_user(
                values["username"],
                password,
                display_name=values["display_name"],
                role=membership["role"].code,
                project=project,
                email=values["email"],
                phone=values["phone"],
                extension=values["extension"],
                department=department,
                locale=values["locale"],
                must_change_password=True,
            )
            await record(request, "user.created", user.username, project_id=membership["project_id"])
            await record(
                request, "membership.added", user.username, project_id=membership["project_id"],
                membership=_membership_text(project, membership["role"]),
            )
    return user


async def _user_page(request: Request, authority: Authority, user: User, status_code: int = 200, **extra) -> Response:
    with unscoped():
        memberships = await Membership.filter(user_id=user.id).select_related("project", "role", "department")
        can_manage_account = await authority.manages_account(user)
    rows = [
        {
            "membership": m,
            "removable": authority.manages_project(m.project_id) and user.id != authority.user_id,
        }
        for m in sorted(memberships, key=lambda m: (m.project.code if m.project else "", m.role.id))
    ]
    values = extra.pop("values", None) or {
        "display_name": user.display_name,
        "email": user.email,
        "phone": user.phone,
        "extension": user.extension,
        "locale": user.locale,
    }
    return await render(
        request,
        "core/accounts/user_detail.html",
        {
            "account": user,
            "values": values,
            "memberships": rows,
            "can_manage_account": can_manage_account,
            "is_self": user.id == authority.user_id,
            "role_label": role_label,
            "locales": i18n.LOCALE_NAMES,
            "profile_errors": {},
            "membership_errors": {},
            "password_errors": {},
            "membership_values": {},
            **await _membership_choices(authority),
            **extra,
        },
        status_code=status_code,
    )


async def user_detail(request: Request) -> Response:
    authority, user = await _visible_user(request)
    return await _user_page(request, authority, user)


async def user_update(request: Request) -> Response:
    authority, user = await _account_user(request)
    data = await form_data(request)
    values, errors = await accounts.clean_profile(data, user)
    if errors:
        return await _user_page(request, authority, user, 422, values=data, profile_errors=errors)
    changes = {key: [getattr(user, key), value] for key, value in values.items() if getattr(user, key) != value}
    if changes:
        with unscoped():
            for key, (_old, new) in changes.items():
                setattr(user, key, new)
            await user.save(update_fields=list(changes))
            await record(request, "user.changed", user.username, changes=changes)
    return redirect(request, f"/admin/users/{user.id}", _("Saved.") if changes else _("Nothing changed."))


async def user_set_active(request: Request) -> Response:
    authority, user = await _account_user(request)
    data = await form_data(request)
    active = data.get("active") == "1"
    if user.id == authority.user_id:
        return redirect(request, f"/admin/users/{user.id}", _("You cannot deactivate your own account."), "error")
    if active != user.is_active:
        await accounts.set_active(user, active)
        await record(request, "user.reactivated" if active else "user.deactivated", user.username)
    message = _("%(name)s can log in again.", name=user.username) if active else _(
        "%(name)s is deactivated and was logged out.", name=user.username
    )
    return redirect(request, f"/admin/users/{user.id}", message)


async def user_reset_password(request: Request) -> Response:
    authority, user = await _account_user(request)
    data = await form_data(request)
    if user.id == authority.user_id:
        errors = {"new_password": _("Change your own password on the Change password page.")}
    else:
        errors = accounts.new_password_errors(data.get("new_password", ""), data.get("repeat_password", ""), user.username)
    if errors:
        return await _user_page(request, authority, user, 422, password_errors=errors)
    await accounts.set_password(user, data["new_password"], must_change=True)
    with unscoped():
        await auth.end_sessions(user.id)
    await record(request, "password.reset", user.username)
    return redirect(
        request, f"/admin/users/{user.id}",
        _("Password reset. %(name)s must choose a new one at the next login.", name=user.username),
    )


async def membership_add(request: Request) -> Response:
    authority, user = await _visible_user(request)
    data = await form_data(request)
    values, errors = await _clean_membership(authority, data)
    if user.id == authority.user_id:
        errors["project"] = _("Another administrator must change your own memberships.")
    with unscoped():
        if not errors and await Membership.filter(
            user_id=user.id, project_id=values["project_id"], role_id=values["role"].id
        ).exists():
            errors["role"] = _("The user already has this role there.")
        if errors:
            return await _user_page(
                request, authority, user, 422, membership_errors=errors, membership_values=data
            )
        membership = await Membership.create(
            user_id=user.id, project_id=values["project_id"], role=values["role"], department_id=values["department_id"]
        )
        project = await Project.get(id=values["project_id"]) if values["project_id"] else None
    await record(
        request, "membership.added", user.username, project_id=membership.project_id,
        membership=_membership_text(project, values["role"]),
    )
    return redirect(request, f"/admin/users/{user.id}", _("Membership added."))


async def membership_remove(request: Request) -> Response:
    authority, user = await _visible_user(request)
    with unscoped():
        membership = await Membership.get_or_none(
            id=request.path_params["membership"], user_id=user.id
        ).select_related("project", "role")
    if membership is None or not authority.manages_project(membership.project_id):
        raise HTTPException(404)
    if user.id == authority.user_id:
        return redirect(request, f"/admin/users/{user.id}", _("Another administrator must change your own memberships."), "error")
    with unscoped():
        await membership.delete()
    await record(
        request, "membership.removed", user.username, project_id=membership.project_id,
        membership=_membership_text(membership.project, membership.role),
    )
    return redirect(request, f"/admin/users/{user.id}", _("Membership removed."))


# Roles ------------------------------------------------------------------------

ROLE_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


def _permission_groups(request: Request) -> list[dict]:
    """Declared permissions grouped by the plugin that declares them, core first."""
    host = request.app.state.host
    groups: dict[str, dict] = {}
    for permission in all_permissions(host):
        plugin = permission.code.split(".", 1)[0]
        if plugin not in groups:
            manifest = host.by_name[plugin].manifest if plugin in host.by_name else None
            groups[plugin] = {"plugin": plugin, "label": manifest.label if manifest else plugin, "permissions": []}
        groups[plugin]["permissions"].append(permission)
    order = [p.name for p in host.plugins]
    return sorted(groups.values(), key=lambda g: (g["plugin"] != "core", order.index(g["plugin"]) if g["plugin"] in order else 999))


async def roles_list(request: Request) -> Response:
    with unscoped():
        roles = await Role.all().order_by("id")
        counts: dict[int, int] = {}
        for role_id in await Membership.all().values_list("role_id", flat=True):
            counts[role_id] = counts.get(role_id, 0) + 1
    declared = {p.code for p in all_permissions(request.app.state.host)}
    rows = [
        {"role": r, "label": role_label(r), "granted": len(set(r.permissions or []) & declared), "members": counts.get(r.id, 0)}
        for r in roles
    ]
    return await render(
        request,
        "core/accounts/roles.html",
        {"rows": rows, "declared": len(declared), "can_edit": Authority.of(request).everywhere},
    )


async def _role_page(request: Request, role: Role | None, status_code: int = 200, **extra) -> Response:
    values = extra.pop("values", None) or {
        "code": role.code if role else "",
        "name": role.name if role else "",
        "permissions": set(role.permissions or []) if role else set(),
    }
    return await render(
        request,
        "core/accounts/role_form.html",
        {
            "role": role,
            "label": role_label(role) if role else "",
            "values": values,
            "groups": _permission_groups(request),
            "can_edit": Authority.of(request).everywhere,
            "errors": {},
            **extra,
        },
        status_code=status_code,
    )


def _chosen_permissions(request: Request, form) -> set[str]:
    declared = {p.code for p in all_permissions(request.app.state.host)}
    return {code for code in form.getlist("permissions") if code in declared}


async def role_new(request: Request) -> Response:
    _require_head_office(request)
    return await _role_page(request, None)


async def role_create(request: Request) -> Response:
    _require_head_office(request)
    form = await request.form()
    code = (form.get("code") or "").strip().lower()
    name = (form.get("name") or "").strip()
    permissions = _chosen_permissions(request, form)
    errors: dict[str, str] = {}
    if not ROLE_CODE_RE.match(code):
        errors["code"] = _("2 to 32 lowercase letters, digits or underscores, starting with a letter.")
    else:
        with unscoped():
            if await Role.filter(code=code).exists():
                errors["code"] = _("A role with this code exists.")
    if not name or len(name) > 64:
        errors["name"] = _("Enter a name of at most %(n)s characters.", n=64)
    if errors:
        return await _role_page(
            request, None, 422, values={"code": code, "name": name, "permissions": permissions}, errors=errors
        )
    with unscoped():
        role = await Role.create(code=code, name=name, permissions=sorted(permissions), builtin=False)
    await record(request, "role.created", code, granted=sorted(permissions))
    return redirect(request, f"/admin/roles/{role.id}", _("Role %(name)s created.", name=name))


async def role_detail(request: Request) -> Response:
    return await _role_page(request, request.state.record)


async def role_update(request: Request) -> Response:
    _require_head_office(request)
    role: Role = request.state.record
    form = await request.form()
    name = (form.get("name") or "").strip()
    declared = {p.code for p in all_permissions(request.app.state.host)}
    before = set(role.permissions or [])
    # Grants of permissions no installed plugin declares now are kept untouched.
    after = (before - declared) | _chosen_permissions(request, form)
    if not name or len(name) > 64:
        return await _role_page(
            request, role, 422, values={"code": role.code, "name": name, "permissions": after},
            errors={"name": _("Enter a name of at most %(n)s characters.", n=64)},
        )
    added, removed = sorted(after - before), sorted(before - after)
    renamed = name != role.name
    if added or removed or renamed:
        with unscoped():
            role.name = name
            role.permissions = sorted(after)
            await role.save(update_fields=["name", "permissions"])
        await record(request, "role.changed", role.code, granted=added, revoked=removed, **({"name": name} if renamed else {}))
    message = _("Role saved. Members have the new permissions from their next page.") if (added or removed or renamed) else _("Nothing changed.")
    return redirect(request, f"/admin/roles/{role.id}", message)


# Access log -------------------------------------------------------------------


REASON_LABELS = {
    "unknown_account": _l("unknown account"),
    "wrong_password": _l("wrong password"),
    "locked": _l("locked out"),
    "deactivated": _l("deactivated account"),
}
DETAIL_LABELS = {
    "reason": _l("Reason"),
    "changes": _l("Changed"),
    "membership": _l("Membership"),
    "granted": _l("Granted"),
    "revoked": _l("Revoked"),
    "name": _l("New name"),
}


def describe(event: AccessEvent) -> list[tuple[str, str]]:
    """The details column of the access log: (label, text) pairs."""
    lines = []
    for key, value in (event.detail or {}).items():
        if key == "reason":
            text = str(REASON_LABELS.get(value, value))
        elif key == "changes" and isinstance(value, dict):
            text = "; ".join(f"{name}: {old or '—'} → {new or '—'}" for name, (old, new) in value.items())
        elif isinstance(value, list):
            text = ", ".join(map(str, value)) or "—"
        else:
            text = str(value)
        lines.append((str(DETAIL_LABELS.get(key, key)), text))
    return lines


async def access_log(request: Request) -> Response:
    principal = ctx(request).principal
    action = request.query_params.get("action", "")
    username = request.query_params.get("user", "").strip()
    before = request.query_params.get("before", "")
    with unscoped():
        query = AccessEvent.all()
        if "core.view_access_log" not in principal.head_office:
            # An estate's admin sees what happened in their estates and to their estates' staff.
            project_ids = sorted(pid for pid, perms in principal.per_project.items() if "core.view_access_log" in perms)
            member_ids = await Membership.filter(project_id__in=project_ids).values_list("user_id", flat=True)
            query = query.filter(Q(project_id__in=project_ids) | Q(user_id__in=sorted(set(member_ids))))
        if action in ACTION_LABELS:
            query = query.filter(action=action)
        if username:
            # Events by the user, and events about the user (resets, memberships, ...).
            query = query.filter(Q(username__icontains=username) | Q(target__iexact=username))
        if before.isdigit():
            query = query.filter(id__lt=int(before))
        events = await query.order_by("-id").limit(PAGE_SIZE + 1).select_related("project")
    more = len(events) > PAGE_SIZE
    events = events[:PAGE_SIZE]
    older_url = (
        "/admin/access-log?" + urlencode({"action": action, "user": username, "before": events[-1].id})
        if more else None
    )
    return await render(
        request,
        "core/accounts/access_log.html",
        {
            "events": events,
            "action": action,
            "username": username,
            "actions": ACTION_LABELS,
            "older_url": older_url,
            "describe": describe,
        },
        block="results",
    )
