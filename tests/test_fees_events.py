"""Domain events of fees, as an integration receives them through a webhook subscription."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tests.fees_helpers import MAY, fee_estate
from tests.test_fees_http import bill_run, form_key

NOW = datetime(2026, 5, 1, 2, 0, tzinfo=timezone.utc)
FEES_EVENTS = ("fees.bill_issued", "fees.bill_run_completed", "fees.payment_posted", "fees.payment_reversed")


@pytest.fixture
async def estate(app, host):
    from core.webhooks import WebhookSubscription

    estate = await fee_estate(host)
    await WebhookSubscription.create(
        name="ERP", url="http://127.0.0.1:9/hook", events=list(FEES_EVENTS), project_ids=[estate[0].id],
        secret="whsec_test", created_at=NOW,
    )
    return estate


async def received(event: str) -> list[dict]:
    """The `data` of each delivery queued for `event`, oldest first."""
    from core.webhooks import WebhookDelivery

    return [json.loads(d.payload)["data"] for d in await WebhookDelivery.filter(event=event).order_by("id")]


async def test_payments_and_reversals_are_announced_once_with_amounts_as_text(client, make_client, estate):
    from core.models import CustomerUnit
    from plugins.fees.models import Bill, Payment

    project, homes, space, items, cashier, manager = estate
    boss = make_client()
    await boss.login(manager.username)
    await bill_run(boss, project)
    await client.login(cashier.username)
    unit_url = f"/p/{project.code}/fees/units/{homes[0].id}"
    key = form_key((await client.get(unit_url)).text)
    bad = await client.form(unit_url + "/payments", {"amount": "ten", "method": "cash", "key": key})
    assert bad.status_code == 422 and await received("fees.payment_posted") == []

    data = {"amount": "100.00", "method": "transfer", "reference": "TX-1", "key": key}
    assert (await client.form(unit_url + "/payments", data)).status_code == 303
    assert (await client.form(unit_url + "/payments", data)).status_code == 303  # resubmitted: recorded once
    payment = await Payment.get()
    bill = await Bill.get(unit_id=homes[0].id)
    owner = await CustomerUnit.get(unit_id=homes[0].id)
    [posted] = await received("fees.payment_posted")
    assert posted == {
        "payment_id": payment.id, "receipt_number": "R00000001", "unit_id": homes[0].id, "unit_code": "1-1-101",
        "customer_id": owner.customer_id, "amount": "100.00", "method": "transfer", "reference": "TX-1",
        "posted_at": payment.received_at.isoformat(), "bills": [{"bill_id": bill.id, "amount": "100.00"}],
    }

    refused = await client.form(f"/p/{project.code}/fees/payments/{payment.id}/reverse", {"reason": "录错"})
    assert refused.status_code == 403 and await received("fees.payment_reversed") == []
    assert (await boss.form(f"/p/{project.code}/fees/payments/{payment.id}/reverse", {"reason": "录错户"})).status_code == 303
    [reversed_] = await received("fees.payment_reversed")
    assert reversed_["receipt_number"] == "R00000002" and reversed_["amount"] == "-100.00"
    assert (reversed_["reverses_id"], reversed_["reverses_receipt"], reversed_["reason"]) == (payment.id, "R00000001", "录错户")
    assert reversed_["bills"] == [{"bill_id": bill.id, "amount": "-100.00"}]


async def test_a_bill_run_announces_each_bill_once_and_then_its_summary(client, estate):
    from plugins.fees.models import Bill

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    await bill_run(client, project)
    bills = {b.number: b for b in await Bill.filter(project_id=project.id)}
    issued = await received("fees.bill_issued")
    assert sorted(e["number"] for e in issued) == sorted(bills) and len(issued) == 6
    first = bills[issued[0]["number"]]
    assert issued[0] == {
        "bill_id": first.id, "number": first.number, "unit_id": first.unit_id, "customer_id": first.customer_id,
        "billed_as": "owner", "period": "2026-05", "total": str(first.total), "due_date": "2026-05-15",
        "issued_at": issued[0]["issued_at"],
    }
    [summary] = await received("fees.bill_run_completed")
    assert (summary["period"], summary["bills_created"], summary["bills"], summary["amount"], summary["units"]) == (
        "2026-05", 6, 6, "1389.90", 6)

    await bill_run(client, project)  # run again: nothing new to announce but the summary
    assert len(await received("fees.bill_issued")) == 6
    again = await received("fees.bill_run_completed")
    assert [s["bills_created"] for s in again] == [6, 0] and again[1]["amount"] == "1389.90"


async def test_a_run_resumed_after_a_crash_announces_each_bill_exactly_once(estate):
    from plugins.fees.billing import run_bill_run
    from plugins.fees.models import Bill

    project, *_rest = estate

    async def crash_on_second_chunk(done, total):
        if done > 2:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        await run_bill_run(project, MAY, progress=crash_on_second_chunk, chunk_size=2, now=NOW)
    assert len(await received("fees.bill_issued")) == 2 == await Bill.all().count()  # the crashed chunk sent nothing
    await run_bill_run(project, MAY, chunk_size=2, now=NOW)
    numbers = [e["number"] for e in await received("fees.bill_issued")]
    assert len(numbers) == len(set(numbers)) == 6 == await Bill.all().count()


async def test_fees_events_can_be_chosen_for_a_webhook(login_as, estate):
    admin = await login_as("admin", None)
    page = await admin.get("/admin/webhooks/new")
    assert page.status_code == 200
    for event in FEES_EVENTS:
        assert event in page.text
