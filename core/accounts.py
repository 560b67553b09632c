"""Creating and changing staff accounts (used by the CLI, the admin pages and the demo)."""

from __future__ import annotations

from core import auth
from core.models import Membership, Project, Role, User
from core.scope import unscoped


class AccountError(ValueError):
    pass


MIN_PASSWORD_LENGTH = 8


def check_password_strength(password: str) -> None:
    from core.i18n import gettext as _

    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(_("The password must have at least %(n)s characters.", n=MIN_PASSWORD_LENGTH))


async def create_user(
    username: str,
    password: str,
    *,
    display_name: str = "",
    role: str = "agent",
    project: Project | None = None,
    email: str = "",
    extension: str = "",
    department=None,
    locale: str = "zh_CN",
) -> User:
    with unscoped():
        check_password_strength(password)
        if await User.filter(username=username).exists():
            raise AccountError(f"username {username!r} is taken")
        user = await User.create(
            username=username,
            display_name=display_name or username,
            email=email,
            extension=extension,
            password_hash=auth.hash_password(password),
            locale=locale,
            password_changed_at=auth.now(),
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
