"""The fees JSON API: bills, a unit's balance, payments posted by an online channel or the ERP."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from core.models import ProjectModule
from core.scope import unscoped
from tests.fees_helpers import MAY, fee_estate

NOW = datetime(2026, 6, 2, 2, 0, tzinfo=timezone.utc)  # June 2nd: May's bills (due May 15th) are overdue
BASE = "/api/v1/projects/{code}/fees"

pytestmark = pytest.mark.frozen_time(NOW.isoformat())


@pytest.fixture
async def estates(app, host, frozen_time):
    from plugins.fees.billing import run_bill_run

    east, west = await fee_estate(host, "EAST", units=3), await fee_estate(host, "WEST", units=1)
    for estate in (east, west):
        await run_bill_run(estate[0], MAY)
    return east, west


async def bill_of(unit):
    from plugins.fees.models import Bill

    with unscoped():
        return await Bill.get(unit_id=unit.id, period=MAY)


async def test_a_payment_posted_through_the_api_pays_the_bill_and_is_posted_once(estates, api_client):
    import json

    from core.webhooks import WebhookDelivery, WebhookSubscription
    from plugins.fees.models import Payment

    (project, homes, _space, _items, _cashier, _manager), _west = estates
    await WebhookSubscription.create(
        name="ERP", url="http://127.0.0.1:9/hook", events=["fees.payment_posted"], project_ids=[project.id],
        secret="whsec_test", created_at=NOW,
    )
    api = await api_client([project], ["fees:write"], name="WeChat Pay")
    url = BASE.format(code="EAST")
    bill = await bill_of(homes[0])  # 88.50 m² × 2.35 + garbage 10 = 217.98
    before = (await api.get(f"{url}/units/{homes[0].id}/balance")).json()
    assert (before["outstanding"], before["overdue"], before["credit"], before["open_bills"]) == ("217.98", "217.98", "0.00", 1)
    assert before["last_payment"] is None

    body = {"unit_id": homes[0].id, "amount": "300.00", "method": "online", "reference": "WX4200001234"}
    headers = {"Idempotency-Key": "wx-4200001234"}
    first = await api.post(f"{url}/payments", json=body, headers=headers)
    assert first.status_code == 201, first.text
    paid = first.json()
    assert (paid["receipt_number"], paid["amount"], paid["method"], paid["reference"]) == (
        "R00000001", "300.00", "online", "WX4200001234")
    assert paid["allocations"] == [{"bill_id": bill.id, "bill_number": bill.number, "amount": "217.98"}]
    assert paid["unallocated"] == "82.02" and paid["reversed"] is False
    # The channel retries (a timeout): the same answer, no second payment, no receipt number used up.
    again = await api.post(f"{url}/payments", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == paid["id"]
    with unscoped():
        assert await Payment.filter(project_id=project.id).count() == 1
        posted = [json.loads(d)["data"] for d in
                  await WebhookDelivery.filter(event="fees.payment_posted").order_by("id").values_list("payload", flat=True)]
    assert [e["receipt_number"] for e in posted] == ["R00000001"]
    assert posted[0]["bills"] == [{"bill_id": bill.id, "amount": "217.98"}]

    shown = (await api.get(f"{url}/bills/{bill.id}")).json()
    assert (shown["status"], shown["paid"], shown["balance"]) == ("paid", "217.98", "0.00")
    assert [(line["item"]["code"], line["amount"]) for line in shown["lines"]] == [("PROP", "207.98"), ("GARB", "10.00")]
    assert [(p["receipt_number"], p["amount"]) for p in shown["payments"]] == [("R00000001", "217.98")]
    after = (await api.get(f"{url}/units/{homes[0].id}/balance")).json()
    assert (after["outstanding"], after["overdue"], after["credit"], after["balance"]) == ("0.00", "0.00", "82.02", "-82.02")
    assert after["last_payment"]["receipt_number"] == "R00000001"
    receipt = (await api.get(f"{url}/payments/{paid['id']}")).json()
    assert receipt == paid
    # The receipt names the integration as cashier; its stand-in cannot log in.
    with unscoped():
        payment = await Payment.get(id=paid["id"]).prefetch_related("cashier")
    assert str(payment.cashier) == "WeChat Pay" and not payment.cashier.is_active
    # A new payment (new key) takes the next number: none was lost to the retry.
    other = await api.post(f"{url}/payments", json={**body, "unit_id": homes[1].id, "amount": "10"},
                           headers={"Idempotency-Key": "wx-2"})
    assert other.json()["receipt_number"] == "R00000002"


async def test_payments_to_chosen_bills_and_retries_after_the_key_is_forgotten(estates, api_client):
    from core.rest import ApiIdempotencyKey
    from plugins.fees.models import Payment

    (project, homes, _space, _items, _cashier, _manager), _west = estates
    api = await api_client([project], ["fees:write"])
    url = BASE.format(code="EAST")
    bill = await bill_of(homes[1])
    body = {"unit_id": homes[1].id, "amount": "17.98", "bill_ids": [bill.id], "method": "transfer"}
    answer = await api.post(f"{url}/payments", json=body, headers={"Idempotency-Key": "erp-1"})
    assert answer.status_code == 201
    assert answer.json()["allocations"][0]["amount"] == "17.98"
    listed = (await api.get(f"{url}/bills", params={"unit_id": homes[1].id})).json()["items"]
    assert [(b["id"], b["status"], b["balance"]) for b in listed] == [(bill.id, "open", "200.00")]
    reused = await api.post(f"{url}/payments", json={"unit_id": homes[1].id, "amount": "1.00"},
                            headers={"Idempotency-Key": "erp-1"})
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    # Days later core has forgotten the key (api.idempotency_hours): the payment itself still remembers it.
    await ApiIdempotencyKey.all().delete()
    late = await api.post(f"{url}/payments", json=body, headers={"Idempotency-Key": "erp-1"})
    assert late.status_code == 201 and late.json()["id"] == answer.json()["id"]
    other = await api.post(f"{url}/payments", json={**body, "amount": "ten"}, headers={"Idempotency-Key": "erp-1"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    with unscoped():
        assert await Payment.filter(project_id=project.id).count() == 1


async def test_updated_since_returns_only_the_bills_and_payments_that_changed(estates, api_client, frozen_time):
    from plugins.fees.models import Payment
    from plugins.fees.payments import reverse_payment

    (project, homes, space, _items, _cashier, manager), _west = estates
    api = await api_client([project], ["fees:write"])
    url = BASE.format(code="EAST")
    everything = (await api.get(f"{url}/bills")).json()
    assert len(everything["items"]) == 4 and all(b["updated_at"] for b in everything["items"])  # 3 homes and a parking space

    frozen_time.tick(minutes=5)
    last_sync = frozen_time.now()
    frozen_time.tick(minutes=5)
    first = (await api.post(f"{url}/payments", json={"unit_id": homes[2].id, "amount": "50.00"})).json()
    changed = (await api.get(f"{url}/bills", params={"updated_since": last_sync.isoformat()})).json()["items"]
    assert [(b["unit_id"], b["paid"]) for b in changed] == [(homes[2].id, "50.00")]
    payments = (await api.get(f"{url}/payments", params={"updated_since": last_sync.isoformat()})).json()["items"]
    assert [p["id"] for p in payments] == [first["id"]]

    # A reversal changes the original payment (now reversed) and the bill (open again, nothing paid).
    frozen_time.tick(minutes=5)
    second_sync = frozen_time.now()
    frozen_time.tick(minutes=5)
    with unscoped():
        original = await Payment.get(id=first["id"])
        reversal = await reverse_payment(original, "金额录错", approver_id=manager.id)
    payments = (await api.get(f"{url}/payments", params={"updated_since": second_sync.isoformat()})).json()["items"]
    assert [(p["id"], p["reversed"], p["reversed_by_id"]) for p in payments] == [
        (first["id"], True, reversal.id), (reversal.id, False, None)]
    assert payments[1]["kind"] == "reversal" and payments[1]["amount"] == "-50.00"
    changed = (await api.get(f"{url}/bills", params={"updated_since": second_sync.isoformat()})).json()["items"]
    assert [(b["unit_id"], b["paid"], b["status"]) for b in changed] == [(homes[2].id, "0.00", "open")]
    frozen_time.tick(seconds=1)  # updated_since includes changes at that very instant
    unchanged = (await api.get(f"{url}/bills", params={"updated_since": frozen_time.now().isoformat()})).json()
    assert unchanged == {"items": [], "next_cursor": None}


async def test_bill_filters(estates, api_client):
    (project, homes, space, _items, _cashier, _manager), _west = estates
    api = await api_client([project], ["fees:read"])
    url = BASE.format(code="EAST")
    may = (await api.get(f"{url}/bills", params={"period": "2026-05", "status": "open", "limit": 3})).json()
    assert len(may["items"]) == 3 and may["next_cursor"]
    rest = (await api.get(f"{url}/bills", params={"period": "2026-05", "status": "open", "cursor": may["next_cursor"]})).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert {b["unit_code"] for b in may["items"] + rest["items"]} == {"1-1-101", "1-1-102", "1-1-103", "P-001"}
    assert (await api.get(f"{url}/bills", params={"period": "2026-04"})).json()["items"] == []
    assert (await api.get(f"{url}/bills", params={"status": "paid"})).json()["items"] == []
    parking = (await api.get(f"{url}/bills", params={"unit_id": space.id})).json()["items"]
    assert [(b["total"], b["period"], b["due_date"]) for b in parking] == [("300.00", "2026-05", "2026-05-15")]
    bad = await api.get(f"{url}/bills", params={"period": "May", "status": "late"})
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["error"]["fields"]} == {"period", "status"}


@pytest.mark.parametrize("amount, message", [
    ("0", "Enter an amount greater than zero."),
    ("-5.00", "Enter an amount greater than zero."),
    ("10.005", "Amounts have at most 2 decimals (fen)."),
    ("ten yuan", "Enter a number, e.g. 1280.50."),
])
async def test_a_bad_amount_is_refused_naming_the_field(estates, api_client, amount, message):
    from plugins.fees.models import Payment

    (project, homes, _space, _items, _cashier, _manager), _west = estates
    api = await api_client([project], ["fees:write"])
    api.headers["Accept-Language"] = "en"
    answer = await api.post(BASE.format(code="EAST") + "/payments", json={"unit_id": homes[0].id, "amount": amount},
                            headers={"Idempotency-Key": "k"})
    assert answer.status_code == 422
    assert [(f["field"], f["message"]) for f in answer.json()["error"]["fields"]] == [("amount", message)]
    with unscoped():
        assert not await Payment.filter(project_id=project.id).exists()


async def test_units_and_bills_must_be_of_the_estate_and_unit(estates, api_client):
    (project, homes, _space, _items, _cashier, _manager), (_wp, west_homes, *_rest) = estates
    api = await api_client([project], ["fees:write"])
    api.headers["Accept-Language"] = "zh-CN"
    url = BASE.format(code="EAST") + "/payments"
    other_estate = await api.post(url, json={"unit_id": west_homes[0].id, "amount": "10"})
    assert other_estate.status_code == 422
    assert [f["field"] for f in other_estate.json()["error"]["fields"]] == ["unit_id"]
    assert other_estate.json()["error"]["message"] != "The request is not valid."  # in Chinese
    neighbour = await bill_of(homes[1])
    other_unit = await api.post(url, json={"unit_id": homes[0].id, "amount": "10", "bill_ids": [neighbour.id]})
    assert [f["field"] for f in other_unit.json()["error"]["fields"]] == ["bill_ids"]
    # A refused post used no receipt number.
    ok = await api.post(url, json={"unit_id": homes[0].id, "amount": "10"})
    assert ok.json()["receipt_number"] == "R00000001"


async def test_another_estate_a_module_switched_off_and_a_read_only_token(estates, api_client):
    from plugins.fees.models import Payment
    from plugins.fees.payments import post_payment

    (project, homes, _space, _items, _cashier, _manager), (west, west_homes, _s, _i, west_cashier, _m) = estates
    with unscoped():
        west_payment, _created = await post_payment(
            project_id=west.id, unit_id=west_homes[0].id, amount="5", method="cash", cashier_id=west_cashier.id,
            idempotency_key="west-1",
        )
    west_bill = await bill_of(west_homes[0])
    api = await api_client([project], ["fees:write"])
    url = BASE.format(code="EAST")
    for path in (f"/bills/{west_bill.id}", f"/payments/{west_payment.id}", f"/units/{west_homes[0].id}/balance"):
        answer = await api.get(url + path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", path
    assert all(b["unit_id"] != west_homes[0].id for b in (await api.get(url + "/bills")).json()["items"])
    assert (await api.get(BASE.format(code="WEST") + "/bills")).status_code == 404

    reader = await api_client([project], ["fees:read"])
    refused = await reader.post(url + "/payments", json={"unit_id": homes[0].id, "amount": "10"})
    assert refused.status_code == 403 and refused.json()["error"]["required_scope"] == "fees:write"
    assert (await reader.get(url + "/payments")).status_code == 200
    with unscoped():
        assert not await Payment.filter(project_id=project.id).exists()
        await ProjectModule.filter(project_id=project.id, module="fees").update(enabled=False)
    assert (await api.get(url + "/bills")).status_code == 404
    assert (await api.get(f"{url}/units/{homes[0].id}/balance")).status_code == 404
