"""Telephony: signed PBX events, screen pops across app processes, call log, missed calls."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from core import realtime
from core.api import unscoped
from core.people import create_customer, link_unit
from core.testing import LiveServer, make_project, make_units, make_user, translated
from plugins.hotline import telephony
from plugins.hotline.call_models import Call, PbxIntegration
from plugins.hotline.models import CallbackTask
from tests.test_realtime import broker_for, event_stream

SECRET = "pbx-shared-secret"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai


@pytest.fixture
def settings(settings, db_kind):
    settings.data["realtime"]["broker"] = broker_for(db_kind)
    return settings


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(telephony, "clock", lambda: NOW)
    return NOW


@pytest.fixture
async def desk(app, host):
    """An estate with a known caller, an agent on extension 8001 and the estate's PBX."""
    east = await make_project("EAST", host=host)
    unit = (await make_units(east, 1))[0]
    with unscoped():
        zhang = await create_customer(east, "张三", ["138 0013 8000"])
        await link_unit(zhang, unit)
    agent = await make_user("agent_li", "agent", east, extension="8001", locale="en")
    await make_user("agent_wang", "agent", east, extension="8002", locale="en")
    pbx = await PbxIntegration.create(name="EAST desk", project=east, secret=SECRET)
    return {"project": east, "unit": unit, "customer": zhang, "agent": agent, "pbx": pbx}


def event(kind: str, *, event_id: str, call_id: str = "c-1", caller: str = "13800138000", extension: str = "8001",
          at: datetime = NOW) -> dict:
    return {"event_id": event_id, "event": kind, "call_id": call_id, "caller": caller, "extension": extension,
            "timestamp": at.isoformat()}


async def post_signed(http: httpx.AsyncClient, pbx: PbxIntegration, payload, *, secret: str = SECRET,
                      timestamp: int | None = None) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    ts = str(int((timestamp if timestamp is not None else NOW.timestamp())))
    headers = {
        "content-type": "application/json",
        "X-Courtyard-Timestamp": ts,
        "X-Courtyard-Signature": telephony.sign(secret, ts, body),
    }
    return await http.post(f"/hooks/hotline/pbx/{pbx.id}", content=body, headers=headers)


async def calls() -> list[Call]:
    with unscoped():
        return await Call.all().order_by("id")


# Screen pop across processes ------------------------------------------------------


@pytest.fixture
async def other_process(settings, plugin_modules, app):
    server = LiveServer(settings, plugin_modules, {"COURTYARD_REALTIME_BROKER": settings["realtime"]["broker"]})
    try:
        yield await server.wait()
    finally:
        server.stop()


async def test_ringing_call_pops_the_callers_360_in_the_agents_browser_held_by_another_process(
    client, desk, other_process
):
    await client.login("agent_li")
    cookies = dict(client.cookies.items())
    async with event_stream(other_process.url, cookies) as stream:
        await asyncio.sleep(0.2)  # the stream has subscribed in the other process
        started = asyncio.get_running_loop().time()
        # The PBX posts to this process (real time: the live process checks it too).
        now = datetime.now(timezone.utc)
        response = await post_signed(
            client, desk["pbx"], event("ringing", event_id="e-1", at=now), timestamp=int(now.timestamp())
        )
        assert response.status_code == 200 and response.json() == {"processed": ["e-1"], "ignored": []}
        message = await stream.next(timeout=3)
        assert message["event"] == "screen_pop"
        async with httpx.AsyncClient(base_url=other_process.url, cookies=cookies) as browser:
            pop = await browser.get(message["payload"]["fragment"], headers={"HX-Request": "true"})
        assert asyncio.get_running_loop().time() - started < 1.0
    call = (await calls())[0]
    assert pop.status_code == 200
    assert "张三" in pop.text and desk["unit"].code in pop.text
    assert f'href="/p/EAST/customers/{desk["customer"].id}"' in pop.text
    assert f"/p/EAST/hotline/intake?customer={desk['customer'].id}&amp;call={call.id}" in pop.text
    assert "138****8000" in pop.text  # an agent sees the number masked


async def test_unknown_number_offers_to_create_the_customer(client, desk, frozen):
    response = await post_signed(client, desk["pbx"], event("ringing", event_id="e-1", caller="139 1111 2222"))
    assert response.status_code == 200
    call = (await calls())[0]
    assert call.customer_id is None and call.caller == "+8613911112222"
    await client.login("agent_li")
    pop = await client.get(f"/hotline/calls/{call.id}/pop", headers={"HX-Request": "true"})
    assert "Unknown number" in pop.text
    assert f"/p/EAST/hotline/intake?call={call.id}&amp;phone=%2B8613911112222" in pop.text


async def test_another_agent_cannot_open_someone_elses_pop_of_another_estate(client, desk, frozen, host):
    await post_signed(client, desk["pbx"], event("ringing", event_id="e-1"))
    call = (await calls())[0]
    west = await make_project("WEST", host=host)
    await make_user("west_agent", "agent", west, locale="en")
    await client.login("west_agent")
    assert (await client.get(f"/hotline/calls/{call.id}/pop")).status_code == 404


# Refused requests change nothing ---------------------------------------------------


async def test_bad_signature_is_refused_and_changes_nothing(client, desk, frozen):
    response = await post_signed(client, desk["pbx"], event("ringing", event_id="e-1"), secret="guessed")
    assert response.status_code == 401 and response.json()["error"] == translated("Bad signature.")
    unsigned = await client.post(f"/hooks/hotline/pbx/{desk['pbx'].id}", json=event("ringing", event_id="e-1"))
    assert unsigned.status_code == 401
    assert await calls() == []
    assert await realtime.RealtimeMessage.all().count() == 0


async def test_stale_timestamp_is_refused(client, desk, frozen):
    old = int((NOW - timedelta(minutes=10)).timestamp())
    response = await post_signed(client, desk["pbx"], event("ringing", event_id="e-1"), timestamp=old)
    assert response.status_code == 401 and "error" in response.json()
    assert await calls() == []


async def test_replayed_event_is_ignored(client, desk, frozen):
    payload = event("ringing", event_id="e-1")
    first = await post_signed(client, desk["pbx"], payload)
    again = await post_signed(client, desk["pbx"], payload)
    assert first.json() == {"processed": ["e-1"], "ignored": []}
    assert again.status_code == 200 and again.json() == {"processed": [], "ignored": ["e-1"]}
    assert len(await calls()) == 1
    assert await realtime.RealtimeMessage.all().count() == 1  # one pop, not two


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "JSON"),
        (json.dumps({**event("ringing", event_id="e-1"), "event": "exploded"}).encode(), "exploded"),
        (json.dumps({k: v for k, v in event("ringing", event_id="e-1").items() if k != "call_id"}).encode(), "call_id"),
        (json.dumps({**event("ringing", event_id="e-1"), "timestamp": "yesterday"}).encode(), "timestamp"),
        (json.dumps({"events": []}).encode(), "events"),
    ],
)
async def test_malformed_payload_gets_400_with_a_json_error(client, desk, frozen, body, fragment):
    response = await post_signed(client, desk["pbx"], body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert await calls() == []


async def test_unknown_integration_is_404(client, desk, frozen):
    response = await client.post("/hooks/hotline/pbx/9999", content=b"{}")
    assert response.status_code == 404 and "error" in response.json()


# What calls become --------------------------------------------------------------------


async def test_missed_call_becomes_a_callback_task_and_shows_in_the_call_log(client, desk, frozen):
    await post_signed(client, desk["pbx"], {"events": [
        event("ringing", event_id="e-1"),
        event("missed", event_id="e-2", at=NOW + timedelta(seconds=30)),
    ]})
    call = (await calls())[0]
    with unscoped():
        task = await CallbackTask.get(id=call.callback_task_id)
    assert task.project_id == desk["project"].id and task.customer_id == desk["customer"].id
    assert task.source == f"hotline.Call:{call.id}" and task.phone == "+8613800138000"
    await client.login("agent_li")
    log = await client.get("/p/EAST/hotline/calls")
    assert log.status_code == 200
    assert f"/p/EAST/hotline/callbacks/{task.id}" in log.text
    # A retry of the same missed event does not make a second task.
    await post_signed(client, desk["pbx"], event("missed", event_id="e-2", at=NOW + timedelta(seconds=30)))
    with unscoped():
        assert await CallbackTask.filter(source=f"hotline.Call:{call.id}").count() == 1


async def test_answered_call_logs_its_duration_on_the_call_log_and_the_customer_timeline(client, desk, frozen):
    from core.timeline import TimelineEntry

    await post_signed(client, desk["pbx"], {"events": [
        event("ringing", event_id="e-1"),
        event("answered", event_id="e-2", at=NOW + timedelta(seconds=5)),
        event("ended", event_id="e-3", at=NOW + timedelta(seconds=205)),
    ]})
    call = (await calls())[0]
    assert call.status == "ended" and call.duration_seconds == 200 and call.agent_id == desk["agent"].id
    await client.login("agent_li")
    log = await client.get("/p/EAST/hotline/calls")
    assert "3:20" in log.text and f'/p/EAST/customers/{desk["customer"].id}' in log.text
    with unscoped():
        entry = await TimelineEntry.get(subject="core.Customer", subject_id=desk["customer"].id, kind="call")
    assert "3:20" in entry.body and entry.author_id == desk["agent"].id


async def test_ringing_pops_only_for_the_agent_whose_extension_rang(client, desk, frozen):
    await post_signed(client, desk["pbx"], event("ringing", event_id="e-1", extension="8002"))
    messages = await realtime.RealtimeMessage.all()
    wang = await desk["agent"].__class__.get(username="agent_wang")
    assert [m.channel for m in messages] == [realtime.user_channel(wang.id)]


async def test_admin_connects_a_pbx_whose_signed_events_are_then_accepted(client, desk, frozen):
    await make_user("it_admin", "admin", desk["project"], locale="en")
    await client.login("it_admin")
    refused = await client.form("/hotline/pbx", {"name": "", "project": str(desk["project"].id), "adapter": "generic"})
    assert refused.status_code == 422
    created = await client.form("/hotline/pbx", {"name": "EAST 2nd line", "project": str(desk["project"].id), "adapter": "generic"})
    assert created.status_code == 200 and "not shown again" in created.text
    with unscoped():
        pbx = await PbxIntegration.get(name="EAST 2nd line")
    assert pbx.secret in created.text and f"/hooks/hotline/pbx/{pbx.id}" in created.text
    assert pbx.secret not in (await client.get("/hotline/pbx")).text
    ok = await post_signed(client, pbx, event("ringing", event_id="x-1"), secret=pbx.secret)
    assert ok.status_code == 200
    # After a new secret, the old one is refused.
    await client.form(f"/hotline/pbx/{pbx.id}/secret")
    stale = await post_signed(client, pbx, event("ringing", event_id="x-2"), secret=pbx.secret)
    assert stale.status_code == 401
    # An estate admin cannot connect a head-office line.
    head_office = await client.form("/hotline/pbx", {"name": "400", "project": "", "adapter": "generic"})
    assert head_office.status_code == 422
