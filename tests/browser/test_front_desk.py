"""The front desk's day in a real browser, in the demo estate 翠湖花园: log in, find an owner by pinyin
initials, a call arrives and pops up, the agent records the repair request from the pop and dispatches
it, the technician reports it done, the callback finds the owner satisfied and the order closes."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
from playwright.async_api import expect

from core.api import unscoped
from core.demo import DEMO_PASSWORD
from core.models import Project, Unit, User
from core.people import create_customer, link_unit
from plugins.hotline import telephony
from plugins.hotline.call_models import PbxIntegration
from tests.browser.conftest import BROWSER, assert_fits, login, screenshot

pytestmark = BROWSER

SECRET = "pbx-browser-secret"


async def seed(host):
    """An owner with a rare name, ch_agent on extension 8101 and the estate's PBX."""
    with unscoped():
        cuihu = await Project.get(code="CUIHU")
        unit = await Unit.filter(project=cuihu).order_by("id").first()
        owner = await create_customer(cuihu, "欧阳娜娜", ["139 0021 6688"])
        await link_unit(owner, unit)
        await User.filter(username="ch_agent").update(extension="8101")
        pbx = await PbxIntegration.create(name="翠湖前台", project=cuihu, secret=SECRET)
    return {"unit": unit.code, "owner": owner.id, "pbx": pbx.id}


async def post_call(base_url: str, pbx_id: int, *, caller: str, extension: str, event_id: str) -> httpx.Response:
    """What the PBX does when a call rings an extension: a signed webhook event."""
    now = datetime.now(timezone.utc)
    body = json.dumps({"event_id": event_id, "event": "ringing", "call_id": f"call-{event_id}", "caller": caller,
                       "extension": extension, "timestamp": now.isoformat()}).encode()
    ts = str(int(now.timestamp()))
    async with httpx.AsyncClient() as http:
        return await http.post(f"{base_url}/hooks/hotline/pbx/{pbx_id}", content=body, headers={
            "content-type": "application/json", "X-Courtyard-Timestamp": ts,
            "X-Courtyard-Signature": telephony.sign(SECRET, ts, body)})


async def test_a_call_becomes_a_repair_that_is_dispatched_done_called_back_and_closed(desk, new_page):
    estate = await desk.seed(seed)
    shots = desk.screenshots
    page = await new_page()
    await login(page, desk.url, "ch_agent", DEMO_PASSWORD)
    await expect(page.locator(".project-switcher summary")).to_contain_text("翠湖花园")
    await expect(page.locator("main h1")).to_be_visible()
    await assert_fits(page)
    await screenshot(page, "dashboard", shots)

    # Top-bar search by the initials of 欧阳娜娜: the dropdown, then (Enter) the results page.
    box = page.get_by_role("searchbox", name="搜索").first
    await box.fill("oynn")
    await expect(page.locator("#search-results").get_by_role("link", name="欧阳娜娜")).to_be_visible()
    await box.press("Enter")
    await expect(page).to_have_url(f"{desk.url}/search?q=oynn")
    hit = page.locator("main").get_by_role("link", name="欧阳娜娜")
    await expect(hit).to_be_visible()
    await assert_fits(page)
    await screenshot(page, "search", shots)
    await hit.click()
    await expect(page).to_have_url(f"{desk.url}/p/CUIHU/customers/{estate['owner']}")
    await expect(page.locator("main h1")).to_contain_text("欧阳娜娜")
    await expect(page.locator("main")).to_contain_text(estate["unit"])
    await assert_fits(page)
    await screenshot(page, "customer", shots)

    # The owner calls; the PBX rings ch_agent's extension: the pop appears in the open page.
    response = await post_call(desk.url, estate["pbx"], caller="13900216688", extension="8101", event_id="ring-1")
    assert response.status_code == 200, response.text
    pop = page.locator("#screen-pop")
    await expect(pop).to_contain_text("来电")
    await expect(pop).to_contain_text("欧阳娜娜")
    await expect(pop).to_contain_text(estate["unit"])
    await expect(pop).to_contain_text("139****6688")  # a front-desk agent sees the number masked
    await screenshot(page, "screen-pop", shots)

    # From the pop, a work order for this caller: the owner is already chosen.
    await pop.get_by_role("link", name="为该来电新建工单").click()
    await expect(page.locator("main h1")).to_have_text("受理登记")
    await expect(page.locator("#customer-matches")).to_contain_text("欧阳娜娜")
    await expect(page.locator("#customer-matches input[type=radio]:checked")).to_have_count(1)
    await page.get_by_role("combobox", name="类型", exact=True).select_option(label="报修")
    await page.get_by_role("combobox", name="类别", exact=True).select_option(label="报修 › 水电维修")
    await page.get_by_role("textbox", name="房号", exact=True).fill(estate["unit"])
    await page.get_by_role("textbox", name="摘要", exact=True).fill("厨房水管漏水")
    await page.get_by_role("textbox", name="详细情况", exact=True).fill("水槽下方一直滴水")
    await screenshot(page, "intake", shots)
    await page.get_by_role("button", name="登记", exact=True).click()

    header = page.locator(".page-header")
    await expect(header.locator("h1")).to_contain_text("厨房水管漏水")
    await expect(header).to_contain_text("新建")
    order_url = page.url
    number = (await header.locator("h1").inner_text()).split("·")[0].strip()

    # Dispatch to the engineering department.
    dispatch = page.locator("form", has=page.get_by_role("button", name="派单", exact=True))
    await dispatch.get_by_role("listbox", name="部门", exact=True).select_option(label="工程部")
    await dispatch.get_by_role("textbox", name="处理要求").fill("带上扳手")
    await dispatch.get_by_role("button", name="派单", exact=True).click()
    await expect(header).to_contain_text("已派单")
    await expect(page.locator("main")).to_contain_text("工程部")
    await assert_fits(page)

    # The department's technician finds it in their list and marks their part done.
    tech = await new_page("ch_staff", DEMO_PASSWORD)
    await tech.goto(f"{desk.url}/p/CUIHU/hotline/mine")
    await tech.get_by_role("link", name=number).click()
    await expect(tech).to_have_url(order_url)
    await tech.get_by_role("textbox", name="处理情况").fill("更换密封圈，已不漏")
    await tech.get_by_role("button", name="我的部分已完成").click()
    await expect(tech.locator(".page-header")).to_contain_text("已完成")
    await tech.goto(f"{desk.url}/p/CUIHU/hotline/mine")
    await expect(tech.locator("main")).not_to_contain_text(number)

    # Back at the desk: the callback is due; the owner is satisfied; the order closes.
    await page.reload()
    await expect(header).to_contain_text("已完成")
    await page.get_by_role("link", name="登记回访").click()
    await page.get_by_role("combobox", name="结果", exact=True).select_option(label="满意")
    await page.get_by_role("textbox", name="客户反馈").fill("业主确认已修好")
    await expect(page.get_by_label("客户满意时关闭工单")).to_be_checked()
    await page.get_by_role("button", name="保存").click()
    await page.goto(order_url)
    await expect(header).to_contain_text("已关闭")
    for text in ("工程部", "更换密封圈，已不漏", "业主确认已修好", "前台 小王", "工程部 老张"):
        await expect(page.locator("main")).to_contain_text(text)
    await assert_fits(page)
    await screenshot(page, "work-order", shots)

    # The closed order in the estate's list.
    await page.goto(f"{desk.url}/p/CUIHU/hotline/")
    await expect(page.locator("main").get_by_role("link", name=number)).to_be_visible()
    await assert_fits(page)
    await screenshot(page, "work-orders", shots)


async def test_a_head_office_agent_switches_the_intake_form_to_another_estate(desk, new_page):
    page = await new_page("hotline", DEMO_PASSWORD)
    await page.goto(f"{desk.url}/p/CUIHU/hotline/intake")
    await expect(page.locator("main h1")).to_have_text("受理登记")
    await page.get_by_role("combobox", name="项目", exact=True).select_option(label="锦绣江南")
    await expect(page).to_have_url(f"{desk.url}/p/JINXIU/hotline/intake")
    await expect(page.locator(".page-header")).to_contain_text("锦绣江南")
