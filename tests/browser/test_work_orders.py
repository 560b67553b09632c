"""A repair request from intake to a satisfied callback, in the browser, by two people.

SQLite only: the PostgreSQL path of the same HTTP flow is covered by tests/test_hotline_workorders.py
and the browser main flow (test_front_desk.py) runs on both; this keeps the browser suite short on
the 2-core CI machine.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from core.api import unscoped
from core.models import Department
from core.people import create_customer, link_unit
from core.testing import PASSWORD, make_project, make_units, make_user
from plugins.hotline.models import Category
from tests.browser.conftest import BROWSER, MEDIUM, assert_no_horizontal_scroll, login, screenshot

pytestmark = BROWSER
SQLITE_ONLY = True


@pytest.fixture
async def estate(app, host):
    east = await make_project("EAST", name="东湖苑", host=host)
    with unscoped():
        engineering = await Department.create(project=east, name="工程部", kind="engineering")
        await Department.create(project=east, name="保洁部", kind="cleaning")
        repair = await Category.create(project=east, name="报修", kind="repair")
        leak = await Category.create(project=east, name="漏水", parent=repair, kind="repair")
        unit = (await make_units(east, 2))[0]
        zhang = await create_customer(east, "张三丰", ["13800138000"])
        await link_unit(zhang, unit)
    await make_user("desk", "agent", east, display_name="前台 小王", locale="zh_CN")
    await make_user("plumber", "staff", east, display_name="工程部 老刘", department=engineering, locale="zh_CN")
    return {"project": east, "unit": unit, "customer": zhang, "leak": leak, "engineering": engineering}


async def test_repair_request_from_intake_to_satisfied_callback(estate, live_server, new_page):
    desk = await new_page()
    await login(desk, live_server.url, "desk", PASSWORD)

    # Intake: find the caller by pinyin, fill in the repair request.
    await desk.goto(f"{live_server.url}/p/EAST/hotline/intake")
    await desk.locator("#f-lookup").fill("zhangsanfeng")
    choice = desk.locator("#customer-matches input[name=customer_id]")
    await expect(desk.locator("#customer-matches")).to_contain_text("张三丰")
    await expect(choice).to_be_checked()
    await desk.locator("select[name=kind]").select_option("repair")
    await desk.locator("select[name=category]").select_option(str(estate["leak"].id))
    await desk.locator("input[name=unit]").fill(estate["unit"].code)
    await desk.locator("input[name=subject]").fill("厨房水管漏水")
    await desk.locator("textarea[name=description]").fill("水槽下方一直滴水")
    await screenshot(desk, "intake")
    await desk.locator("form[action$='/intake'] button[type=submit]").click()

    header = desk.locator(".page-header")
    await expect(header.locator("h1")).to_contain_text("厨房水管漏水")
    await expect(header.locator(".badge-new")).to_have_text("新建")
    order_url = desk.url
    number = (await header.locator("h1").inner_text()).split("·")[0].strip()

    # Dispatch to the engineering department.
    dispatch = desk.locator("form[action$='/dispatch']")
    await dispatch.locator("select[name=department]").select_option(str(estate["engineering"].id))
    await dispatch.locator("textarea[name=instructions]").fill("带上扳手")
    await dispatch.locator("button[type=submit]").click()
    await expect(header.locator(".badge-warning")).to_have_text("已派单")
    await expect(desk.locator("main")).to_contain_text("工程部")

    # The department's staff member sees it in their list and marks their part done.
    plumber = await new_page()
    await login(plumber, live_server.url, "plumber", PASSWORD)
    await plumber.goto(f"{live_server.url}/p/EAST/hotline/mine")
    await plumber.get_by_role("link", name=number).click()
    await expect(plumber).to_have_url(order_url)
    await plumber.locator("textarea[name=report]").fill("更换密封圈，已不漏")
    await plumber.locator("form[action*='/assignments/'] button[type=submit]").click()
    await expect(plumber.locator(".page-header .badge-done")).to_be_visible()
    await plumber.goto(f"{live_server.url}/p/EAST/hotline/mine")
    await expect(plumber.locator("main")).not_to_contain_text(number)

    # Back at the desk: the callback is due; the customer is satisfied; the order closes.
    await desk.reload()
    await expect(header.locator(".badge-done")).to_be_visible()
    await desk.locator(f"a[href*='/hotline/callbacks/']").click()
    await desk.locator("select[name=outcome]").select_option("satisfied")
    await desk.locator("textarea[name=comment]").fill("业主确认已修好")
    await expect(desk.locator("input[name=close]")).to_be_checked()
    await desk.locator("form[action*='/callbacks/'] button[type=submit]").click()
    await desk.goto(order_url)
    await expect(header.locator(".badge-closed")).to_have_text("已关闭")
    for text in ("工程部", "更换密封圈，已不漏", "业主确认已修好", "前台 小王", "工程部 老刘"):
        await expect(desk.locator("main")).to_contain_text(text)
    await screenshot(desk, "work-order")

    # The work-order list fits the screen at both desk sizes.
    await desk.goto(f"{live_server.url}/p/EAST/hotline/")
    await expect(desk.locator("main")).to_contain_text(number)
    await assert_no_horizontal_scroll(desk)
    await desk.set_viewport_size(MEDIUM)
    await assert_no_horizontal_scroll(desk)
