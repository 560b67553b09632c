"""A create sent again with the same Idempotency-Key never creates twice, even when the retries race."""

from __future__ import annotations

import asyncio

from core.rest import ApiIdempotencyKey
from core.scope import unscoped
from tests.api_helpers import api_estate, order_body

ORDERS = "/api/v1/projects/EAST/hotline/work-orders"


async def order_count() -> int:
    from plugins.hotline.models import WorkOrder

    with unscoped():
        return await WorkOrder.all().count()


async def test_a_retried_create_is_answered_from_the_first_and_creates_once(app, host, api_client, outbox):
    east = await api_estate(host, "EAST")
    api = await api_client([east.project], ["hotline:write"])
    key = {"Idempotency-Key": "4f1e2d3c-order-1"}
    first = await api.post(ORDERS, json=order_body(east), headers=key)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = await api.post(ORDERS, json=order_body(east), headers=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await order_count() == 1
    # The customer was told once.
    assert len(await outbox.messages(to="owner-east@example.com")) == 1

    # Another key is another order; no key at all is another order every time.
    assert (await api.post(ORDERS, json=order_body(east), headers={"Idempotency-Key": "other"})).json()["id"] != first.json()["id"]
    await api.post(ORDERS, json=order_body(east))
    assert await order_count() == 3


async def test_the_same_key_with_another_body_is_refused(app, host, api_client):
    east = await api_estate(host, "EAST")
    api = await api_client([east.project], ["hotline:write"])
    key = {"Idempotency-Key": "k-1"}
    assert (await api.post(ORDERS, json=order_body(east), headers=key)).status_code == 201
    answer = await api.post(ORDERS, json=order_body(east, subject="另一件事"), headers=key)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "idempotency_key_reused"
    assert await order_count() == 1
    # Keys belong to their token: another integration may use the same string.
    other = await api_client([east.project], ["hotline:write"])
    assert (await other.post(ORDERS, json=order_body(east, subject="另一件事"), headers=key)).status_code == 201


async def test_a_refused_create_keeps_nothing_so_the_corrected_retry_works(app, host, api_client):
    east = await api_estate(host, "EAST")
    api = await api_client([east.project], ["hotline:write"])
    key = {"Idempotency-Key": "k-2"}
    refused = await api.post(ORDERS, json=order_body(east, category_id=999999), headers=key)
    assert refused.status_code == 422
    assert await ApiIdempotencyKey.all().count() == 0
    corrected = await api.post(ORDERS, json=order_body(east), headers=key)
    assert corrected.status_code == 201
    assert await order_count() == 1


async def test_retries_racing_each_other_create_once(app, host, api_client, make_client):
    east = await api_estate(host, "EAST")
    api = await api_client([east.project], ["hotline:write"])
    # Separate clients, as a client whose first attempt timed out opens a new connection.
    clients = [api] + [make_client() for _ in range(3)]
    for c in clients[1:]:
        c.headers["Authorization"] = api.headers["Authorization"]
    key = {"Idempotency-Key": "race-1"}
    answers = await asyncio.gather(*(c.post(ORDERS, json=order_body(east), headers=key) for c in clients))
    assert [a.status_code for a in answers] == [201] * len(clients)
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(1 for a in answers if a.headers.get("idempotent-replayed") == "true") == len(clients) - 1
    assert await order_count() == 1
