"""The fees pages as cashiers and managers use them."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.fees_helpers import fee_estate

MINUTES = itertools.count()


@pytest.fixture
async def estate(app, host):
    return await fee_estate(host)


def form_key(html: str) -> str:
    return re.search(r'name="key" value="([^"]+)"', html).group(1)


async def bill_run(client, project, period="2026-05"):
    from core.jobs import run_job_now

    response = await client.form(f"/p/{project.code}/fees/runs", {"period": period})
    assert response.status_code == 303, response.text[:500]
    # Each manual run is its own slot: a frozen clock a minute later each time.
    when = datetime(2026, 5, 3, 0, next(MINUTES), tzinfo=timezone.utc)
    run = await run_job_now("fees.bill_run", project.id, clock=lambda: when)
    assert run.state == "done", run.error
    return response


async def test_manager_sets_rates_and_an_overlapping_period_is_refused(client, estate):
    from plugins.fees.models import FeeRate

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    url = f"/p/{project.code}/fees/setup/rates"
    before = await FeeRate.all().count()
    overlap = await client.form(url, {"item": items["prop"].id, "use": "residential", "price": "2.80", "valid_from": "2026-07-01"})
    assert overlap.status_code == 422 and "Overlaps the rate valid from 2025-01-01" in overlap.text
    bad = await client.form(url, {"item": items["prop"].id, "use": "commercial", "price": "abc", "valid_from": "2026-07-01"})
    assert bad.status_code == 422 and "Enter a number" in bad.text
    assert await FeeRate.all().count() == before
    ok = await client.form(url, {"item": items["prop"].id, "use": "commercial", "price": "5.8", "valid_from": "2026-07-01"})
    assert ok.status_code == 303
    page = await client.get(f"/p/{project.code}/fees/setup")
    assert "5.8000" in page.text
    await client.login(cashier.username)
    assert (await client.get(f"/p/{project.code}/fees/setup")).status_code == 403


async def test_bill_run_from_the_page_twice_makes_no_duplicates(client, estate):
    from plugins.fees.models import Bill

    project, *_rest, manager = estate
    await client.login(manager.username)
    await bill_run(client, project)
    assert await Bill.filter(project_id=project.id).count() == 6
    await bill_run(client, project)
    assert await Bill.filter(project_id=project.id).count() == 6
    page = await client.get(f"/p/{project.code}/fees/runs")
    assert "2026-05" in page.text and "6 / 6" in page.text
    bad = await client.form(f"/p/{project.code}/fees/runs", {"period": "May"})
    assert bad.status_code == 422 and "YYYY-MM" in bad.text


async def test_bill_run_for_a_past_month_bills_that_month_only(client, estate):
    from plugins.fees.models import Bill, BillRun

    project, *_rest, manager = estate
    await client.login(manager.username)
    await bill_run(client, project, period="2026-03")  # the clock says May
    assert {b.period.isoformat() for b in await Bill.filter(project_id=project.id)} == {"2026-03-01"}
    assert [r.period.isoformat() for r in await BillRun.filter(project_id=project.id)] == ["2026-03-01"]


async def test_cashier_takes_partial_payment_prints_receipt_and_manager_reverses(client, make_client, estate):
    from plugins.fees.models import Bill, Payment

    project, homes, space, items, cashier, manager = estate
    boss = make_client()
    await boss.login(manager.username)
    await bill_run(boss, project)
    await client.login(cashier.username)
    unit_url = f"/p/{project.code}/fees/units/{homes[0].id}"
    page = await client.get(unit_url)
    assert page.status_code == 200 and "¥217.98" in page.text
    key = form_key(page.text)

    for amount, message in (("-1", "greater than zero"), ("12.345", "at most 2 decimals"), ("ten", "Enter a number")):
        bad = await client.form(unit_url + "/payments", {"amount": amount, "method": "cash", "key": key})
        assert bad.status_code == 422 and message in bad.text
    assert await Payment.all().count() == 0

    data = {"amount": "100.00", "method": "transfer", "reference": "TX-1", "key": key}
    posted = await client.form(unit_url + "/payments", data)
    assert posted.status_code == 303
    again = await client.form(unit_url + "/payments", data)  # double click / resubmitted form
    assert again.status_code == 303 and again.headers["location"] == posted.headers["location"]
    assert await Payment.all().count() == 1
    receipt = await client.get(posted.headers["location"])
    assert "R00000001" in receipt.text and "¥100.00" in receipt.text and "Reverse this payment" not in receipt.text
    bill = await Bill.get(unit_id=homes[0].id)
    assert (bill.paid, bill.balance) == (Decimal("100.00"), Decimal("117.98"))

    payment = await Payment.get()
    assert (await client.form(f"/p/{project.code}/fees/payments/{payment.id}/reverse", {"reason": "x"})).status_code == 403
    missing = await boss.form(f"/p/{project.code}/fees/payments/{payment.id}/reverse", {"reason": ""})
    assert missing.status_code == 422 and "Say why" in missing.text
    reversed_ = await boss.form(f"/p/{project.code}/fees/payments/{payment.id}/reverse", {"reason": "录错户"})
    assert reversed_.status_code == 303
    bill = await Bill.get(unit_id=homes[0].id)
    assert (bill.paid, bill.status) == (Decimal("0.00"), "open")
    original = await boss.get(f"/p/{project.code}/fees/payments/{payment.id}")
    assert "R00000002" in original.text and "录错户" in original.text


async def test_paying_a_void_bill_is_refused(client, estate):
    from plugins.fees.models import Bill, Payment

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    await bill_run(client, project)
    bill = await Bill.get(unit_id=homes[1].id)
    voided = await client.form(f"/p/{project.code}/fees/bills/{bill.id}/void", {"reason": "重复"})
    assert voided.status_code == 303
    unit_url = f"/p/{project.code}/fees/units/{homes[1].id}"
    refused = await client.form(unit_url + "/payments", {"amount": "10", "method": "cash", "key": "k", "bills": str(bill.id)})
    assert refused.status_code == 422 and "void" in refused.text
    assert await Payment.all().count() == 0


async def test_lists_reports_search_dashboard_and_customer_page(client, estate):
    from core.models import CustomerUnit
    from tests.test_fees_payments import pay

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    await bill_run(client, project)
    await pay(project, homes[0], "217.98", cashier, "p1")
    base = f"/p/{project.code}/fees/"
    overview = await client.get(base + "?period=2026-05")
    assert overview.status_code == 200 and "Collection rate" in overview.text and "data-chart" in overview.text
    assert "15.7%" in overview.text  # 217.98 / 1389.90
    export = await client.get(base + "?period=2026-05&export=xlsx")
    assert export.status_code == 200 and export.content[:2] == b"PK"
    arrears = await client.get(base + "arrears?export=xlsx")
    assert arrears.status_code == 200 and arrears.content[:2] == b"PK"
    bills = await client.get(base + "bills?status=open")
    assert bills.status_code == 200 and "1-1-102" in bills.text and "1-1-101" not in bills.text
    found = await client.get("/search?q=R00000001")
    assert f"{base}payments/" in found.text
    # A serial finds the bill and the receipt with that number; a full bill number finds its bill.
    from plugins.fees.models import Bill

    first = await Bill.get(number="B202605-000001")
    by_serial = await client.get("/search?q=000001")
    assert f"{base}bills/{first.id}" in by_serial.text and f"{base}payments/" in by_serial.text
    assert f"{base}bills/{first.id}" in (await client.get("/search?q=b202605-1")).text
    assert f"{base}bills/" not in (await client.get("/search?q=B202604-000001")).text
    dashboard = await client.get(f"/p/{project.code}/")
    assert "Collection rate this month" in dashboard.text and "Arrears by ageing" in dashboard.text
    link = await CustomerUnit.get(unit_id=homes[1].id)
    customer = await client.get(f"/p/{project.code}/customers/{link.customer_id}")
    assert "Balance due" in customer.text and "¥217.98" in customer.text
    cash = await client.get(base + "cash?day=" + datetime.now(timezone.utc).date().isoformat())
    assert cash.status_code == 200
    statement = await client.get(f"{base}units/{homes[0].id}")
    assert "R00000001" in statement.text


async def test_dunning_job_with_frozen_time(client, estate):
    from core.jobs import run_job_now
    from core.outbox import OutboxMessage
    from plugins.fees.dunning import ensure_default_steps
    from plugins.fees.models import DunningRecord

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    await bill_run(client, project)
    await ensure_default_steps(project.id)
    # 2026-05-30 09:00 in Shanghai: bills due 05-15 are 15 days overdue.
    run = await run_job_now("fees.dunning", project.id, clock=lambda: datetime(2026, 5, 30, 1, 0, tzinfo=timezone.utc))
    assert run.state == "done", run.error
    assert await DunningRecord.filter(action="email").count() == 6
    assert await OutboxMessage.filter(template="fees/reminder").count() == 5
    again = await run_job_now("fees.dunning", project.id, clock=lambda: datetime(2026, 5, 31, 1, 0, tzinfo=timezone.utc))
    assert again.state == "done" and await DunningRecord.all().count() == 6


async def test_every_fees_page_renders_for_a_read_only_user(client, make_client, estate):
    from core.testing import make_user
    from plugins.fees.models import Bill
    from tests.test_fees_payments import pay

    project, homes, space, items, cashier, manager = estate
    boss = make_client()
    await boss.login(manager.username)
    await bill_run(boss, project)
    payment = await pay(project, homes[0], "50", cashier, "p1")
    bill = await Bill.get(unit_id=homes[0].id)
    await make_user("viewer", "readonly", project)
    await client.login("viewer")
    base = f"/p/{project.code}/fees/"
    for path in ("", "bills", "arrears", "payments", f"bills/{bill.id}", f"bills/{bill.id}/letter",
                 f"payments/{payment.id}", f"units/{homes[0].id}", "cash"):
        page = await client.get(base + path)
        assert page.status_code == 200, (path, page.text[:300])
        assert "Take a payment" not in page.text, path
    for path in ("runs", "setup"):
        assert (await client.get(base + path)).status_code == 403
    assert (await client.form(f"{base}units/{homes[0].id}/payments", {"amount": "1", "method": "cash", "key": "x"})).status_code == 403
