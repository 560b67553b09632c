"""Domain events: past-tense facts one plugin announces and others react to."""

from __future__ import annotations

from typing import Any

from core.kit import DomainEvent
from core.plugins import current_host


async def emit(name: str, project_id: int | None, actor_id: int | None = None, **data: Any) -> DomainEvent:
    """Announce `name` ("hotline.work_order_closed") to plugins enabled in the project.

    Call it inside the transaction that made the change: handlers run there
    too, so the change and its consequences commit or roll back together.
    """
    from core.models import ProjectModule
    from core.scope import unscoped

    event = DomainEvent(name=name, project_id=project_id, data=data, actor_id=actor_id)
    host = current_host()
    enabled: set[str] = set()
    if project_id is not None:
        with unscoped():
            enabled = set(
                await ProjectModule.filter(project_id=project_id, enabled=True).values_list("module", flat=True)
            )
    await host.call("domain_event", enabled=enabled, contain=False, event=event)
    return event
