"""Outgoing webhooks: subscribed in the browser, written with the change, signed, retried, replayable.

Deliveries go to a real HTTP server started by the test on a free local port.
"""

from __future__ import annotations

import re

import pytest

from core import webhooks
from core.db import transaction
from core.events import emit
from core.webhooks import DeliveryState, WebhookDelivery, WebhookSubscription, deliver_pending
from tests.api_helpers import Receiver, api_estate, order_body, running

ORDERS = "/api/v1/projects/EAST/hotline/work-orders"


def verify(secret: str, body: bytes, header: str) -> bool:
    """The receiver's check, as docs/api.md shows it."""
    import hashlib
    import hmac
    import time

    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp = int(parts.get("t", "0"))
    if abs(time.time() - timestamp) > 300:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


async def subscribe(admin, receiver: Receiver, estate, events=("hotline.complaint_received",)) -> tuple[WebhookSubscription, str]:
    """Subscribe through the admin page; returns the subscription and the secret shown once."""
    response = await admin.form("/admin/webhooks/new", {
        "name": "Finance system", "url": receiver.url, "events": list(events), "projects": str(estate.project.id),
        "is_active": "1",
    })
    assert response.status_code == 200, response.text[:500]
    secret = re.search(r'value="(whsec_[A-Za-z0-9_\-]+)"', response.text).group(1)
    subscription = await WebhookSubscription.get(name="Finance system")
    assert subscription.secret == secret
    return subscription, secret


@pytest.fixture
async def setup(app, host, login_as, api_client):
    east = await api_estate(host, "EAST")
    west = await api_estate(host, "WEST", "13900139000")
    admin = await login_as("admin", None)
    api = await api_client([east.project, west.project], ["hotline:write"])
    return east, west, admin, api


async def complaint(api, code="EAST", estate=None, **changes):
    answer = await api.post(f"/api/v1/projects/{code}/hotline/work-orders",
                            json=order_body(estate, kind="complaint", subject="物业不作为", **changes))
    assert answer.status_code == 201
    return answer.json()


async def test_an_event_is_delivered_signed_to_a_real_receiver(setup, settings):
    east, west, admin, api = setup
    receiver = Receiver()
    form = await admin.get("/admin/webhooks/new")
    for event in ("hotline.work_order_closed", "complaints.escalated", "activities.return_visit_recorded"):
        assert event in form.text
    subscription, secret = await subscribe(admin, receiver, east)
    assert secret not in (await admin.get(f"/admin/webhooks/{subscription.id}")).text

    order = await complaint(api, estate=east)
    await complaint(api, "WEST", west)  # an estate the subscription does not cover
    await api.post(ORDERS, json=order_body(east))  # a repair: not a subscribed event
    delivery = await WebhookDelivery.get(subscription_id=subscription.id)
    assert delivery.state == DeliveryState.PENDING and delivery.event == "hotline.complaint_received"

    async with running(receiver):
        report = await deliver_pending(settings)
    assert report.delivered == 1 and len(receiver.received) == 1
    got = receiver.received[0]
    assert verify(secret, got.body, got.headers["courtyard-signature"])
    assert not verify("whsec_wrong", got.body, got.headers["courtyard-signature"])
    assert got.headers["courtyard-event"] == "hotline.complaint_received"
    assert got.headers["courtyard-event-id"] == got.json["id"] and got.headers["courtyard-delivery"] == str(delivery.id)
    assert got.json["project"]["code"] == "EAST"
    assert got.json["data"]["work_order_id"] == order["id"] and got.json["data"]["number"] == order["number"]
    await delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED and delivery.response_status == 200 and delivery.attempts == 1

    page = await admin.get(f"/admin/webhooks/deliveries/{delivery.id}")
    assert "Delivered" in page.text and "HTTP 200" in page.text and order["number"] in page.text
    assert "Delivered 1" in (await admin.get("/admin/webhooks")).text


@pytest.mark.frozen_time("2026-05-01T09:00+08:00")
async def test_a_receiver_that_fails_first_gets_the_event_once_it_recovers(setup, settings, frozen_time):
    east, _west, admin, api = setup
    receiver = Receiver(fail_next=2)
    subscription, secret = await subscribe(admin, receiver, east)
    await complaint(api, estate=east)
    async with running(receiver):
        assert (await deliver_pending(settings)).retrying == 1
        delivery = await WebhookDelivery.get(subscription_id=subscription.id)
        assert delivery.state == DeliveryState.PENDING and delivery.attempts == 1 and delivery.response_status == 503
        assert delivery.response_body == "busy" and "503" in delivery.last_error
        assert delivery.next_attempt_at > frozen_time.now()
        assert (await deliver_pending(settings)).attempted == 0  # not due yet: backoff
        frozen_time.tick(seconds=30)
        assert (await deliver_pending(settings)).retrying == 1
        frozen_time.tick(seconds=60)
        assert (await deliver_pending(settings)).delivered == 1
        frozen_time.tick(hours=1)
        assert (await deliver_pending(settings)).attempted == 0
    assert receiver.answered == [503, 503, 200]
    assert len({r.headers["courtyard-event-id"] for r in receiver.received}) == 1
    assert all(verify(secret, r.body, r.headers["courtyard-signature"]) for r in receiver.received)
    await delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED and delivery.attempts == 3
    page = await admin.get(f"/admin/webhooks/{subscription.id}")
    assert "Delivered" in page.text


@pytest.mark.frozen_time("2026-05-01T09:00+08:00")
async def test_a_subscriber_that_stays_down_loses_nothing_and_an_admin_replays(setup, settings, frozen_time):
    east, _west, admin, api = setup
    settings.data["webhooks"]["max_attempts"] = 3
    receiver = Receiver()  # not started yet: connections are refused
    subscription, secret = await subscribe(admin, receiver, east)
    order = await complaint(api, estate=east)
    for _ in range(3):
        await deliver_pending(settings)
        frozen_time.tick(hours=6)
    delivery = await WebhookDelivery.get(subscription_id=subscription.id)
    assert delivery.state == DeliveryState.FAILED and delivery.attempts == 3 and delivery.response_status is None
    assert "Connect" in delivery.last_error
    page = await admin.get(f"/admin/webhooks/{subscription.id}?state=failed")
    assert "Replay all failed (1)" in page.text

    response = await admin.form(f"/admin/webhooks/{subscription.id}/replay-failed", {})
    assert response.status_code == 303
    async with running(receiver):
        assert (await deliver_pending(settings)).delivered == 1
    got = receiver.received[0]
    assert got.json["id"] == delivery.event_id and got.json["data"]["work_order_id"] == order["id"]
    assert verify(secret, got.body, got.headers["courtyard-signature"])
    replay = await WebhookDelivery.get(replay_of_id=delivery.id)
    assert replay.state == DeliveryState.DELIVERED and replay.payload == delivery.payload

    # A delivered one can be replayed too (the receiver lost it), from its page.
    response = await admin.form(f"/admin/webhooks/deliveries/{replay.id}/replay", {})
    assert response.status_code == 303
    async with running(receiver):
        assert (await deliver_pending(settings)).delivered == 1
    assert [r.json["id"] for r in receiver.received] == [delivery.event_id] * 2
    text = (await admin.get(f"/admin/webhooks/deliveries/{replay.id}")).text
    assert "Replayed as" in text and "Replay of" in text


async def test_a_change_that_rolls_back_sends_nothing(setup):
    east, _west, admin, _api = setup
    subscription, _secret = await subscribe(admin, Receiver(), east, events=["handover.keys_returned"])
    with pytest.raises(RuntimeError):
        async with transaction():
            await emit("handover.keys_returned", east.project.id, keyset_id=1)
            assert await WebhookDelivery.filter(subscription_id=subscription.id).count() == 1
            raise RuntimeError("the change failed")
    assert await WebhookDelivery.all().count() == 0


async def test_a_switched_off_subscription_gets_no_new_events_and_keeps_its_waiting_ones(setup, settings):
    east, _west, admin, api = setup
    receiver = Receiver()
    subscription, _secret = await subscribe(admin, receiver, east)
    await complaint(api, estate=east)
    response = await admin.form(f"/admin/webhooks/{subscription.id}", {
        "name": "Finance system", "url": receiver.url, "events": ["hotline.complaint_received"],
        "projects": str(east.project.id),
    })
    assert response.status_code == 303
    await complaint(api, estate=east)
    assert await WebhookDelivery.filter(subscription_id=subscription.id).count() == 1
    async with running(receiver):
        assert (await deliver_pending(settings)).attempted == 0
        await admin.form(f"/admin/webhooks/{subscription.id}", {
            "name": "Finance system", "url": receiver.url, "events": ["hotline.complaint_received"],
            "projects": str(east.project.id), "is_active": "1",
        })
        assert (await deliver_pending(settings)).delivered == 1


async def test_the_form_refuses_what_cannot_work(setup):
    _east, _west, admin, _api = setup
    response = await admin.form("/admin/webhooks/new", {"name": "", "url": "ftp://x", "events": "no.such_event"})
    assert response.status_code == 422
    for message in ("Name the subscriber", "starting with http:// or https://", "Choose at least one event",
                    "Choose at least one estate"):
        assert message in response.text
    assert await WebhookSubscription.all().count() == 0


async def test_the_delivery_job_and_the_test_event(setup, run_job):
    east, _west, admin, _api = setup
    receiver = Receiver()
    subscription, secret = await subscribe(admin, receiver, east)
    response = await admin.form(f"/admin/webhooks/{subscription.id}/test", {})
    assert response.status_code == 303
    async with running(receiver):
        run = await run_job("core.deliver_webhooks")
    assert "Delivered 1" in run.log
    got = receiver.received[0]
    assert got.json["event"] == "core.ping" and verify(secret, got.body, got.headers["courtyard-signature"])

    # A new secret is shown once and signs from then on.
    response = await admin.form(f"/admin/webhooks/{subscription.id}/secret", {})
    new_secret = re.search(r'value="(whsec_[A-Za-z0-9_\-]+)"', response.text).group(1)
    assert new_secret != secret
    await webhooks.send_test(await WebhookSubscription.get(id=subscription.id))
    async with running(receiver):
        await run_job("core.deliver_webhooks")
    assert verify(new_secret, receiver.received[1].body, receiver.received[1].headers["courtyard-signature"])


async def test_only_head_office_admins_manage_webhooks(setup, login_as):
    east, _west, _admin, _api = setup
    estate_admin = await login_as("admin", east.project)
    assert (await estate_admin.get("/admin/webhooks")).status_code == 403
    assert (await estate_admin.form("/admin/webhooks/new", {"name": "x"})).status_code == 403


async def test_escalations_and_key_movements_reach_subscribers(setup):
    import json
    from datetime import timedelta

    from core.clock import now
    from core.scope import unscoped
    from core.testing import make_user
    from plugins.complaints.jobs import escalate
    from plugins.complaints.models import Case, Step
    from plugins.handover import services as keys
    from plugins.handover.models import HolderKind

    east, _west, admin, api = setup
    subscription, _secret = await subscribe(
        admin, Receiver(), east, events=["complaints.escalated", "handover.key_checked_out", "handover.keys_returned"]
    )
    order = await complaint(api, estate=east)  # the complaints module opens a case from it
    keeper = await make_user("keeper", "staff", east.project)
    with unscoped():
        case = await Case.get(work_order_id=order["id"])
        await escalate(case, 1, east.project, now(), Step.ORDER[1])
        keyset = await keys.register_keyset(east.unit, tag="K-1502", kind="entrance", count=2, slot="A3", keeper=keeper)
        await keys.check_out(keyset, holder_kind=HolderKind.OWNER, holder=east.customer, purpose="装修",
                             due_at=now() + timedelta(days=1), by=keeper)
        await keys.check_in_keys(keyset, returned_by="业主", receiver=keeper, sealed=True)
    sent = {d.event: json.loads(d.payload)["data"] for d in await WebhookDelivery.filter(subscription_id=subscription.id)}
    assert set(sent) == {"complaints.escalated", "handover.key_checked_out", "handover.keys_returned"}
    assert sent["complaints.escalated"]["case_id"] == case.id and sent["complaints.escalated"]["level"] == 1
    assert sent["handover.key_checked_out"]["tag"] == "K-1502" and sent["handover.key_checked_out"]["holder_kind"] == "owner"
    assert sent["handover.keys_returned"]["returned_by"] == "业主" and sent["handover.keys_returned"]["sealed"] is True
