"""Pass-through amounts (water, power at cost): typed in or imported, checked per row, billed by the bill run."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest

from tests.fees_helpers import MAY, fee_estate
from tests.test_fees_http import bill_run


@pytest.fixture
async def estate(app, host):
    return await fee_estate(host)


def csv_file(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode("utf-8")


async def upload(client, project, content: bytes, name="water.csv", **fields):
    data = {"import_item": "", "import_period": "", **fields}
    return await client.form(f"/p/{project.code}/fees/metered/imports", data,
                             files={"file": (name, content, "application/octet-stream")})


async def water_of(unit, period=MAY):
    from plugins.fees.models import MeterCharge

    return await MeterCharge.get_or_none(unit_id=unit.id, period=period)


async def test_an_amount_typed_in_is_checked_and_billed(client, make_client, estate):
    from plugins.fees.models import Bill, BillLine, MeterCharge

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    url = f"/p/{project.code}/fees/metered"
    water = str(items["water"].id)
    for data, message in (
        ({"unit": "9-9-999", "item": water, "period": "2026-05", "amount": "36.40"}, "Unknown unit 9-9-999"),
        ({"unit": "1-1-101", "item": str(items["garbage"].id), "period": "2026-05", "amount": "36.40"},
         "垃圾清运费 is not a pass-through item"),
        ({"unit": "1-1-101", "item": water, "period": "May", "amount": "36.40"}, "Enter the month as YYYY-MM, not May"),
        ({"unit": "1-1-101", "item": water, "period": "2026-05", "amount": "36.405"}, "at most 2 decimals"),
        ({"unit": "1-1-101", "item": water, "period": "2026-05", "amount": "-3"}, "Enter an amount greater than zero."),
    ):
        bad = await client.form(url, data)
        assert bad.status_code == 422 and message in bad.text, (data, bad.text[:2000])
        assert f'value="{data["amount"]}"' in bad.text  # what was typed is kept
    assert await MeterCharge.all().count() == 0

    saved = await client.form(url, {"unit": " 1-1-101 ", "item": water, "period": "2026/5", "amount": "36.40",
                                    "note": "读数 1532"})
    assert saved.status_code == 303
    # Typed again before the bill run: the amount is replaced, not added.
    again = await client.form(url, {"unit": "1-1-101", "item": water, "period": "2026-05", "amount": "38.10"})
    assert again.status_code == 303
    charge = await water_of(homes[0])
    assert (charge.amount, charge.updated_by_id) == (Decimal("38.10"), manager.id)
    assert await MeterCharge.all().count() == 1
    listed = await client.get(url + "?period=2026-05")
    assert "1-1-101" in listed.text and "¥38.10" in listed.text

    till = make_client()
    await till.login(cashier.username)
    assert (await till.get(url)).status_code == 200
    assert (await till.form(url, {"unit": "1-1-102", "item": water, "period": "2026-05", "amount": "1"})).status_code == 403

    await bill_run(client, project)
    bill = await Bill.get(unit_id=homes[0].id, period=MAY)
    lines = {line.description: line.amount for line in await BillLine.filter(bill_id=bill.id)}
    assert lines == {"物业费": Decimal("207.98"), "垃圾清运费": Decimal("10.00"), "水费": Decimal("38.10")}
    assert bill.total == Decimal("256.08")
    # Billed: the month's amount can no longer change, and the page says why.
    late = await client.form(url, {"unit": "1-1-101", "item": water, "period": "2026-05", "amount": "40"})
    assert late.status_code == 422 and f"({bill.number}) is already issued" in late.text
    assert (await water_of(homes[0])).amount == Decimal("38.10")


async def test_a_file_with_errors_is_reported_per_row_and_nothing_is_written(client, estate):
    from plugins.fees.models import MeterCharge, MeterImport

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    content = csv_file(
        "房号,费用项目,月份,金额,备注",
        "1-1-101,WATER,2026-05,36.40,ok",
        "1-1-999,WATER,2026-05,10,",
        "1-1-102,GARB,2026-05,10,",
        "1-1-103,WATER,2026-13,10,",
        "1-1-104,WATER,2026-05,12.345,",
        "1-1-101,水费,2026-05,1.00,twice",
    )
    response = await upload(client, project, content)
    assert response.status_code == 303
    page = await client.get(response.headers["location"])
    errors = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", page.text)
    assert [(row, column) for row, column, _m in errors] == [
        ("3", "Unit code"), ("4", "Fee item"), ("5", "Month"), ("6", "Amount"), ("7", "Unit code")]
    messages = " ".join(m for _r, _c, m in errors)
    assert "Unknown unit 1-1-999" in messages and "垃圾清运费 is not a pass-through item" in messages
    assert "another amount for 水费 in 2026-05 in row 2" in messages
    assert "The file has 5 errors. Nothing was imported" in page.text
    assert 'type="submit">Import' not in page.text  # no button to import a file with errors
    batch = await MeterImport.get()
    assert batch.state == "invalid"
    assert (await client.form(f"/p/{project.code}/fees/metered/imports/{batch.id}")).status_code == 422
    assert await MeterCharge.all().count() == 0

    for content, name, message in (
        (b"", "empty.csv", "The file is empty."),
        (csv_file("name,phone", "x,y"), "other.csv", "The first row must name the columns"),
        (b"PK\x03\x04 not really", "book.xlsx", "not a valid .xlsx workbook"),
    ):
        response = await upload(client, project, content, name)
        page = await client.get(response.headers["location"])
        assert message in page.text, name
    refused = await upload(client, project, b"x", "old.xls")
    assert refused.status_code == 422 and "Old .xls workbooks cannot be read" in refused.text
    assert await MeterCharge.all().count() == 0


async def test_an_import_is_previewed_confirmed_once_and_a_reimport_duplicates_nothing(client, estate):
    from openpyxl import Workbook

    from plugins.fees.models import Bill, MeterCharge

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    template = await client.get(f"/p/{project.code}/fees/metered/template")
    assert template.status_code == 200 and template.content[:2] == b"PK"

    book = Workbook()
    sheet = book.active
    sheet.append(["房号", "金额", "备注"])  # item and month come from the upload form
    for i, unit in enumerate(homes):
        sheet.append([unit.code, 30 + i + 0.5, f"读数 {100 + i}"])
    out = io.BytesIO()
    book.save(out)
    form = {"import_item": str(items["water"].id), "import_period": "2026-05"}
    response = await upload(client, project, out.getvalue(), "水费2026-05.xlsx", **form)
    page = await client.get(response.headers["location"])
    assert "All 5 rows checked, no errors." in page.text and "¥162.50" in page.text
    assert re.search(r'data-summary="created">5<', page.text) and "1-1-101" in page.text
    assert await MeterCharge.all().count() == 0  # nothing until confirmed

    url = response.headers["location"]
    confirmed = await client.form(url)
    assert confirmed.status_code == 303
    assert await MeterCharge.all().count() == 5 and (await water_of(homes[2])).amount == Decimal("32.50")
    twice = await client.form(url)  # the confirm button pressed again
    assert twice.status_code == 422 and "already imported" in twice.text
    assert await MeterCharge.all().count() == 5

    # The same file again: everything unchanged; a corrected row is an update, not a second amount.
    sheet.cell(row=3, column=2, value=99)
    out = io.BytesIO()
    book.save(out)
    second = await upload(client, project, out.getvalue(), "水费2026-05-v2.xlsx", **form)
    page = await client.get(second.headers["location"])
    assert re.search(r'data-summary="unchanged">4<', page.text) and re.search(r'data-summary="updated">1<', page.text)
    assert (await client.form(second.headers["location"])).status_code == 303
    assert await MeterCharge.all().count() == 5 and (await water_of(homes[1])).amount == Decimal("99.00")

    await bill_run(client, project)
    assert (await Bill.get(unit_id=homes[1].id, period=MAY)).total == Decimal("207.98") + 10 + 99

    # Re-importing the first file after the bill run: a changed amount for a billed month is refused.
    third = await upload(client, project, out.getvalue(), "again.xlsx", **form)
    page = await client.get(third.headers["location"])
    assert "All 5 rows checked, no errors." in page.text  # unchanged amounts of a billed month are fine
    assert re.search(r'data-summary="unchanged">5<', page.text)
    sheet.cell(row=3, column=2, value=1)
    out = io.BytesIO()
    book.save(out)
    fourth = await upload(client, project, out.getvalue(), "late.xlsx", **form)
    page = await client.get(fourth.headers["location"])
    assert "The file has 1 error." in page.text and "is already issued" in page.text


async def test_a_month_billed_between_upload_and_confirmation_refuses_the_whole_import(client, estate):
    from plugins.fees.models import MeterCharge

    project, homes, space, items, cashier, manager = estate
    await client.login(manager.username)
    content = csv_file("房号,费用项目,月份,金额", "1-1-101,WATER,2026-05,10", "1-1-102,WATER,2026-06,20")
    response = await upload(client, project, content)
    await bill_run(client, project)  # May is billed meanwhile
    refused = await client.form(response.headers["location"])
    assert refused.status_code == 422 and "Nothing was imported" in refused.text and "is already issued" in refused.text
    assert await MeterCharge.all().count() == 0  # June's good row was not written either
