"""Domain events: past-tense facts one plugin announces and others react to."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Iterable

from core.kit import DomainEvent
from core.plugins import current_host

# Handlers may memoise lookups that cannot change within one batch of `emit_many`
# (same transaction, same estate), e.g. the webhook subscriptions: a bill run
# announces thousands of bills and must not query them once per bill.
batch_memo: ContextVar[dict[str, Any] | None] = ContextVar("courtyard_event_batch_memo", default=None)


async def emit(name: str, project_id: int | None, actor_id: int | None = None, **data: Any) -> DomainEvent:
    """Announce `name` ("hotline.work_order_closed") to plugins enabled in the project.

    Call it inside the transaction that made the change: handlers run there
    too, so the change and its consequences commit or roll back together.
    """
    event = DomainEvent(name=name, project_id=project_id, data=data, actor_id=actor_id)
    await current_host().call("domain_event", enabled=await _enabled(project_id), contain=False, event=event)
    return event


async def emit_many(name: str, project_id: int | None, items: Iterable[dict[str, Any]], actor_id: int | None = None) -> int:
    """Announce `name` once per dict of data in `items`, like `emit` (same transaction rule).

    For batches (a bill run's bills): the estate's modules are looked up once
    for all of them. Returns how many events were announced.
    """
    host = current_host()
    enabled = await _enabled(project_id)
    count = 0
    memo = batch_memo.set({})
    try:
        for data in items:
            event = DomainEvent(name=name, project_id=project_id, data=dict(data), actor_id=actor_id)
            await host.call("domain_event", enabled=enabled, contain=False, event=event)
            count += 1
    finally:
        batch_memo.reset(memo)
    return count


async def _enabled(project_id: int | None) -> set[str]:
    from core.models import ProjectModule
    from core.scope import unscoped

    if project_id is None:
        return set()
    with unscoped():
        return set(await ProjectModule.filter(project_id=project_id, enabled=True).values_list("module", flat=True))
