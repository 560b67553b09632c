"""Per-estate modules and the language switch, as the user sees them in the menu."""

from __future__ import annotations

import re

from playwright.async_api import expect

from core.plugins import PluginHost
from core.testing import make_project, make_user
from tests.browser.conftest import BROWSER, assert_fits, screenshot

pytestmark = BROWSER


async def seed(host):
    """Two estates with every module but the member activities."""
    modules = [p.name for p in PluginHost.discover(entry_points=False).toggleable() if p.name != "activities"]
    east = await make_project("EAST", name="东湖苑", modules=modules, host=host)
    await make_project("WEST", name="西山居", modules=modules, host=host)
    await make_user("it", "admin", None, display_name="信息部 小孙", locale="zh_CN")
    await make_user("east_desk", "agent", east, display_name="前台 小王", locale="zh_CN")


async def test_enabling_a_module_shows_its_menu_in_that_estate_only(desk, new_page):
    await desk.seed(seed)
    page = await new_page("it")
    menu = page.locator(".sidebar").get_by_role("link", name="活动", exact=True)
    row = page.locator("#modules tr", has=page.get_by_text(re.compile(r"^activities ")))

    await page.goto(f"{desk.url}/p/EAST/modules")
    await expect(row).to_contain_text("已停用")
    await expect(menu).to_have_count(0)
    await row.get_by_role("button", name="启用").click()
    await expect(row).to_contain_text("已启用")
    await expect(page.locator(".toast")).to_contain_text("已启用：活动")
    await expect(menu).to_be_visible()  # at once, without reloading
    await expect(menu).to_have_attribute("href", "/p/EAST/activities/")
    await assert_fits(page)
    await screenshot(page, "modules", desk.screenshots)
    await page.reload()
    await expect(row).to_contain_text("已启用")

    await page.goto(f"{desk.url}/p/WEST/")
    await expect(page.locator(".sidebar")).to_contain_text("工单")
    await expect(menu).to_have_count(0)

    # The estate's front desk finds it in their menu; switching it off asks first, then removes it.
    agent = await new_page("east_desk")
    await agent.goto(f"{desk.url}/p/EAST/")
    await agent.locator(".sidebar").get_by_role("link", name="活动", exact=True).click()
    await expect(agent.locator("main h1")).to_contain_text("活动")
    await page.goto(f"{desk.url}/p/EAST/modules")
    page.once("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name="停用").click()
    await expect(row).to_contain_text("已停用")
    await expect(menu).to_have_count(0)


async def test_switching_to_english_and_back_changes_the_menu(desk, new_page):
    await desk.seed(seed)
    page = await new_page("east_desk")
    await page.goto(f"{desk.url}/p/EAST/")
    switch = page.get_by_role("group", name="语言")
    await expect(page.locator(".sidebar")).to_contain_text("工单")
    await switch.get_by_role("button", name="English").click()
    await expect(page.locator(".sidebar")).to_contain_text("Work orders")
    await expect(page.locator(".sidebar")).not_to_contain_text("工单")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.goto(f"{desk.url}/p/EAST/hotline/")  # the choice sticks on the next page
    await expect(page.locator("main h1")).to_contain_text("Work orders")
    await assert_fits(page)  # English labels are longer
    switch = page.get_by_role("group", name="Language")
    await switch.get_by_role("button", name="简体中文").click()
    await expect(page.locator(".sidebar")).to_contain_text("工单")
    await expect(page.locator(".sidebar")).not_to_contain_text("Work orders")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
