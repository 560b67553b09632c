"""An owners' activity at the front desk: sign-ups fill it up, the next one waits, a cancellation
moves them up from the waitlist, and on the day the desk checks people in by code and by name."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from playwright.async_api import expect

from core.api import now, unscoped
from core.people import create_customer, link_unit
from core.testing import make_project, make_units, make_user
from plugins.activities.models import Activity, ActivityStatus
from tests.browser.conftest import BROWSER, assert_fits, screenshot

pytestmark = BROWSER
OWNERS = ("张伟", "李娜", "王芳")


async def seed(host):
    lake = await make_project("LAKE", name="湖畔花园", host=host)
    with unscoped():
        for owner_name, unit in zip(OWNERS, await make_units(lake, 3, building_code="2")):
            await link_unit(await create_customer(lake, owner_name, [f"1860000{unit.id:04d}"]), unit)
        # Later today (check-in opens on the day); just started when the day is nearly over.
        start = now() + timedelta(minutes=30)
        closes = None
        zone = ZoneInfo(lake.timezone)
        if start.astimezone(zone).date() != now().astimezone(zone).date():
            start, closes = now() - timedelta(minutes=30), now() + timedelta(hours=2)
        activity = await Activity.create(
            project=lake, title="亲子烘焙课", place="会所二楼", starts_at=start, ends_at=start + timedelta(hours=2),
            registration_closes_at=closes, capacity=3, max_family=2, status=ActivityStatus.PUBLISHED,
        )
    await make_user("lake_desk", "agent", lake, display_name="前台 小何", locale="zh_CN")
    return {"activity": activity.id}


async def register(page, name: str, family: int) -> None:
    form = page.locator("form", has=page.get_by_role("button", name="报名", exact=True))
    await form.get_by_role("searchbox", name="业主（姓名、拼音或电话）").fill(name)
    choice = form.get_by_role("radio", name=name)
    await choice.check()
    await form.get_by_role("spinbutton", name="同行家庭成员人数").fill(str(family))
    await form.get_by_role("button", name="报名", exact=True).click()


async def test_an_activity_fills_up_a_cancellation_promotes_the_waitlist_and_the_desk_checks_people_in(desk, new_page):
    estate = await desk.seed(seed)
    shots = desk.screenshots
    page = await new_page("lake_desk")
    await page.goto(f"{desk.url}/p/LAKE/activities/")
    await page.get_by_role("link", name="亲子烘焙课").click()
    await expect(page).to_have_url(f"{desk.url}/p/LAKE/activities/{estate['activity']}")
    seats = page.locator(".tile", has_text="已占名额")
    waitlist = page.locator("section", has=page.get_by_role("heading", name=re.compile("^候补")))
    registered = page.locator("section", has=page.get_by_role("heading", name=re.compile("^已报名")))

    await expect(page.locator("main")).not_to_contain_text("未找到客户")  # nothing typed, nothing searched yet

    # Three seats: 张伟 comes with one family member, 李娜 alone; then it is full.
    await register(page, "张伟", 1)
    await expect(page.locator(".toast")).to_contain_text("张伟 报名成功：2 个名额")
    await register(page, "李娜", 0)
    await expect(seats).to_contain_text("3 / 3")
    await expect(page.locator("main")).to_contain_text("名额已满：新报名将进入候补名单。")

    # 王芳 joins the waitlist.
    await register(page, "王芳", 0)
    await expect(page.locator(".toast")).to_contain_text("活动名额已满：王芳 已进入候补名单")
    await expect(waitlist).to_contain_text("王芳")
    await expect(registered).not_to_contain_text("王芳")
    await assert_fits(page)
    await screenshot(page, "activity", shots)

    # 张伟 cancels: 王芳 moves up from the waitlist.
    await registered.locator("tr", has_text="张伟").get_by_role("button", name="取消报名").click()
    await expect(page.locator(".toast")).to_contain_text("报名已取消，空出的名额已转给候补人员。")
    await expect(registered).to_contain_text("王芳")
    await expect(registered).not_to_contain_text("张伟")
    await expect(waitlist).to_contain_text("暂无候补。")
    await expect(seats).to_contain_text("2 / 3")
    code = (await registered.locator("tr", has_text="李娜").locator("code").inner_text()).strip()

    # On the day: 李娜 shows her code, 王芳 gives her name.
    await page.get_by_role("link", name="签到台").click()
    box = page.get_by_role("textbox", name="扫描二维码，或输入签到码、姓名或电话号码")
    await box.fill(code)
    await page.get_by_role("button", name="查找").click()
    await expect(page.get_by_role("status")).to_have_text("欢迎您，李娜：签到成功，共 1 人。")
    await box.fill("王芳")
    await page.get_by_role("button", name="查找").click()
    await page.locator("tr", has_text="王芳").get_by_role("button", name="签到", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("欢迎您，王芳：签到成功，共 1 人。")
    await expect(page.locator(".tile", has_text="已签到")).to_contain_text("2 / 2")
    await assert_fits(page)
    await screenshot(page, "check-in", shots)

    # The activity in the estate's list.
    await page.get_by_role("link", name="返回活动").click()
    await expect(page.locator(".tile", has_text="已签到")).to_contain_text("2 / 2")
    await page.goto(f"{desk.url}/p/LAKE/activities/")
    await expect(page.locator("main tr", has_text="亲子烘焙课")).to_contain_text("2 / 3")
    await assert_fits(page)
    await screenshot(page, "activities", shots)
