"""The front desk's day in a real browser: log in, find an owner, take a call (screen pop)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import httpx
import pytest
from playwright.async_api import expect

from core.api import unscoped
from core.demo import DEMO_PASSWORD, load_demo
from core.models import Project, Unit, User
from core.people import create_customer, link_unit
from plugins.hotline import telephony
from plugins.hotline.call_models import PbxIntegration
from tests.browser.conftest import BROWSER, DESKTOP, MEDIUM, assert_no_horizontal_scroll, login, screenshot

pytestmark = BROWSER

SECRET = "pbx-browser-secret"


@pytest.fixture
async def estate(app, host):
    """The demo estates, plus an owner with a rare name, ch_agent on extension 8101 and CUIHU's PBX."""
    await load_demo(host)
    with unscoped():
        cuihu = await Project.get(code="CUIHU")
        unit = await Unit.filter(project=cuihu).order_by("id").first()
        owner = await create_customer(cuihu, "欧阳娜娜", ["139 0021 6688"])
        await link_unit(owner, unit)
        await User.filter(username="ch_agent").update(extension="8101")
        pbx = await PbxIntegration.create(name="翠湖前台", project=cuihu, secret=SECRET)
    return {"project": cuihu, "unit": unit, "owner": owner, "pbx_id": pbx.id}


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


async def test_agent_finds_an_owner_by_pinyin_initials_then_a_call_pops_up(estate, live_server, page, db_kind):
    shots = db_kind == "sqlite"  # one set of screenshots (both kinds may run at once under xdist)
    await login(page, live_server.url, "ch_agent", DEMO_PASSWORD)
    await expect(page.locator(".project-switcher summary")).to_contain_text("翠湖花园")
    await assert_no_horizontal_scroll(page)
    await screenshot(page, "dashboard", shots)

    # Top-bar search: initials of 欧阳娜娜.
    box = page.locator("#global-search")
    await box.fill("oynn")
    hit = page.locator("#search-results a", has_text="欧阳娜娜")
    await expect(hit).to_be_visible()
    await hit.click()
    await expect(page).to_have_url(f"{live_server.url}/p/CUIHU/customers/{estate['owner'].id}")
    await expect(page.locator("main h1")).to_contain_text("欧阳娜娜")
    await expect(page.locator("main")).to_contain_text(estate["unit"].code)
    await assert_no_horizontal_scroll(page)
    await screenshot(page, "customer", shots)

    # The owner calls; the PBX rings ch_agent's extension: the pop appears in the open page.
    response = await post_call(live_server.url, estate["pbx_id"], caller="13900216688", extension="8101", event_id="ring-1")
    assert response.status_code == 200, response.text
    pop = page.locator("#screen-pop")
    await expect(pop).to_contain_text("欧阳娜娜")
    await expect(pop).to_contain_text(estate["unit"].code)
    await expect(pop).to_contain_text("139****6688")  # a front-desk agent sees the number masked
    await expect(pop.locator(f"a[href^='/p/CUIHU/hotline/intake?customer={estate['owner'].id}']")).to_be_visible()
    await screenshot(page, "screen-pop", shots)

    # The main screens fit the desk's screens without horizontal scrolling.
    for url in ("/p/CUIHU/", "/p/CUIHU/hotline/", f"/p/CUIHU/customers/{estate['owner'].id}"):
        await page.goto(live_server.url + url)
        await expect(page.locator("main h1")).to_be_visible()
        if url == "/p/CUIHU/hotline/":
            await expect(page.locator("main table tbody tr").first).to_be_visible()  # demo orders listed
            await screenshot(page, "work-orders", shots)
        for viewport in (DESKTOP, MEDIUM):
            await page.set_viewport_size(viewport)
            await assert_no_horizontal_scroll(page)
        await page.set_viewport_size(DESKTOP)
