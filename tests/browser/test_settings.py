"""Per-estate modules and the language switch, as the user sees them in the menu.

SQLite only (like test_work_orders.py): the database kinds change nothing the browser sees here,
and tests/test_app_plugins.py covers module toggling on both.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from core.testing import PASSWORD, make_project, make_user
from tests.browser.conftest import BROWSER, login, screenshot

pytestmark = BROWSER
SQLITE_ONLY = True


@pytest.fixture
async def estates(app, host):
    east = await make_project("EAST", name="东湖苑", host=host)
    west = await make_project("WEST", name="西山居", host=host)
    await make_user("it", "admin", None, display_name="信息部 小孙", locale="zh_CN")
    await make_user("desk", "agent", east, display_name="前台 小王", locale="zh_CN")
    return east, west


async def test_disabling_a_module_removes_its_menu_entry_in_that_estate_only(estates, live_server, page):
    await login(page, live_server.url, "it", PASSWORD)
    east_menu = page.locator(".sidebar a[href='/p/EAST/complaints/']")
    west_menu = page.locator(".sidebar a[href='/p/WEST/complaints/']")
    row = page.locator("#modules tr[data-module=complaints]")

    await page.goto(f"{live_server.url}/p/EAST/modules")
    await expect(east_menu).to_have_text("投诉")
    await expect(row.locator(".badge")).to_have_text("已启用")
    await screenshot(page, "modules")
    page.once("dialog", lambda dialog: dialog.accept())  # "Disable this module for the estate?"
    await row.get_by_role("button").click()
    await expect(row.locator(".badge")).to_have_text("已停用")
    await expect(east_menu).to_have_count(0)
    await page.reload()
    await expect(row.locator(".badge")).to_have_text("已停用")
    await expect(east_menu).to_have_count(0)

    await page.goto(f"{live_server.url}/p/WEST/")
    await expect(west_menu).to_have_text("投诉")

    await page.goto(f"{live_server.url}/p/EAST/modules")
    await row.get_by_role("button").click()
    await expect(row.locator(".badge")).to_have_text("已启用")
    await expect(east_menu).to_have_text("投诉")


async def test_switching_to_english_and_back_changes_the_menu(estates, live_server, page):
    await login(page, live_server.url, "desk", PASSWORD)
    orders = page.locator(".sidebar a[href^='/p/EAST/hotline/']").first
    switch = page.locator(".lang-switch")
    await expect(page.locator(".sidebar")).to_contain_text("工单")
    await switch.get_by_role("button", name="English").click()
    await expect(page.locator(".sidebar")).to_contain_text("Work orders")
    await expect(page.locator(".sidebar")).not_to_contain_text("工单")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.goto(f"{live_server.url}/p/EAST/hotline/")  # the choice sticks on the next page
    await expect(page.locator("main h1")).to_contain_text("Work orders")
    await expect(orders).to_be_visible()
    await switch.get_by_role("button", name="简体中文").click()
    await expect(page.locator(".sidebar")).to_contain_text("工单")
    await expect(page.locator(".sidebar")).not_to_contain_text("Work orders")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
