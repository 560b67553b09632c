"""Month-end at the cashier's desk: a bill run with its progress bar, a payment, the receipt.

SQLite only (like test_work_orders.py): tests/test_fees_*.py cover billing on both databases.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from core.api import unscoped
from core.models import User
from core.testing import PASSWORD, LiveServer
from tests.browser.conftest import BROWSER, login, screenshot
from tests.fees_helpers import fee_estate

pytestmark = BROWSER
SQLITE_ONLY = True


@pytest.fixture
async def estate(app, host):
    with unscoped():
        project, homes, space, items, cashier, manager = await fee_estate(host)
        await User.filter(id__in=[cashier.id, manager.id]).update(locale="zh_CN")  # the Chinese UI
    return {"project": project, "home": homes[0], "cashier": cashier, "manager": manager}


@pytest.fixture
async def server_with_worker(settings, plugin_modules, app):
    """`run.py serve` with its embedded worker: a queued bill run runs in that process."""
    server = LiveServer(settings, plugin_modules, {"COURTYARD_SERVER_EMBEDDED_WORKER": "true"})
    try:
        yield await server.wait()
    finally:
        server.stop()


async def test_bill_run_shows_progress_then_cashier_takes_a_payment_and_prints_the_receipt(
    estate, server_with_worker, new_page
):
    base = server_with_worker.url
    boss = await new_page()
    await login(boss, base, estate["manager"].username, PASSWORD)
    await boss.goto(f"{base}/p/EAST/fees/runs")
    await boss.locator("input[name=period]").fill("2026-05")
    await boss.locator("form[action$='/fees/runs'] button[type=submit]").click()
    row = boss.locator("tr[id^=run-]", has_text="2026-05")
    await expect(row.locator("[role=progressbar]")).to_be_visible()
    # The row polls the run while it is queued/running, until the worker has billed every unit.
    await expect(row.locator(".badge-done")).to_be_visible(timeout=30_000)
    await expect(row.locator(".progress-label")).to_contain_text("6 / 6 · 100%")
    await expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "6")
    await screenshot(boss, "bill-run")

    desk = await new_page()
    await login(desk, base, estate["cashier"].username, PASSWORD)
    await desk.goto(f"{base}/p/EAST/fees/units/{estate['home'].id}")
    await expect(desk.locator("main")).to_contain_text("¥217.98")
    payment = desk.locator("form[action$='/payments']")
    await payment.locator("input[name=amount]").fill("100.00")
    await payment.locator("select[name=method]").select_option("cash")
    await payment.locator("button[type=submit]").click()
    await expect(desk).to_have_url(f"{base}/p/EAST/fees/payments/1")
    await expect(desk.locator("main")).to_contain_text("R00000001")
    await expect(desk.locator("main")).to_contain_text("¥100.00")
    current = desk.locator(".sidebar a.nav-link.active")  # only the receipts entry is highlighted
    await expect(current).to_have_count(1)
    await expect(current).to_have_attribute("href", "/p/EAST/fees/payments")
    await screenshot(desk, "receipt")
    await desk.goto(f"{base}/p/EAST/fees/units/{estate['home'].id}")
    await expect(desk.locator("main")).to_contain_text("¥117.98")  # what is still owed
