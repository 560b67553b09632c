"""Month-end at the cashier's desk: a bill run with its progress bar, a payment, the printed receipt."""

from __future__ import annotations

import re

from playwright.async_api import expect

from core.api import unscoped
from core.models import Project, User
from tests.browser.conftest import BROWSER, assert_fits, screenshot
from tests.fees_helpers import fee_estate

pytestmark = BROWSER


async def seed(host):
    """Five homes of 88.50 m² (property fee 2.35/m², garbage 10) and a parking space (300), each with an owner."""
    with unscoped():
        project, homes, space, items, cashier, manager = await fee_estate(host, "FEES")
        await Project.filter(id=project.id).update(name="滨江苑")
        await User.filter(id=cashier.id).update(locale="zh_CN", display_name="收银 小陈")
        await User.filter(id=manager.id).update(locale="zh_CN", display_name="财务主管 老吴")
    return {"home": homes[0].code, "cashier": cashier.username, "manager": manager.username}


async def test_bill_run_shows_progress_then_cashier_takes_a_payment_and_prints_the_receipt(desk, new_page):
    estate = await desk.seed(seed)
    shots = desk.screenshots
    base = f"{desk.url}/p/FEES/fees/"

    # The manager bills May; the embedded worker runs it while the page shows its progress.
    boss = await new_page(estate["manager"])
    await boss.goto(base + "runs")
    await boss.get_by_role("textbox", name="账期").fill("2026-05")
    await boss.get_by_role("button", name="开始出账").click()
    row = boss.locator("tr", has_text="2026-05")
    await expect(row.get_by_role("progressbar")).to_be_visible()
    # The row polls the run while it is queued/running, until the worker has billed every unit.
    await expect(row).to_contain_text("已完成", timeout=30_000)
    await expect(row).to_contain_text("6 / 6 · 100%")
    await expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "6")
    await assert_fits(boss)
    await screenshot(boss, "bill-run", shots)

    # The cashier opens the home's account by its code and takes ¥100 in cash.
    desk_page = await new_page(estate["cashier"])
    await desk_page.goto(base)
    await desk_page.get_by_role("textbox", name="房号").fill(estate["home"])
    await desk_page.get_by_role("button", name="打开房屋账户").click()
    await expect(desk_page.locator("main")).to_contain_text("2026-05 · ¥217.98")  # May's bill, open
    await assert_fits(desk_page)
    await screenshot(desk_page, "unit-account", shots)
    payment = desk_page.locator("form", has=desk_page.get_by_role("button", name="收款并打印收据"))
    await payment.get_by_role("textbox", name="金额（元）").fill("100.00")
    await payment.get_by_role("combobox", name="付款方式").select_option(label="现金")
    await payment.get_by_role("button", name="收款并打印收据").click()

    # The receipt: numbered, the amount, printable.
    await expect(desk_page).to_have_url(re.compile(r"/p/FEES/fees/payments/\d+$"))
    receipt = desk_page.locator("main")
    await expect(receipt).to_contain_text(re.compile(r"收据号\s*R\d{8}"))
    await expect(receipt).to_contain_text("¥100.00")
    await expect(receipt).to_contain_text(estate["home"])
    number = re.search(r"R\d{8}", await receipt.inner_text()).group(0)
    current = desk_page.locator(".sidebar a.nav-link.active")  # only the receipts entry is highlighted
    await expect(current).to_have_count(1)
    await expect(current).to_contain_text("收据")
    await assert_fits(desk_page)
    await screenshot(desk_page, "receipt", shots)
    await desk_page.evaluate("window.print = () => { document.body.dataset.printed = 'yes'; }")  # no print dialog here
    await desk_page.get_by_role("button", name="打印收据").click()
    await expect(desk_page.locator("body")).to_have_attribute("data-printed", "yes")
    await desk_page.emulate_media(media="print")  # on paper: the receipt without the app around it
    await expect(desk_page.locator(".sidebar")).to_be_hidden()
    await expect(desk_page.get_by_role("button", name="打印收据")).to_be_hidden()
    await expect(receipt).to_contain_text(number)
    await desk_page.emulate_media(media="screen")

    # What is still owed, and the receipt in the day's list.
    await desk_page.get_by_role("link", name="返回房屋账户").click()
    await expect(desk_page.locator("main")).to_contain_text("2026-05 · ¥117.98")  # what May's bill still asks
    await desk_page.goto(base + "payments")
    await expect(desk_page.locator("main").get_by_role("link", name=number)).to_be_visible()
    await assert_fits(desk_page)
