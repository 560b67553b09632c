"""A complaint through its eleven steps in the browser, by the front desk and the manager; the survey
job emails the owner a link (read in the outbox), and the owner answers it in a browser of their own."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.async_api import expect

from core.api import unscoped
from core.demo import DEMO_PASSWORD
from core.models import Department
from core.people import create_customer, link_unit
from core.testing import make_project, make_units, make_user
from plugins.complaints.models import Category
from tests.browser.conftest import BROWSER, assert_fits, screenshot

pytestmark = BROWSER

OWNER_EMAIL = "qianduoduo@example.com"


async def seed(host):
    south = await make_project("SOUTH", name="南湖苑", host=host)
    with unscoped():
        await Department.create(project=south, name="工程部", kind="engineering")
        await Department.create(project=south, name="客服部", kind="service")
        await Category.create(project=south, name="维修质量", classification="property_services")
        unit = (await make_units(south, 2, building_code="5"))[0]
        owner = await create_customer(south, "钱多多", ["13700137000"], email=OWNER_EMAIL)
        await link_unit(owner, unit)
    await make_user("south_desk", "agent", south, display_name="前台 小林", locale="zh_CN")
    await make_user("south_manager", "manager", south, display_name="客服经理 老周", locale="zh_CN")
    return {"unit": unit.code}


async def do_step(page, action: str, **fields) -> None:
    """Fill the form of the case's next step (labels in `fields`, "combobox:" for choices) and submit it."""
    form = page.locator("form", has=page.get_by_role("button", name=action, exact=True))
    for label, value in fields.items():
        if label.startswith("combobox:"):
            await form.get_by_role("combobox", name=label.removeprefix("combobox:"), exact=True).select_option(label=value)
        else:
            await form.get_by_label(label).fill(value)
    await form.get_by_role("button", name=action, exact=True).click()
    procedure = page.locator("section", has=page.get_by_role("heading", name="处理流程"))
    await expect(procedure.get_by_role("listitem").filter(has_text=action)).to_have_text(f"✓ {action}")


async def test_a_complaint_goes_through_its_steps_and_the_owner_answers_the_survey(desk, new_page):
    estate = await desk.seed(seed)
    shots = desk.screenshots
    base = f"{desk.url}/p/SOUTH/complaints/"

    # The front desk receives the complaint: the owner is found by pinyin initials.
    agent = await new_page("south_desk")
    await agent.goto(base)
    await agent.get_by_role("link", name="新建投诉").click()
    await agent.get_by_role("textbox", name="查找客户").fill("qdd")
    await expect(agent.get_by_role("radio", name=re.compile("钱多多"))).to_be_checked()
    await agent.get_by_role("textbox", name="房号", exact=True).fill(estate["unit"])
    await agent.get_by_role("combobox", name="类别", exact=True).select_option(label="维修质量")
    await agent.get_by_role("textbox", name="主题", exact=True).fill("维修后卫生间仍然渗水")
    await agent.get_by_role("textbox", name="投诉内容").fill("上周维修过，今天楼下又说天花板渗水，业主很不满意")
    await agent.get_by_role("button", name="受理投诉").click()
    header = agent.locator(".page-header")
    await expect(header.locator("h1")).to_contain_text("维修后卫生间仍然渗水")
    await expect(header).to_contain_text("受理")
    case_url = agent.url
    number = (await header.locator("h1").inner_text()).split("·")[0].strip()
    await do_step(agent, "登记详情")  # category and details come from the intake

    # The manager assesses and assigns; the desk sees what comes next but cannot do it.
    manager = await new_page("south_manager")
    await manager.goto(case_url)
    await do_step(manager, "初步评估并分派", **{"combobox:严重程度": "一般", "combobox:责任部门": "工程部"})
    await expect(manager.locator("main")).to_contain_text("工程部")

    # The desk tells the owner when to expect a reply, then works the case through.
    await agent.reload()
    promised = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=1)).replace(hour=17, minute=0)
    await do_step(agent, "告知答复时限", 承诺答复时间=promised.strftime("%Y-%m-%dT%H:%M"),
                  告知客户的内容="明天下午五点前给您答复")
    await do_step(agent, "调查核实", 事实与证据="现场查看：淋浴房防水层破损，上次维修未处理")
    await do_step(agent, "原因分析与责任方", **{"combobox:原因分析": "施工工艺", "combobox:责任方": "施工单位",
                                                "原因说明": "防水层施工不到位"})
    await do_step(agent, "提出处理方案", 处理方案="重做卫生间防水，修复楼下天花板", **{"补偿金额（元）": "200"})
    await do_step(agent, "征询客户意见", **{"combobox:客户意见": "接受处理方案"})
    await do_step(agent, "方案实施", 实施情况="防水重做完毕，闭水试验48小时无渗漏")
    await do_step(agent, "跟踪回访", 回访时客户的反馈="业主确认不再渗水")
    await expect(agent.locator("main")).to_contain_text("总结并结案")  # next, for the manager

    # The manager closes the case.
    await manager.reload()
    await do_step(manager, "总结并结案", 总结与经验教训="防水施工须在维修后做闭水试验")
    await expect(manager.locator(".page-header")).to_contain_text("已结案")

    # Head office runs the survey job now, and finds the owner's email in the outbox.
    admin = await new_page("admin", DEMO_PASSWORD)
    await admin.goto(f"{desk.url}/jobs")
    await admin.get_by_role("link", name="发送满意度调查").click()
    await admin.get_by_role("combobox", name="项目").select_option(label="南湖苑 (SOUTH)")
    await admin.get_by_role("button", name="立即运行").click()
    await expect(admin.locator("#runs tbody tr").first).to_contain_text("已完成", timeout=30_000)
    await admin.goto(f"{desk.url}/outbox")
    await admin.locator("tr", has_text=OWNER_EMAIL).get_by_role("link").first.click()
    await expect(admin.locator("main h1")).to_contain_text(number)
    text = await admin.locator("pre").first.inner_text()
    link = re.search(r"https?://\S+/complaints/survey/\S+", text)
    assert link, f"no survey link in the email:\n{text}"

    # The owner follows the link (no login) and rates the handling.
    owner = await new_page()
    await owner.goto(link.group(0))
    await expect(owner.locator("main")).to_contain_text("钱多多")
    await expect(owner.locator("main")).to_contain_text(number)
    await owner.get_by_role("radio", name="非常满意").check()
    await owner.get_by_role("textbox", name="其他意见和建议").fill("处理及时，谢谢")
    await assert_fits(owner)
    await screenshot(owner, "survey", shots)
    await owner.get_by_role("button", name="提交").click()
    await expect(owner.get_by_role("status")).to_have_text("感谢您的反馈！")

    # The manager sees the answer on the case, and the case in the list.
    await manager.reload()
    surveys = manager.locator("section", has=manager.get_by_role("heading", name="满意度调查"))
    await expect(surveys).to_contain_text("(5/5)")
    await expect(surveys).to_contain_text("处理及时，谢谢")
    await assert_fits(manager)
    await screenshot(manager, "complaint", shots)
    await manager.goto(base)
    await expect(manager.locator("main").get_by_role("link", name=number)).to_be_visible()
    await assert_fits(manager)
    await screenshot(manager, "complaints", shots)
