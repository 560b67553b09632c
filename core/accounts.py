"""Creating and changing staff accounts (used by the CLI, the admin pages and the demo)."""

from __future__ import annotations

import re

from core import auth
from core.models import Membership, Project, Role, User
from core.scope import unscoped


class AccountError(ValueError):
    pass


MIN_PASSWORD_LENGTH = 8
# Passwords that appear first in every guessing list, in China in particular.
COMMON_PASSWORDS = {
    "password", "password1", "passw0rd", "12345678", "123456789", "1234567890", "87654321", "11111111",
    "88888888", "66666666", "00000000", "abcd1234", "abc12345", "a1234567", "qwerty123", "qwertyuiop",
    "1qaz2wsx", "woaini1314", "iloveyou", "admin123", "admin1234", "courtyard", "welcome1",
}


def check_password_strength(password: str, username: str = "") -> None:
    """Raise AccountError with a message for the user when the password is too weak."""
    from core.i18n import gettext as _

    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(_("The password must have at least %(n)s characters.", n=MIN_PASSWORD_LENGTH))
    if not re.search(r"[^\W\d_]", password) or not re.search(r"[^a-zA-Z]", password):
        raise AccountError(_("Use letters and at least one digit or symbol."))
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(lowered)) < 4:
        raise AccountError(_("This password is too easy to guess."))
    if username and username.lower() in lowered:
        raise AccountError(_("The password must not contain the username."))


async def create_user(
    username: str,
    password: str,
    *,
    display_name: str = "",
    role: str = "agent",
    project: Project | None = None,
    email: str = "",
    phone: str = "",
    extension: str = "",
    department=None,
    locale: str = "zh_CN",
    must_change_password: bool = False,
) -> User:
    with unscoped():
        check_password_strength(password, username)
        if await User.filter(username=username).exists():
            from core.i18n import gettext as _

            raise AccountError(_("The username %(name)s is taken.", name=username))
        user = await User.create(
            username=username,
            display_name=display_name or username,
            email=email,
            phone=phone,
            extension=extension,
            password_hash=auth.hash_password(password),
            locale=locale,
            password_changed_at=auth.now(),
            must_change_password=must_change_password,
        )
        await add_membership(user, role, project, department)
        return user


async def add_membership(user: User, role: str, project: Project | None, department=None) -> Membership:
    with unscoped():
        role_obj = await Role.get(code=role)
        membership, _ = await Membership.get_or_create(
            user=user, project=project, role=role_obj, defaults={"department": department}
        )
        return membership


USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


async def clean_profile(data: dict[str, str], user: User | None = None) -> tuple[dict, dict[str, str]]:
    """Validate the editable fields of an account: (values, errors by field).

    `user` is the account being edited (None when creating one); the username
    is only read when creating.
    """
    from core import i18n
    from core.i18n import gettext as _
    from core.people import try_normalize_phone

    errors: dict[str, str] = {}
    values = {
        "display_name": data.get("display_name", "").strip(),
        "email": data.get("email", "").strip(),
        "phone": data.get("phone", "").strip(),
        "extension": data.get("extension", "").strip(),
        "locale": data.get("locale", "") or i18n.DEFAULT_LOCALE,
    }
    with unscoped():
        if user is None:
            username = data.get("username", "").strip()
            if not USERNAME_RE.match(username):
                errors["username"] = _("2 to 64 letters, digits, dots, dashes or underscores.")
            elif await User.filter(username__iexact=username).exists():
                errors["username"] = _("The username %(name)s is taken.", name=username)
            values["username"] = username
        if not values["display_name"]:
            errors["display_name"] = _("Enter the name shown to colleagues.")
        elif len(values["display_name"]) > 64:
            errors["display_name"] = _("At most %(n)s characters.", n=64)
        if values["email"] and not EMAIL_RE.match(values["email"]):
            errors["email"] = _("Enter an email address like name@example.com.")
        if values["phone"]:
            number = try_normalize_phone(values["phone"])
            if number is None:
                errors["phone"] = _("Enter a phone number, e.g. 138 0013 8000.")
            else:
                values["phone"] = number
        if values["extension"]:
            if not values["extension"].isdigit() or len(values["extension"]) > 16:
                errors["extension"] = _("An extension is up to 16 digits.")
            else:
                # Calls are matched to agents by extension: two agents must not share one.
                taken = User.filter(extension=values["extension"], is_active=True)
                if user is not None:
                    taken = taken.exclude(id=user.id)
                if await taken.exists():
                    errors["extension"] = _("Another active user has this extension.")
        if values["locale"] not in i18n.LOCALES:
            errors["locale"] = _("Choose a language from the list.")
    return values, errors


def new_password_errors(password: str, repeat: str, username: str) -> dict[str, str]:
    from core.i18n import gettext as _

    errors: dict[str, str] = {}
    try:
        check_password_strength(password, username)
    except AccountError as exc:
        errors["new_password"] = str(exc)
    if not errors and password != repeat:
        errors["repeat_password"] = _("The two passwords differ.")
    return errors


async def set_password(user: User, password: str, *, must_change: bool = False) -> None:
    """Store a new password; `must_change` makes the user pick their own at the next page."""
    with unscoped():
        user.password_hash = auth.hash_password(password)
        user.password_changed_at = auth.now()
        user.must_change_password = must_change
        await user.save(update_fields=["password_hash", "password_changed_at", "must_change_password"])


async def set_active(user: User, active: bool) -> None:
    """Deactivate (sessions end at once; the account stays as author of its history) or reactivate."""
    with unscoped():
        user.is_active = active
        await user.save(update_fields=["is_active"])
        if not active:
            await auth.end_sessions(user.id)


async def users_with_permission(project_id: int, permission: str, *, members_first: bool = False) -> list[User]:
    """Active staff holding `permission` in the estate (its own members and head office), by id.

    For jobs and notifications that address "whoever may do X here": the
    managers to alert, the people to remind. `members_first`: only those who
    are members of the estate itself, unless none are (then head office's);
    one statement either way.
    """
    from tortoise.expressions import Q

    with unscoped():
        memberships = await Membership.filter(Q(project_id=project_id) | Q(project_id__isnull=True)).select_related(
            "role", "user"
        )
    found: dict[int, User] = {}
    members: set[int] = set()
    for membership in memberships:
        if membership.project_id == project_id:
            members.add(membership.user_id)
        if membership.user.is_active and permission in (membership.role.permissions or []):
            found[membership.user.id] = membership.user
    users = sorted(found.values(), key=lambda u: u.id)
    if members_first:
        return [user for user in users if user.id in members] or users
    return users
