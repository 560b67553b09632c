"""Outgoing webhooks: domain events posted, signed, to the URLs administrators subscribe.

Core implements the `domain_event` hook like any plugin: for each active
subscription that wants the event and covers its estate, one
`WebhookDelivery` row is written in the transaction of the change itself, so
a change that commits always has its deliveries, and a rolled-back one has
none. The row holds the exact JSON body that will be posted.

`deliver_pending()` (the global job "core.deliver_webhooks" every minute, and
shortly after an event in a process with a worker) claims due deliveries
(`core.db.claim_rows`: `FOR UPDATE SKIP LOCKED` on PostgreSQL,
compare-and-set on SQLite) and posts each with httpx:

    Content-Type: application/json
    Courtyard-Event: hotline.work_order_closed
    Courtyard-Event-Id: evt_...          (the same for every attempt and replay)
    Courtyard-Delivery: 42
    Courtyard-Signature: t=1767225600,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

A 2xx answer marks it delivered; anything else (an error status, a refused
connection, a timeout) is recorded with the answer and retried with
exponential backoff (`webhooks.retry_base_seconds`, doubling, at most 6 hours)
up to `webhooks.max_attempts`, then marked failed. Deliveries of a
subscription that is switched off wait until it is on again. An
administrator can replay any delivery: a new row with the same body and
event id, delivered like the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise import fields
from tortoise.expressions import Q
from tortoise.models import Model

from core import clock, i18n
from core.db import after_commit, claim_rows

log = logging.getLogger("courtyard.webhooks")

SECRET_PREFIX = "whsec_"
MAX_RESPONSE_CHARS = 2000
PARALLEL_POSTS = 8


class DeliveryState:
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CHOICES = {
        PENDING: i18n.lazy_gettext("Waiting"),
        SENDING: i18n.lazy_gettext("Sending"),
        DELIVERED: i18n.lazy_gettext("Delivered"),
        FAILED: i18n.lazy_gettext("Failed"),
    }
    BADGES = {PENDING: "warning", SENDING: "progress", DELIVERED: "done", FAILED: "danger"}


class WebhookSubscription(Model):
    """A URL that receives the chosen events of the chosen estates."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100)
    url = fields.CharField(max_length=500)
    events = fields.JSONField(default=list)  # event names
    project_ids = fields.JSONField(default=list)
    # Needed to sign every delivery, so it is kept as is (shown to the admin once).
    secret = fields.CharField(max_length=100)
    is_active = fields.BooleanField(default=True)
    note = fields.TextField(default="")
    created_at = fields.DatetimeField()
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.SET_NULL)

    class Meta:
        table = "core_webhook_subscription"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def secret_hint(self) -> str:
        return self.secret[: len(SECRET_PREFIX) + 4] + "…"

    def wants(self, event: str, project_id: int | None) -> bool:
        return self.is_active and event in (self.events or []) and project_id in (self.project_ids or [])


class WebhookDelivery(Model):
    """One event posted (or to be posted) to one subscription, with the outcome of its attempts."""

    id = fields.BigIntField(primary_key=True)
    subscription = fields.ForeignKeyField("core.WebhookSubscription", related_name="deliveries", on_delete=fields.CASCADE)
    project = fields.ForeignKeyField("core.Project", related_name=False, null=True, on_delete=fields.SET_NULL)
    event = fields.CharField(max_length=100, db_index=True)
    event_id = fields.CharField(max_length=64, db_index=True)
    payload = fields.TextField()  # the exact body posted
    state = fields.CharField(max_length=16, default=DeliveryState.PENDING, db_index=True)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    lease_until = fields.DatetimeField(null=True)
    worker = fields.CharField(max_length=128, default="")
    response_status = fields.IntField(null=True)
    response_body = fields.TextField(default="")
    last_error = fields.TextField(default="")
    duration_ms = fields.IntField(null=True)
    created_at = fields.DatetimeField()
    delivered_at = fields.DatetimeField(null=True)
    replay_of = fields.ForeignKeyField("core.WebhookDelivery", related_name="replays", null=True, on_delete=fields.SET_NULL)
    replayed_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.SET_NULL)

    class Meta:
        table = "core_webhook_delivery"
        ordering = ["-id"]


# Subscriptions -------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def known_events(host) -> dict[str, Any]:
    """Event names the installed plugins declare (hook `register_events`) -> EventSpec, by name."""
    from core.kit import EventSpec
    from core.plugins import PluginError

    found: dict[str, Any] = {}
    for result in host.call_sync("register_events"):
        for spec in result.value or []:
            if not isinstance(spec, EventSpec):
                raise PluginError(result.plugin, f"register_events must return core.api.EventSpec objects, got {spec!r}")
            found[spec.name] = spec
    return dict(sorted(found.items()))


# Enqueueing (core's `domain_event` hook) -------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


async def enqueue(event) -> int:
    """Write one delivery per subscription that wants `event`, in the caller's transaction."""
    from core.events import batch_memo
    from core.models import Project
    from core.scope import unscoped

    if event.project_id is None:
        return 0
    memo = batch_memo.get()
    if memo is None:
        memo = {}
    if "subscriptions" not in memo:
        memo["subscriptions"] = await WebhookSubscription.filter(is_active=True)
    subscriptions = [s for s in memo["subscriptions"] if s.wants(event.name, event.project_id)]
    if not subscriptions:
        return 0
    if memo.get("project") is None or memo["project"].id != event.project_id:
        with unscoped():
            memo["project"] = await Project.get(id=event.project_id)
    project = memo["project"]
    at = clock.now()
    event_id = "evt_" + uuid.uuid4().hex
    body = _json({
        "id": event_id,
        "event": event.name,
        "occurred_at": at.isoformat(),
        "project": {"id": project.id, "code": project.code, "name": project.name},
        "actor_id": event.actor_id,
        "data": event.data,
    })
    for subscription in subscriptions:
        await WebhookDelivery.create(
            subscription=subscription, project_id=project.id, event=event.name, event_id=event_id, payload=body,
            next_attempt_at=at, created_at=at,
        )
    await after_commit(kick_delivery)
    return len(subscriptions)


async def kick_delivery() -> None:
    """Ask this process's worker (if any) to post what is due shortly."""
    from core.jobs import kick

    kick("webhooks")


async def send_test(subscription: WebhookSubscription, user_id: int | None = None) -> WebhookDelivery:
    """Queue a "core.ping" delivery to check a subscriber (signed like any other)."""
    at = clock.now()
    event_id = "evt_" + uuid.uuid4().hex
    body = _json({"id": event_id, "event": "core.ping", "occurred_at": at.isoformat(), "project": None,
                  "actor_id": user_id, "data": {"subscription": subscription.id}})
    delivery = await WebhookDelivery.create(
        subscription=subscription, event="core.ping", event_id=event_id, payload=body, next_attempt_at=at,
        created_at=at, replayed_by_id=user_id,
    )
    await kick_delivery()
    return delivery


async def replay(delivery: WebhookDelivery, user_id: int | None = None) -> WebhookDelivery:
    """Post a delivery again: a new row with the same body and event id."""
    at = clock.now()
    copy = await WebhookDelivery.create(
        subscription_id=delivery.subscription_id, project_id=delivery.project_id, event=delivery.event,
        event_id=delivery.event_id, payload=delivery.payload, next_attempt_at=at, created_at=at,
        replay_of_id=delivery.id, replayed_by_id=user_id,
    )
    await kick_delivery()
    return copy


# Signing -----------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Courtyard-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance_seconds: int = 300, now: float | None = None) -> bool:
    """What a receiver does (docs/api.md shows the same in a few lines): check the signature and its age."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# Delivering ----------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.failed


def _due(now: datetime, active: list[int]) -> Q:
    return Q(subscription_id__in=active) & (
        Q(state=DeliveryState.PENDING, next_attempt_at__lte=now) | Q(state=DeliveryState.SENDING, lease_until__lt=now)
    )


async def deliver_pending(settings=None, *, now: datetime | None = None, worker_id: str = "") -> DeliveryReport:
    """Post every delivery due now (each gets its own outcome); returns what happened."""
    import httpx

    from core.jobs import new_worker_id
    from core.settings import current

    settings = settings or current()
    config = settings["webhooks"]
    report = DeliveryReport()
    now = now or clock.now()
    worker = worker_id or new_worker_id()
    timeout = float(config["timeout_seconds"])
    lease = timedelta(seconds=max(60.0, timeout * 4))
    batch = max(1, int(config["batch_size"]))
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        while True:
            active = list(await WebhookSubscription.filter(is_active=True).values_list("id", flat=True))
            if not active:
                return report
            claim = {"state": DeliveryState.SENDING, "lease_until": now + lease, "worker": worker}
            rows = await claim_rows(
                WebhookDelivery, _due(now, active), order_by=("next_attempt_at", "id"), limit=batch, values=claim
            )
            rows = [row for row in rows if row.worker == worker and row.state == DeliveryState.SENDING]
            if not rows:
                return report
            subscriptions = {
                s.id: s for s in await WebhookSubscription.filter(id__in=list({row.subscription_id for row in rows}))
            }
            # A few at a time: one subscriber that times out must not hold up the others for long.
            gate = asyncio.Semaphore(PARALLEL_POSTS)

            async def post(row: WebhookDelivery) -> None:
                async with gate:
                    await _post(client, settings, row, subscriptions[row.subscription_id], now, report)

            for outcome in await asyncio.gather(*(post(row) for row in rows), return_exceptions=True):
                if isinstance(outcome, Exception):  # its lease runs out and another pass retries it
                    log.error("webhook delivery failed unexpectedly", exc_info=outcome)


async def _post(client, settings, delivery: WebhookDelivery, subscription: WebhookSubscription, now: datetime,
                report: DeliveryReport) -> None:
    import httpx

    body = delivery.payload.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Courtyard-Webhooks/1",
        "Courtyard-Event": delivery.event,
        "Courtyard-Event-Id": delivery.event_id,
        "Courtyard-Delivery": str(delivery.id),
        "Courtyard-Signature": sign(subscription.secret, body, int(time.time())),
    }
    started = time.monotonic()
    status: int | None = None
    text, error = "", ""
    try:
        response = await client.post(subscription.url, content=body, headers=headers)
        status, text = response.status_code, response.text[:MAX_RESPONSE_CHARS]
        if not 200 <= status < 300:
            error = i18n.gettext("The subscriber answered HTTP %(status)s.", status=status)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    duration = int((time.monotonic() - started) * 1000)
    mine = WebhookDelivery.filter(id=delivery.id, worker=delivery.worker, state=DeliveryState.SENDING)
    attempts = delivery.attempts + 1
    outcome = {"attempts": attempts, "response_status": status, "response_body": text, "last_error": error,
               "duration_ms": duration, "lease_until": None}
    if not error:
        await mine.update(state=DeliveryState.DELIVERED, delivered_at=clock.now(), **outcome)
        report.delivered += 1
    elif attempts >= int(settings["webhooks"]["max_attempts"]):
        log.warning("webhook delivery %s to %s failed for good: %s", delivery.id, subscription.url, error)
        await mine.update(state=DeliveryState.FAILED, **outcome)
        report.failed += 1
    else:
        from core.outbox import backoff

        log.info("webhook delivery %s to %s failed (attempt %s): %s", delivery.id, subscription.url, attempts, error)
        await mine.update(state=DeliveryState.PENDING, next_attempt_at=now + backoff(settings, attempts, "webhooks"), **outcome)
        report.retrying += 1


async def deliver_job(ctx) -> None:
    """The "core.deliver_webhooks" job: post what is due, forget old delivered ones."""
    report = await deliver_pending(ctx.settings, now=ctx.now())
    keep = timedelta(days=float(ctx.settings["webhooks"]["keep_days"]))
    await WebhookDelivery.filter(state=DeliveryState.DELIVERED, created_at__lt=ctx.now() - keep).delete()
    if report.attempted:
        ctx.log(i18n.gettext(
            "Delivered %(delivered)s, will retry %(retrying)s, failed %(failed)s.",
            delivered=report.delivered, retrying=report.retrying, failed=report.failed,
        ))
