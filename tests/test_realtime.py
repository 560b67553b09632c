"""Realtime messages reach the user's browser stream, in whichever app process it is held."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta

import httpx
import pytest

from core import realtime
from core.api import transaction
from core.testing import LiveServer, make_project, make_user

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


def broker_for(db_kind: str) -> str:
    """Processes share PostgreSQL's LISTEN/NOTIFY; on SQLite files they need Redis between them."""
    if db_kind == "postgres":
        return "postgres"
    if not redis_available():
        pytest.skip("no Redis at 127.0.0.1:6379: SQLite app processes have no other way to reach each other")
    return REDIS_URL


@pytest.fixture
def settings(settings, db_kind):
    settings.data["realtime"]["broker"] = broker_for(db_kind)
    return settings


@pytest.fixture
async def other_process(settings, plugin_modules, app):
    """A second app process on the same database, with the same broker."""
    server = LiveServer(settings, plugin_modules, {"COURTYARD_REALTIME_BROKER": settings["realtime"]["broker"]})
    try:
        yield await server.wait()
    finally:
        server.stop()


@pytest.fixture
async def agent(app, host):
    project = await make_project("EAST", host=host)
    return await make_user("agent_li", "agent", project)


class EventStream:
    """Reads Server-Sent Events from a real HTTP response."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> dict:
        async def read() -> dict:
            fields: dict[str, str] = {}
            async for line in self.lines:
                if line == "":
                    if "data" in fields:
                        return {"id": fields.get("id"), **json.loads(fields["data"])}
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
            raise EOFError("stream closed")

        return await asyncio.wait_for(read(), timeout)


@contextlib.asynccontextmanager
async def event_stream(base_url: str, cookies, query: str = ""):
    async with httpx.AsyncClient(base_url=base_url, cookies=cookies, timeout=10) as http:
        async with http.stream("GET", "/events" + query) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-accel-buffering"] == "no"
            assert "no-cache" in response.headers["cache-control"]
            yield EventStream(response)


async def test_message_published_in_one_process_reaches_the_stream_held_by_another(client, agent, other_process):
    await client.login("agent_li")
    cookies = dict(client.cookies.items())
    async with event_stream(other_process.url, cookies) as stream:
        await asyncio.sleep(0.2)  # the other process has subscribed before we publish
        started = asyncio.get_running_loop().time()
        await realtime.publish(realtime.user_channel(agent.id), "screen_pop", {"call": 7})
        message = await stream.next()
        assert message["event"] == "screen_pop" and message["payload"] == {"call": 7}
        assert asyncio.get_running_loop().time() - started < 1.0


async def test_reconnecting_browser_gets_what_it_missed(client, agent, other_process):
    await client.login("agent_li")
    cookies = dict(client.cookies.items())
    channel = realtime.user_channel(agent.id)
    async with event_stream(other_process.url, cookies) as stream:
        await asyncio.sleep(0.2)
        await realtime.publish(channel, "screen_pop", {"call": 1})
        first = await stream.next()
    # The tab lost its connection; meanwhile two more pops and one for somebody else.
    await realtime.publish(channel, "screen_pop", {"call": 2})
    await realtime.publish(realtime.user_channel(agent.id + 1000), "screen_pop", {"call": 99})
    await realtime.publish(channel, "screen_pop", {"call": 3})
    async with event_stream(other_process.url, cookies, f"?after={first['id']}") as stream:
        assert (await stream.next())["payload"] == {"call": 2}
        assert (await stream.next())["payload"] == {"call": 3}


async def test_rolled_back_change_sends_nothing_and_committed_one_arrives_after_commit(app, agent):
    channel = realtime.user_channel(agent.id)
    received: list[dict] = []

    async def listen():
        async for message in realtime.subscribe(channel):
            received.append(message.payload)

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.1)
    try:
        with pytest.raises(RuntimeError):
            async with transaction():
                await realtime.publish(channel, "screen_pop", {"call": "rolled back"})
                raise RuntimeError("intake failed")
        async with transaction():
            await realtime.publish(channel, "screen_pop", {"call": "kept"})
            await asyncio.sleep(0.2)
            assert received == []  # not before the commit
        for _ in range(50):
            if received:
                break
            await asyncio.sleep(0.02)
        assert received == [{"call": "kept"}]
    finally:
        task.cancel()


async def test_listening_connection_that_dies_is_replaced_and_nothing_is_lost(app, agent):
    broker = realtime.broker()
    channel = realtime.user_channel(agent.id)
    received: list[dict] = []

    async def listen():
        async for message in realtime.subscribe(channel):
            received.append(message.payload)

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.1)
    try:
        reconnects = broker.reconnects
        await broker.kill_connection()
        # Published while nobody listens: found in the table after the reconnect.
        await realtime.publish(channel, "screen_pop", {"call": "during outage"})
        for _ in range(100):
            if received and broker.reconnects > reconnects:
                break
            await asyncio.sleep(0.05)
        assert broker.reconnects > reconnects
        assert received == [{"call": "during outage"}]
    finally:
        task.cancel()


async def test_stream_needs_login_and_a_valid_position(client, agent):
    anonymous = await client.get("/events")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    await client.login("agent_li")
    bad = await client.get("/events?after=abc")
    assert bad.status_code == 400 and "error" in bad.json()


async def test_old_messages_are_cleaned_up(app, agent):
    channel = realtime.user_channel(agent.id)
    old = await realtime.publish(channel, "screen_pop", {"call": 1})
    await realtime.RealtimeMessage.filter(id=old.id).update(created_at=realtime.utcnow() - timedelta(hours=30))
    recent = await realtime.publish(channel, "screen_pop", {"call": 2})
    assert await realtime.cleanup(keep_hours=24) == 1
    assert await realtime.RealtimeMessage.filter(channel=channel).values_list("id", flat=True) == [recent.id]


async def test_server_stops_promptly_while_browsers_hold_streams(client, agent, other_process):
    await client.login("agent_li")
    async with event_stream(other_process.url, dict(client.cookies.items())) as stream:
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        other_process.process.terminate()
        with pytest.raises(EOFError):
            await stream.next(timeout=5)  # the server ended the stream instead of waiting for it
        await asyncio.get_running_loop().run_in_executor(None, other_process.process.wait, 5)
        assert asyncio.get_running_loop().time() - started < 5
