"""Key custody in the browser: the key keeper registers a unit's key set, lends it to a contractor
against a printed key receipt, and takes it back into the cabinet."""

from __future__ import annotations

from playwright.async_api import expect

from core.api import unscoped
from core.testing import make_project, make_units, make_user
from plugins.handover.models import Contractor
from tests.browser.conftest import BROWSER, assert_fits, screenshot

pytestmark = BROWSER


async def seed(host):
    north = await make_project("NORTH", name="北苑", host=host)
    with unscoped():
        unit = (await make_units(north, 2, building_code="8"))[0]
        await Contractor.create(project=north, name="恒安装饰", trade="防水", phone="021-5555 0101")
    await make_user("north_keeper", "staff", north, display_name="钥匙管理员 小宋", locale="zh_CN")
    return {"unit": unit.code}


async def test_a_key_set_is_checked_out_to_a_contractor_against_a_receipt_and_returned(desk, new_page):
    estate = await desk.seed(seed)
    shots = desk.screenshots
    page = await new_page("north_keeper")

    # Register the unit's entrance keys into cabinet slot A-01.
    await page.goto(f"{desk.url}/p/NORTH/handover/keys")
    await page.get_by_role("link", name="登记钥匙").click()
    await page.get_by_role("textbox", name="房号", exact=True).fill(estate["unit"])
    await page.get_by_role("textbox", name="钥匙牌号").fill("K-0801")
    await expect(page.get_by_role("combobox", name="类型", exact=True)).to_have_value("entrance")
    await page.get_by_role("textbox", name="钥匙柜格位").fill("A-01")
    await page.get_by_role("button", name="登记", exact=True).click()
    header = page.locator(".page-header")
    await expect(header.locator("h1")).to_contain_text(f"K-0801 · {estate['unit']}")
    await expect(header).to_contain_text("在柜")
    key_url = page.url

    # Lend it to the contractor who repairs the bathroom.
    await page.get_by_role("combobox", name="领用人").select_option(label="施工单位")
    await page.get_by_role("combobox", name="施工单位", exact=True).select_option(label="恒安装饰")
    await page.get_by_role("textbox", name="事由").fill("卫生间防水维修")
    await page.get_by_role("button", name="借出", exact=True).click()

    # The key receipt the contractor signs, printed from the browser.
    await expect(page.locator("main h1")).to_contain_text("钥匙领用单")
    receipt = page.locator("main")
    for text in (estate["unit"], "恒安装饰", "卫生间防水维修", "K-0801", "钥匙管理员 小宋"):
        await expect(receipt).to_contain_text(text)
    await expect(page.locator(".toast")).to_contain_text("钥匙 K-0801 已借给 恒安装饰。")
    await assert_fits(page)
    await screenshot(page, "key-receipt", shots)
    await page.evaluate("window.print = () => { document.body.dataset.printed = 'yes'; }")  # no print dialog here
    await page.get_by_role("button", name="打印").click()
    await expect(page.locator("body")).to_have_attribute("data-printed", "yes")
    await page.emulate_media(media="print")  # on paper: the receipt without the app around it
    await expect(page.locator(".sidebar")).to_be_hidden()
    await expect(page.get_by_role("button", name="打印")).to_be_hidden()
    await expect(receipt).to_contain_text("恒安装饰")
    await page.emulate_media(media="screen")

    # The key set is out, with the contractor.
    await page.get_by_role("link", name="返回").click()
    await expect(page).to_have_url(key_url)
    await expect(header).to_contain_text("已借出")
    await expect(page.locator("main")).to_contain_text("恒安装饰")
    await page.goto(f"{desk.url}/p/NORTH/handover/keys")
    row = page.locator("main tr", has_text="K-0801")
    await expect(row).to_contain_text("已借出")
    await expect(row).to_contain_text("恒安装饰")
    await assert_fits(page)
    await screenshot(page, "keys", shots)

    # The contractor brings it back; the keeper seals it into its slot again.
    await row.get_by_role("link", name="K-0801").click()
    await expect(page.get_by_role("textbox", name="归还人")).to_have_value("恒安装饰")
    await page.get_by_role("checkbox", name="已重新封存").check()
    await page.get_by_role("button", name="登记归还").click()
    await expect(page.locator(".toast")).to_contain_text("钥匙 K-0801 已归还入柜。")
    await expect(header).to_contain_text("在柜")
    history = page.locator("section", has=page.get_by_role("heading", name="借还记录"))
    await expect(history).to_contain_text("恒安装饰 交给 钥匙管理员 小宋")
    await assert_fits(page)
    await screenshot(page, "key", shots)
