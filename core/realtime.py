"""Realtime messages: between app processes, and to the browsers of logged-in users.

    from core.api import realtime

    await realtime.publish(realtime.user_channel(agent.id), "screen_pop", {"fragment": url})

How a message travels:

1. `publish()` writes a `RealtimeMessage` row (channel, event, JSON payload).
   Inside `core.api.transaction()` the row is part of the transaction, and the
   broker is only told after the commit (`core.db.after_commit`): a rolled
   back change never pops up, and a notified process always finds the row.
2. The broker wakes every app process that has a subscriber on the channel:
   "memory" (one process; the embedded SQLite default), "postgres"
   (LISTEN/NOTIFY on the app database over one dedicated asyncpg connection)
   or a `redis://` URL (pub/sub). Settings: `[realtime] broker`.
3. A woken subscriber reads its channel's rows newer than the last one it
   delivered. The table, not the notification, is the truth: a LISTEN
   connection that died silently (asyncpg #519) is noticed by a periodic
   ping and replaced, every subscriber re-reads after a reconnect, and each
   stream re-reads at every keep-alive anyway. Nothing is lost, at worst late.

Browsers: `GET /events` is a Server-Sent Events stream of the logged-in
user's own channel (`user:<id>`), one per tab (`core/static/core/realtime.js`).
Every message carries its row id as the SSE `id`; a reconnecting browser
sends it back (`Last-Event-ID`, or `?after=<id>` after a page change, since
htmx-ext-sse never sends it, htmx-extensions #184), and gets what it missed.
A fresh tab gets the messages of the last `replay_seconds` (the phone that
rang while the page was loading). Keep-alive comments every
`keepalive_seconds`, `X-Accel-Buffering: no` and `Cache-Control: no-cache`
keep proxies from buffering it; never put GZip in front of `/events`.

Messages older than `keep_hours` are deleted by the job `core.realtime_cleanup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from tortoise import fields
from tortoise.models import Model

from core import clock
from core.db import after_commit

log = logging.getLogger("courtyard.realtime")

EVENT_NAME_MAX = 64
PG_CHANNEL = "courtyard_realtime"


def utcnow() -> datetime:
    return clock.now()


class RealtimeMessage(Model):
    """One published message, kept `keep_hours` so reconnecting browsers can fetch what they missed."""

    id = fields.BigIntField(primary_key=True)
    channel = fields.CharField(max_length=64)
    event = fields.CharField(max_length=EVENT_NAME_MAX)
    payload = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "core_realtime_message"
        indexes = (("channel", "id"),)


@dataclass(frozen=True)
class Message:
    id: int
    channel: str
    event: str
    payload: dict[str, Any]
    created_at: datetime

    def sse(self) -> str:
        """The message as one Server-Sent Event (the default "message" type; the name is in the data)."""
        data = json.dumps({"id": self.id, "event": self.event, "payload": self.payload}, ensure_ascii=False, default=str)
        return f"id: {self.id}\ndata: {data}\n\n"


def user_channel(user_id: int) -> str:
    """The channel a user's open browser tabs listen to."""
    return f"user:{int(user_id)}"


# Local subscribers ---------------------------------------------------------------


class _Subscriber:
    def __init__(self, channel: str):
        self.channel = channel
        self.wake = asyncio.Event()


class Hub:
    """The subscribers of this process, woken per channel by the broker."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self.closed = False

    def add(self, channel: str) -> _Subscriber:
        sub = _Subscriber(channel)
        self._subscribers.setdefault(channel, set()).add(sub)
        return sub

    def remove(self, sub: _Subscriber) -> None:
        subs = self._subscribers.get(sub.channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.channel]

    def wake(self, channel: str) -> None:
        for sub in self._subscribers.get(channel, ()):
            sub.wake.set()

    def wake_all(self) -> None:
        for subs in self._subscribers.values():
            for sub in subs:
                sub.wake.set()

    def close(self) -> None:
        """Ends every stream (shutdown): they return at their next wake-up."""
        self.closed = True
        self.wake_all()

    def count(self, channel: str | None = None) -> int:
        if channel is not None:
            return len(self._subscribers.get(channel, ()))
        return sum(len(s) for s in self._subscribers.values())


# Brokers -------------------------------------------------------------------------


class MemoryBroker:
    """Single process: publishing wakes this process's subscribers directly."""

    name = "memory"

    def __init__(self, hub: Hub):
        self.hub = hub

    async def start(self) -> None:
        pass

    async def notify(self, channel: str) -> None:
        self.hub.wake(channel)

    async def stop(self) -> None:
        pass


class _ListeningBroker:
    """A broker with one long-lived listening connection, replaced when it dies."""

    name = ""
    # A listening connection can die without telling us: ping it this often.
    health_seconds = 10.0
    retry_seconds = (0.5, 1, 2, 5, 10)

    def __init__(self, hub: Hub):
        self.hub = hub
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"realtime-{self.name}")
        # Start-up waits briefly for the first connection, but a broker that is
        # down must not keep the app from serving pages: it keeps retrying.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 5)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                await self._listen()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("realtime %s broker connection lost: %s", self.name, exc)
            self.connected.clear()
            if self._stopping.is_set():
                return
            delay = self.retry_seconds[min(attempt, len(self.retry_seconds) - 1)]
            attempt += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _on_connected(self) -> None:
        if self.connected.is_set():
            return
        self.reconnects += 1
        self.connected.set()
        # Whatever was published while nobody listened is in the table: re-read it.
        self.hub.wake_all()

    async def _listen(self) -> None:
        raise NotImplementedError


def _asyncpg_dsn(url: str) -> str:
    """Tortoise's database URL as asyncpg wants it (without Tortoise's pool options)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k in ("sslmode", "sslrootcert", "sslcert", "sslkey")]
    return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))


class PostgresBroker(_ListeningBroker):
    """LISTEN/NOTIFY on the app database; NOTIFY goes through the app's own connections."""

    name = "postgres"

    def __init__(self, hub: Hub, database_url: str):
        super().__init__(hub)
        self.dsn = _asyncpg_dsn(database_url)
        self._conn = None

    async def notify(self, channel: str) -> None:
        from core.db import connection

        await connection().execute_query("SELECT pg_notify($1, $2)", [PG_CHANNEL, channel])

    def _on_notification(self, _conn, _pid, _channel, payload: str) -> None:
        self.hub.wake(payload)

    async def _listen(self) -> None:
        import asyncpg

        lost = asyncio.Event()
        conn = await asyncpg.connect(self.dsn, timeout=10)
        self._conn = conn
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(PG_CHANNEL, self._on_notification)
            self._on_connected()
            while not self._stopping.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.health_seconds)
                if lost.is_set() or conn.is_closed():
                    raise ConnectionError("listening connection closed")
                await asyncio.wait_for(conn.execute("SELECT 1"), 5)
        finally:
            self._conn = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()

    async def kill_connection(self) -> None:
        """Close the listening connection as a network failure would (tests, diagnostics)."""
        if self._conn is not None:
            self._conn.terminate()


class RedisBroker(_ListeningBroker):
    """Redis pub/sub; the Redis channel is named after the database so installs never mix."""

    name = "redis"

    def __init__(self, hub: Hub, redis_url: str, database_url: str):
        super().__init__(hub)
        import redis.asyncio as redis

        self.url = redis_url
        digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
        self.topic = f"courtyard:{digest}:realtime"
        self.client = redis.from_url(redis_url, socket_connect_timeout=5, health_check_interval=self.health_seconds)
        self._pubsub = None

    async def notify(self, channel: str) -> None:
        await self.client.publish(self.topic, channel)

    async def _listen(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._pubsub = pubsub
        try:
            await pubsub.subscribe(self.topic)
            self._on_connected()
            while not self._stopping.is_set():
                message = await pubsub.get_message(timeout=self.health_seconds)
                if message is None:
                    await asyncio.wait_for(pubsub.ping(), 5)
                    continue
                if message.get("type") == "message":
                    data = message["data"]
                    self.hub.wake(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            self._pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def kill_connection(self) -> None:
        if self._pubsub is not None and self._pubsub.connection is not None:
            await self._pubsub.connection.disconnect()

    async def stop(self) -> None:
        await super().stop()
        with contextlib.suppress(Exception):
            await self.client.aclose()


def make_broker(setting: str, database_url: str, hub: Hub):
    setting = (setting or "memory").strip()
    if setting == "memory":
        return MemoryBroker(hub)
    if setting == "postgres":
        from core.db import is_postgres

        if not is_postgres(database_url):
            raise ValueError("[realtime] broker = \"postgres\" needs a PostgreSQL database")
        return PostgresBroker(hub, database_url)
    if setting.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(hub, setting, database_url)
    raise ValueError(f"[realtime] broker must be \"memory\", \"postgres\" or a redis:// URL, not {setting!r}")


# The process-wide broker ---------------------------------------------------------

_hub = Hub()
_broker: Any = MemoryBroker(_hub)


def hub() -> Hub:
    return _hub


def broker():
    return _broker


async def start(settings) -> None:
    """Start the configured broker (the app lifespan calls this once the database is ready)."""
    global _hub, _broker
    _hub = Hub()
    _broker = make_broker(settings.get("realtime.broker", "memory"), settings.database_url, _hub)
    await _broker.start()
    log.info("realtime broker: %s", _broker.name)


async def stop() -> None:
    """End open streams and disconnect the broker."""
    _hub.close()
    await _broker.stop()


def end_streams_soon() -> None:
    """End every open stream from a signal handler (server shutdown), waking the event loop safely."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_soon_threadsafe(_hub.close)


# API -----------------------------------------------------------------------------


async def publish(channel: str, event: str, payload: dict[str, Any] | None = None) -> RealtimeMessage:
    """Send `event` with a JSON `payload` to everyone subscribed to `channel`, in any app process.

    Inside a transaction the message is stored with it and sent after the
    commit (a rollback sends nothing); outside one it is sent at once.
    """
    if not channel or len(channel) > 64:
        raise ValueError(f"invalid realtime channel: {channel!r}")
    if not event or len(event) > EVENT_NAME_MAX:
        raise ValueError(f"invalid realtime event name: {event!r}")
    row = await RealtimeMessage.create(channel=channel, event=event, payload=payload or {}, created_at=utcnow())
    broker_now = _broker

    async def send() -> None:
        try:
            await broker_now.notify(channel)
        except Exception:  # the row is stored: subscribers still get it at their next re-read
            log.exception("realtime: notifying %s failed", channel)

    await after_commit(send)
    return row


async def last_id(channel: str) -> int:
    ids = await RealtimeMessage.filter(channel=channel).order_by("-id").limit(1).values_list("id", flat=True)
    return int(ids[0]) if ids else 0


async def _read(channel: str, after: int, limit: int = 100) -> list[Message]:
    rows = await RealtimeMessage.filter(channel=channel, id__gt=after).order_by("id").limit(limit)
    return [Message(r.id, r.channel, r.event, r.payload, r.created_at) for r in rows]


async def _stream(channel: str, after: int | None, tick_seconds: float | None) -> AsyncIterator[Message | None]:
    """Messages of `channel` after id `after` (None: from now on); None items are idle ticks."""
    hub_now = _hub
    sub = hub_now.add(channel)  # before the first read: a message published meanwhile wakes us
    try:
        last = await last_id(channel) if after is None else after
        while not hub_now.closed:
            messages = await _read(channel, last)
            for message in messages:
                last = message.id
                yield message
            if messages:
                continue
            sub.wake.clear()
            try:
                await asyncio.wait_for(sub.wake.wait(), tick_seconds)
            except asyncio.TimeoutError:
                yield None
    finally:
        hub_now.remove(sub)


async def subscribe(channel: str, after: int | None = None) -> AsyncIterator[Message]:
    """Messages published to `channel` from now on (or after message id `after`), as they come."""
    async for message in _stream(channel, after, None):
        if message is not None:
            yield message


async def cleanup(now: datetime | None = None, keep_hours: float = 24) -> int:
    """Delete messages older than `keep_hours`; returns how many."""
    cutoff = (now or utcnow()) - timedelta(hours=keep_hours)
    return await RealtimeMessage.filter(created_at__lt=cutoff).delete()


async def cleanup_job(ctx) -> None:
    from core.settings import current

    deleted = await cleanup(keep_hours=float(current().get("realtime.keep_hours", 24)))
    ctx.log(f"deleted {deleted} realtime messages")


# The browser's event stream -------------------------------------------------------


def _after(request: Request) -> int | None:
    """The last message id the browser has: `?after=` or the `Last-Event-ID` header."""
    raw = request.query_params.get("after") or request.headers.get("last-event-id")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValueError(raw)
    return int(raw)


async def _still_logged_in(session_id: int, idle: timedelta, absolute: timedelta) -> bool:
    """The session is alive, without touching it: an open tab must not keep an idle session alive."""
    from core.auth import Session

    session = await Session.get_or_none(id=session_id).select_related("user")
    if session is None or not session.user.is_active:
        return False
    at = utcnow()
    return at - session.last_seen_at <= idle and at - session.created_at <= absolute


async def events(request: Request) -> Response:
    """`GET /events`: the logged-in user's realtime messages as Server-Sent Events."""
    from core.i18n import gettext
    from core.web import ctx

    context = ctx(request)
    settings = request.app.state.settings
    channel = user_channel(context.principal.id)
    try:
        after = _after(request)
    except ValueError:
        return JSONResponse({"error": gettext("after must be a message id.")}, status_code=400)
    if after is None:
        since = utcnow() - timedelta(seconds=float(settings.get("realtime.replay_seconds", 60)))
        older = await RealtimeMessage.filter(channel=channel, created_at__lt=since).order_by("-id").first()
        after = older.id if older is not None else 0
    keepalive = float(settings.get("realtime.keepalive_seconds", 15))
    sec = settings["security"]
    idle, absolute = timedelta(minutes=sec["session_idle_minutes"]), timedelta(hours=sec["session_absolute_hours"])
    session_id = context.session.id

    async def body() -> AsyncIterator[str]:
        # Padding first: a few proxies hold back small first chunks.
        yield ":" + " " * 2048 + "\nretry: 3000\n\n"
        async for message in _stream(channel, after, keepalive):
            if message is None:
                if not await _still_logged_in(session_id, idle, absolute):
                    return
                yield ": keep-alive\n\n"
            else:
                yield message.sse()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )
