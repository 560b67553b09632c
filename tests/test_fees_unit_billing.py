"""Per unit: which fee items are charged, and whether bills go to the owner or the tenant."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from tests.fees_helpers import MAY, fee_estate
from tests.test_fees_http import bill_run

JUNE = date(2026, 6, 1)


@pytest.fixture
async def estate(app, host):
    return await fee_estate(host)


def item_row(html: str, code: str) -> str:
    found = re.search(rf'<tr data-item="{code}">(.*?)</tr>', html, re.S)
    assert found, f"no row for {code}"
    return re.sub(r"\s+", " ", found.group(1))


async def lines_of(unit, period=MAY):
    from plugins.fees.models import Bill, BillLine

    bill = await Bill.get(unit_id=unit.id, period=period)
    return bill, [line.item_id for line in await BillLine.filter(bill_id=bill.id).order_by("id")]


async def test_a_manager_stops_charging_an_item_for_one_unit_and_the_bill_run_follows(client, make_client, host, estate):
    from core.timeline import TimelineEntry
    from plugins.fees.models import FeeItem, UnitItemExclusion

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    unit_url = f"/p/{project.code}/fees/units/{homes[1].id}"
    page = await client.get(unit_url)
    assert "Charged" in item_row(page.text, "GARB") and "Stop charging" in item_row(page.text, "GARB")
    assert "No rate for Residential units" in item_row(page.text, "PARK")

    missing = await client.form(unit_url + "/items", {"item": items["garbage"].id, "charged": "0", "reason": "  "})
    assert missing.status_code == 422 and "Say why this unit is not charged" in missing.text
    other_project, *_rest = await fee_estate(host, "WEST", units=1)
    foreign = await FeeItem.get(project_id=other_project.id, code="GARB")
    refused = await client.form(unit_url + "/items", {"item": foreign.id, "charged": "0", "reason": "x"})
    assert refused.status_code == 422 and "Choose a fee item of this estate." in refused.text
    assert await UnitItemExclusion.all().count() == 0

    done = await client.form(unit_url + "/items", {"item": items["garbage"].id, "charged": "0", "reason": "自行清运垃圾"})
    assert done.status_code == 303
    row = item_row((await client.get(unit_url)).text, "GARB")
    assert "Not charged" in row and "自行清运垃圾" in row and manager.display_name in row and "Charge again" in row

    till = make_client()
    await till.login(cashier.username)
    assert (await till.form(unit_url + "/items", {"item": items["garbage"].id, "charged": "1"})).status_code == 403
    cashier_page = await till.get(unit_url)
    assert "Not charged" in item_row(cashier_page.text, "GARB") and "Charge again" not in cashier_page.text

    await bill_run(client, project)
    bill, charged = await lines_of(homes[1])
    assert charged == [items["prop"].id] and bill.total == Decimal("207.98")
    _bill, neighbour = await lines_of(homes[2])
    assert neighbour == [items["prop"].id, items["garbage"].id]

    again = await client.form(unit_url + "/items", {"item": items["garbage"].id, "charged": "1"})
    assert again.status_code == 303
    assert "Charged" in item_row((await client.get(unit_url)).text, "GARB")
    await bill_run(client, project, "2026-06")
    _june, charged = await lines_of(homes[1], JUNE)
    assert charged == [items["prop"].id, items["garbage"].id]
    # Both changes are in the unit's history, with who made them.
    entries = await TimelineEntry.filter(subject="core.Unit", subject_id=homes[1].id, kind="fees_items").order_by("id")
    assert [e.author_id for e in entries] == [manager.id, manager.id]
    assert "自行清运垃圾" in entries[0].body and "自行清运垃圾" in entries[1].body


async def test_bills_go_to_the_tenant_where_the_unit_says_so(client, make_client, estate):
    from core.people import create_customer, link_unit
    from plugins.fees.models import Bill

    project, homes, space, items, cashier, manager = estate
    tenant = await create_customer(project, "租客王", ["13700137000"])
    await link_unit(tenant, homes[2], "tenant", date(2026, 3, 1))
    await client.login(manager.username)
    base = f"/p/{project.code}/fees/"

    bad = await client.form(f"{base}units/{homes[2].id}/bill-to", {"bill_to": "landlord"})
    assert bad.status_code == 422 and "Choose the owner or the tenant." in bad.text
    till = make_client()
    await till.login(cashier.username)
    assert (await till.form(f"{base}units/{homes[2].id}/bill-to", {"bill_to": "tenant"})).status_code == 403

    assert (await client.form(f"{base}units/{homes[2].id}/bill-to", {"bill_to": "tenant"})).status_code == 303
    page = await client.get(f"{base}units/{homes[2].id}")
    shown = re.search(r'id="billed-customer">(.*?)</dd>', page.text, re.S).group(1)
    assert "租客王 (Tenant)" in shown and manager.display_name in shown
    # A unit set to bill its tenant while it has none: the owner is billed, and the page says why.
    assert (await client.form(f"{base}units/{homes[3].id}/bill-to", {"bill_to": "tenant"})).status_code == 303
    lonely = await client.get(f"{base}units/{homes[3].id}")
    assert "业主3 (Owner)" in lonely.text and "no current tenant: the owner is billed" in lonely.text

    await bill_run(client, project)
    rented = await Bill.get(unit_id=homes[2].id, period=MAY)
    assert (rented.customer_id, rented.customer_relation) == (tenant.id, "tenant")
    owned = await Bill.get(unit_id=homes[3].id, period=MAY)
    assert owned.customer_relation == "owner" and owned.customer_id != tenant.id
    bill_page = await client.get(f"{base}bills/{rented.id}")
    assert re.search(r'id="bill-customer">Issued to 租客王 \(Tenant\)', bill_page.text)
    listed = await client.get(f"{base}bills?q={homes[2].code}")
    assert "租客王 (Tenant)" in listed.text

    # Back to the owner: the next month's bill goes to the owner; May's stays as issued.
    assert (await client.form(f"{base}units/{homes[2].id}/bill-to", {"bill_to": "owner"})).status_code == 303
    await bill_run(client, project, "2026-06")
    june = await Bill.get(unit_id=homes[2].id, period=JUNE)
    assert june.customer_relation == "owner" and june.customer_id != tenant.id
    assert (await Bill.get(id=rented.id)).customer_id == tenant.id
