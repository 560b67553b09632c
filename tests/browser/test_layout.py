"""The main screen of every module, filled with the demo estates' data, fits the front desk's PC
(1366×768) and a tablet (1024×768) without scrolling sideways, in both languages and both themes."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from core.demo import DEMO_PASSWORD
from tests.browser.conftest import BROWSER, assert_fits

pytestmark = BROWSER

# (list page, whether to open its first record too), per estate; "{p}" is the estate's code.
SCREENS = [
    ("/p/{p}/", False),  # dashboard
    ("/search?q=王", False),
    ("/p/{p}/customers", True),  # customer 360
    ("/p/{p}/units", True),
    ("/p/{p}/hotline/", True),  # work orders
    ("/p/{p}/hotline/intake", False),
    ("/p/{p}/hotline/callbacks", False),
    ("/p/{p}/hotline/calls", False),
    ("/p/{p}/complaints/", True),
    ("/p/{p}/complaints/analysis", False),
    ("/p/{p}/handover/", True),  # handover batches
    ("/p/{p}/handover/defects", True),
    ("/p/{p}/handover/keys", True),
    ("/p/{p}/fees/", False),
    ("/p/{p}/fees/bills", True),
    ("/p/{p}/fees/arrears", False),
    ("/p/{p}/fees/payments", True),  # receipts
    ("/p/{p}/activities/", True),
    ("/p/{p}/activities/members", False),
    ("/p/{p}/activities/visits", False),
]


async def visit(page, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("main h1").first).to_be_visible()
    await assert_fits(page)


@pytest.mark.parametrize("estate, user, language", [
    ("CUIHU", "ch_manager", "简体中文"),  # the default theme, in Chinese
    ("JINXIU", "jx_manager", "English"),  # the harbour theme, in English (longer labels)
])
async def test_main_screens_fit_the_desk_pc_and_a_tablet(desk, new_page, estate, user, language):
    page = await new_page(user, DEMO_PASSWORD)
    await page.goto(f"{desk.url}/p/{estate}/")
    if language == "English":
        await page.get_by_role("group", name="语言").get_by_role("button", name="English").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
    for path, open_first in SCREENS:
        url = desk.url + path.format(p=estate)
        await visit(page, url)
        first = page.locator("main table tbody tr td a[href^='/']").first
        if open_first and await first.count():
            target = await first.get_attribute("href")
            await visit(page, desk.url + target)
            if "/activities/" in target and target.rstrip("/").split("/")[-1].isdigit():
                await visit(page, desk.url + target.rstrip("/") + "/checkin")  # the activity's check-in desk
    if language == "English":
        await page.get_by_role("group", name="Language").get_by_role("button", name="简体中文").click()
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
