"""Customers, units and buildings pages, the customer form and the customer 360 page."""

import logging
import re

import pytest

from core.models import Customer, CustomerPhone, CustomerUnit
from core.people import create_customer, link_unit
from core.scope import unscoped
from core.testing import make_project, make_units, make_user


@pytest.fixture
def plugin_modules():
    return ["tests.sample_plugins.hello", "tests.sample_plugins.lookup", "tests.sample_plugins.broken_sections"]


@pytest.fixture
async def estate(app, host):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    for username, role in (("agent", "agent"), ("manager", "manager"), ("viewer", "readonly")):
        await make_user(username, role, east, locale="en")
    units = await make_units(east, 3)
    west_units = await make_units(west, 1, building_code="7")
    with unscoped():
        zhang = await create_customer(east, "张三", ["13800138000"], id_number="110101199003071234")
        await link_unit(zhang, units[0])
        wang = await create_customer(west, "王五", ["13700137000"])
    return {"east": east, "west": west, "units": units, "zhang": zhang, "wang": wang, "west_units": west_units}


async def phones_of(name: str) -> list[str]:
    with unscoped():
        customer = await Customer.get(name=name)
        return sorted(await CustomerPhone.filter(customer=customer).values_list("number", flat=True))


async def test_phones_and_id_numbers_are_masked_unless_permitted(client, make_client, estate):
    await client.login("agent")
    listing = await client.get("/p/EAST/customers")
    assert "138****8000" in listing.text and "138 0013 8000" not in listing.text
    page = await client.get(f"/p/EAST/customers/{estate['zhang'].id}")
    assert "138****8000" in page.text and "110101199003071234" not in page.text and "1101**********1234" in page.text

    manager = make_client()
    await manager.login("manager")
    listing = await manager.get("/p/EAST/customers")
    assert "138 0013 8000" in listing.text
    page = await manager.get(f"/p/EAST/customers/{estate['zhang'].id}")
    assert "110101199003071234" in page.text


async def test_create_customer_with_several_phone_spellings(client, estate):
    await client.login("agent")
    form = await client.get("/p/EAST/customers/new")
    assert form.status_code == 200 and 'name="phone_0"' in form.text
    response = await client.form(
        "/p/EAST/customers/new",
        {"name": "赵六", "phone_0": "139 0013 9001", "phone_1": "+86 139-0013-9002", "phone_2": "",
         "email": "zhao@example.com", "preferred_channel": "wechat", "locale": "zh_CN"},
    )
    assert response.status_code == 303
    with unscoped():
        customer = await Customer.get(name="赵六")
    assert response.headers["location"] == f"/p/EAST/customers/{customer.id}"
    assert customer.name_pinyin == "zhaoliu" and customer.name_initials == "zl"
    assert await phones_of("赵六") == ["+8613900139001", "+8613900139002"]
    page = await client.get(response.headers["location"])
    assert "赵六" in page.text and "WeChat" in page.text and "zhao@example.com" in page.text


async def test_invalid_input_is_shown_next_to_the_field_and_saves_nothing(client, estate):
    await client.login("agent")
    response = await client.form(
        "/p/EAST/customers/new",
        {"name": "", "phone_0": "13800138001", "phone_1": "12ab", "email": "not-an-email",
         "preferred_channel": "pigeon", "locale": "zh_CN"},
        htmx=True,
    )
    assert response.status_code == 422
    html = response.text
    assert "<html" not in html and 'id="customer-form"' in html
    assert re.search(r'id="f-phone_1-error">“12ab” is not a valid phone number.', html)
    assert 'id="f-name-error">Enter the customer&#39;s name.' in html
    assert 'id="f-email-error"' in html and 'id="f-preferred_channel-error"' in html
    assert 'value="13800138001"' in html  # what was typed is kept
    with unscoped():
        assert await Customer.filter(project_id=estate["east"].id).count() == 1


async def test_duplicate_phone_in_the_estate_warns_and_links_to_the_customer(client, estate):
    await client.login("agent")
    data = {"name": "张三丰", "phone_0": "+86 138 0013 8000", "preferred_channel": "phone", "locale": "zh_CN"}
    response = await client.form("/p/EAST/customers/new", data)
    assert response.status_code == 422
    assert "already belongs to another customer" in response.text
    assert f'href="/p/EAST/customers/{estate["zhang"].id}">张三</a>' in response.text
    with unscoped():
        assert not await Customer.exists(name="张三丰")
    # Family members may share a landline: confirmed, it is saved.
    response = await client.form("/p/EAST/customers/new", {**data, "confirm_duplicates": "1"})
    assert response.status_code == 303
    assert await phones_of("张三丰") == ["+8613800138000"]
    # The same number in another estate is no duplicate here.
    response = await client.form("/p/EAST/customers/new", {**data, "name": "周七", "phone_0": "13700137000"})
    assert response.status_code == 303


async def test_edit_customer_updates_pinyin_and_phones(client, make_client, estate):
    zhang = estate["zhang"]
    manager = make_client()
    await manager.login("manager")
    form = await manager.get(f"/p/EAST/customers/{zhang.id}/edit")
    assert 'value="138 0013 8000"' in form.text
    response = await manager.form(
        f"/p/EAST/customers/{zhang.id}/edit",
        {"name": "张小三", "phone_0": "", "phone_1": "13600136000", "preferred_channel": "sms", "locale": "en",
         "id_number": "110101199003075678"},
    )
    assert response.status_code == 303
    with unscoped():
        customer = await Customer.get(id=zhang.id)
    assert customer.name_pinyin == "zhangxiaosan" and customer.name_initials == "zxs"
    assert customer.id_number == "110101199003075678"
    assert await phones_of("张小三") == ["+8613600136000"]


async def test_agent_edits_phones_without_reading_them(client, estate):
    zhang = estate["zhang"]
    await client.login("agent")
    form = await client.get(f"/p/EAST/customers/{zhang.id}/edit")
    assert "138****8000" in form.text and "138 0013 8000" not in form.text and "13800138000" not in form.text
    assert "110101199003071234" not in form.text
    with unscoped():
        phone = await CustomerPhone.get(customer_id=zhang.id)
    data = {"name": "张三", "phone_0": "13600136000", "preferred_channel": "phone", "locale": "zh_CN"}
    response = await client.form(f"/p/EAST/customers/{zhang.id}/edit", {**data, "keep": str(phone.id)})
    assert response.status_code == 303
    assert await phones_of("张三") == ["+8613600136000", "+8613800138000"]
    with unscoped():
        assert (await Customer.get(id=zhang.id)).id_number == "110101199003071234"  # not on the form, not touched
    response = await client.form(f"/p/EAST/customers/{zhang.id}/edit", data)  # unticked: removed
    assert response.status_code == 303
    assert await phones_of("张三") == ["+8613600136000"]


async def test_only_editors_change_customers(client, estate):
    await client.login("viewer")
    assert (await client.get("/p/EAST/customers")).status_code == 200
    assert (await client.get("/p/EAST/customers/new")).status_code == 403
    assert (await client.form("/p/EAST/customers/new", {"name": "X"})).status_code == 403
    page = await client.get(f"/p/EAST/customers/{estate['zhang'].id}")
    assert "Link to a unit" not in page.text and "/edit" not in page.text


async def test_link_customer_to_unit_and_end_it(client, estate):
    zhang = estate["zhang"]
    base = f"/p/EAST/customers/{zhang.id}"
    await client.login("agent")
    bad = await client.form(f"{base}/units", {"unit": "9-9-999", "relation": "tenant"}, htmx=True)
    assert bad.status_code == 422 and "No unit 9-9-999 in this estate." in bad.text
    assert bad.text.lstrip().startswith('<section class="card" id="customer-units"')
    west_unit = estate["west_units"][0].code  # exists, but in another estate
    assert (await client.form(f"{base}/units", {"unit": west_unit, "relation": "tenant"})).status_code == 422
    bad = await client.form(
        f"{base}/units", {"unit": "1-1-102", "relation": "tenant", "start_date": "2024-05-01", "end_date": "2024-04-01"}
    )
    assert bad.status_code == 422 and "The end date is before the start date." in bad.text
    again = await client.form(f"{base}/units", {"unit": "1-1-101", "relation": "owner"})
    assert again.status_code == 422 and "already linked" in again.text

    ok = await client.form(f"{base}/units", {"unit": "1-1-102", "relation": "tenant", "start_date": "2024-05-01"})
    assert ok.status_code == 303
    page = await client.get(base)
    assert "1-1-102" in page.text and "Tenant" in page.text and "2024-05-01" in page.text

    with unscoped():
        link = await CustomerUnit.get(customer_id=zhang.id, relation="tenant")
    assert (await client.form(f"{base}/units/{link.id}/end", {"end_date": "2024-04-01"})).status_code == 422
    assert (await client.form(f"{base}/units/{link.id}/end", {"end_date": "2024-06-30"})).status_code == 303
    with unscoped():
        assert (await CustomerUnit.get(id=link.id)).end_date.isoformat() == "2024-06-30"


async def test_customer_360_shows_plugin_sections_and_contains_failures(client, estate, caplog):
    await client.login("agent")
    with caplog.at_level(logging.ERROR):
        page = await client.get(f"/p/EAST/customers/{estate['zhang'].id}")
    assert page.status_code == 200
    assert '<p class="hello-section">hi 张三</p>' in page.text
    assert "1-1-101" in page.text and "Owner" in page.text
    # The plugin whose hook raised and the section whose template failed: "unavailable" in their place only.
    assert page.text.count("Section unavailable") == 2
    assert 'data-plugin="broken_sections"' in page.text and "Broken section" in page.text
    assert "Never shown" not in page.text and "Secret section" not in page.text
    assert "the plugin&#39;s database is down" not in page.text
    logged = caplog.text
    assert "broken_sections" in logged and "lookup/broken.html" in logged


async def test_disabled_plugin_adds_no_section(client, estate):
    from core.models import ProjectModule

    with unscoped():
        await ProjectModule.filter(project_id=estate["east"].id, module="hello").update(enabled=False)
    await client.login("agent")
    page = await client.get(f"/p/EAST/customers/{estate['zhang'].id}")
    assert "hello-section" not in page.text


async def test_another_estates_customer_does_not_exist(client, estate):
    await client.login("agent")
    assert (await client.get(f"/p/EAST/customers/{estate['wang'].id}")).status_code == 404
    assert (await client.get(f"/p/EAST/customers/{estate['wang'].id}/edit")).status_code == 404
    assert (await client.get(f"/p/WEST/customers/{estate['wang'].id}")).status_code == 404
    assert "王五" not in (await client.get("/p/EAST/customers")).text


async def test_unit_and_building_pages(client, estate):
    await client.login("agent")
    units = await client.get("/p/EAST/units")
    assert units.status_code == 200
    row = re.search(r"<tr>\s*<td[^>]*><a href=\"/p/EAST/units/(\d+)\">1-1-101</a>.*?</tr>", units.text, re.S)
    assert row and "张三" in row.group(0) and "88.50" in row.group(0) and "Residential" in row.group(0)
    unit = await client.get(f"/p/EAST/units/{row.group(1)}")
    assert unit.status_code == 200 and "张三" in unit.text and "Owner" in unit.text
    buildings = await client.get("/p/EAST/buildings")
    assert buildings.status_code == 200
    assert re.search(r">1</a></td>\s*<td[^>]*>1栋</td>\s*<td[^>]*>0</td>\s*<td[^>]*>3</td>", buildings.text)
    nav = await client.get("/p/EAST/")
    assert 'href="/p/EAST/customers"' in nav.text and 'href="/p/EAST/units"' in nav.text
