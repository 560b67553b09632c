"""Global search: one box for customers (name, pinyin, phone), units and plugin results, per the user's estates."""

import re

import pytest

from core.people import create_customer
from core.scope import unscoped
from core.testing import make_project, make_units, make_user

HTMX = {"HX-Request": "true"}


@pytest.fixture
def plugin_modules():
    return ["tests.sample_plugins.lookup", "tests.sample_plugins.broken_sections"]


@pytest.fixture
async def estates(app, host):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    await make_user("east_agent", "agent", east, locale="en")
    await make_user("hotline", "agent", None, locale="en")  # head office: every estate
    await make_units(east, 3, building_code="3")
    with unscoped():
        zhang = await create_customer(east, "张三", ["13800138000"])
        await create_customer(east, "李四", ["13900139000"])
        wang = await create_customer(west, "张伟", ["13800138999"])
    return {"east": east, "west": west, "zhang": zhang, "wang": wang}


async def search(client, q, htmx=True):
    response = await client.get("/search", params={"q": q}, headers=HTMX if htmx else {})
    assert response.status_code == 200
    return response.text


async def test_pinyin_initials_and_full_pinyin_find_the_chinese_name(client, estates):
    await client.login("east_agent")
    for query in ("zs", "zhangsan", "ZhangSan", "zhang san", "张"):
        html = await search(client, query)
        assert f'href="/p/EAST/customers/{estates["zhang"].id}"' in html, query
        assert "李四" not in html
    assert "李四" in await search(client, "ls")


async def test_phone_in_any_spelling_and_by_its_last_digits(client, estates):
    await client.login("east_agent")
    for query in ("+86 138-0013-8000", "138 0013 8000", "0086 13800138000", "13800138000", "8000"):
        html = await search(client, query)
        assert "张三" in html and "李四" not in html, query
    # masked for an agent, in the results too
    assert "138****8000" in await search(client, "13800138000")
    assert "Nothing found for “13600136000”." in await search(client, "13600136000")


async def test_unit_code(client, estates):
    await client.login("east_agent")
    html = await search(client, "3-1-10")
    assert all(code in html for code in ("3-1-101", "3-1-102", "3-1-103"))
    html = await search(client, "3-1-102")
    assert "3-1-102" in html and "3-1-101" not in html and "/p/EAST/units/" in html


async def test_plugin_results_and_a_failing_provider(client, estates):
    await client.login("east_agent")
    html = await search(client, "WO")
    east_id = estates["east"].id
    assert f"WO-{east_id}" in html and "Work order" in html and "Leaking pipe" in html
    assert f"WO-{estates['west'].id}" not in html  # the plugin is only asked about the user's estates
    assert "Some results could not be loaded" in html  # broken_sections failed; everything else answered


async def test_plugin_disabled_in_the_estate_gives_no_results_there(client, estates):
    from core.models import ProjectModule

    with unscoped():
        await ProjectModule.filter(project_id=estates["east"].id, module="lookup").update(enabled=False)
    await client.login("hotline")
    html = await search(client, "WO")
    assert f"WO-{estates['west'].id}" in html and f"WO-{estates['east'].id}" not in html


async def test_another_estates_customers_never_appear(client, make_client, estates):
    await client.login("east_agent")
    for query in ("张", "zw", "zhangwei", "13800138999", "8999"):
        html = await search(client, query)
        assert "张伟" not in html and f"/customers/{estates['wang'].id}" not in html, query
    # Head office sees both estates, each result naming its estate.
    hotline = make_client()
    await hotline.login("hotline")
    html = await search(hotline, "张")
    assert "张三" in html and "张伟" in html and "Estate WEST" in html


async def test_dropdown_fragment_and_full_page(client, make_client, estates):
    await client.login("east_agent")
    fragment = await search(client, "zs")
    assert "<html" not in fragment and 'class="search-dropdown"' in fragment
    page = await search(client, "zs", htmx=False)
    assert "<html" in page and 'value="zs"' in page and "张三" in page
    assert (await search(client, "")).strip() == ""
    anonymous = make_client()
    response = await anonymous.get("/search", params={"q": "zs"})
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def sidebar_links(html: str) -> list[str]:
    start = html.find('<nav class="sidebar"')
    if start < 0:
        return []
    return re.findall(r'class="nav-link[^"]*" href="([^"]+)"', html[start:html.index("</nav>", start)])


async def test_a_single_estate_user_keeps_the_estates_menu_on_the_search_page(client, make_client, estates):
    await client.login("east_agent")
    estate_menu = sidebar_links((await client.get("/p/EAST/")).text)
    assert "/p/EAST/customers" in estate_menu
    page = await search(client, "zs", htmx=False)
    assert sidebar_links(page) == estate_menu and "no-sidebar" not in page
    assert re.search(r'<span class="summary-label">[^<]*</span>', page).group(0) == (
        f'<span class="summary-label">{estates["east"].name}</span>'
    )
    # A user of several estates has no one estate's menu there.
    hotline = make_client()
    await hotline.login("hotline")
    assert not any(link.startswith("/p/") for link in sidebar_links(await search(hotline, "zs", htmx=False)))
