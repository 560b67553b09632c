"""Access log: logins, failed logins, permission changes and module switches."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from core.scope import unscoped


class AccessEvent(Model):
    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True, db_index=True)
    user = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    username = fields.CharField(max_length=64, default="")  # as typed, also for unknown accounts
    action = fields.CharField(max_length=64, db_index=True)
    target = fields.CharField(max_length=255, default="")
    project = fields.ForeignKeyField("core.Project", related_name=False, null=True, on_delete=fields.SET_NULL)
    ip = fields.CharField(max_length=64, default="")
    detail = fields.JSONField(default=dict)

    class Meta:
        table = "core_access_event"
        ordering = ["-id"]


async def record(request, action: str, target: str = "", *, project_id=None, username=None, user_id=None, **detail) -> None:
    from core.web import ctx

    principal = ctx(request).principal if request is not None else None
    with unscoped():
        await AccessEvent.create(
            user_id=user_id if user_id is not None else (principal.id if principal else None),
            username=(username if username is not None else (principal.user.username if principal else ""))[:64],
            action=action,
            target=str(target)[:255],
            project_id=project_id,
            ip=(request.client.host if request is not None and request.client else ""),
            detail=detail,
        )
