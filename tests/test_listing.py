"""The list component behind every list page: filters, search, sorting, paging, counts, exports."""

import csv
import io
import re
from datetime import datetime, timezone
from decimal import Decimal

import openpyxl
import pytest

from bench.querycount import counting
from core.listing import Column
from core.models import Building, Customer, Unit
from core.people import create_customer, link_unit
from core.scope import unscoped
from core.testing import make_project, make_user

HTMX = {"HX-Request": "true"}


@pytest.fixture
async def estate(app, host):
    east = await make_project("EAST", host=host)
    await make_user("agent", "agent", east, locale="en")
    with unscoped():
        one = await Building.create(project=east, code="1", name="Building 1")
        two = await Building.create(project=east, code="2", name="Building 2")
        units = []
        # 20 flats in building 1 (areas 80.00, 81.00, ...), 10 shops in building 2.
        for i in range(20):
            units.append(await Unit.create(project=east, building=one, code=f"1-1-{101 + i}", floor=1 + i // 4, area=Decimal(80 + i)))
        for i in range(10):
            units.append(await Unit.create(project=east, building=two, code=f"2-1-{101 + i}", floor=1, area=Decimal(150 + i), use="commercial"))
        zhang = await create_customer(east, "张三", ["13800138000"])
        await link_unit(zhang, units[0])
        li = await create_customer(east, "李四", ["13900139000"])
        await link_unit(li, units[25])
    return {"east": east, "one": one, "two": two, "units": units}


def rows(html: str) -> list[str]:
    """Unit codes in the table, in order."""
    return re.findall(r'<a href="/p/EAST/units/\d+">([^<]+)</a>', html)


async def test_filters_narrow_the_list_and_the_count(client, estate):
    await client.login("agent")
    page = await client.get("/p/EAST/units", params={"use": "commercial"})
    assert page.status_code == 200
    assert 'data-total="10"' in page.text and "10 records" in page.text
    assert all(code.startswith("2-") for code in rows(page.text)) and len(rows(page.text)) == 10

    page = await client.get("/p/EAST/units", params={"building": estate["one"].id})
    assert 'data-total="20"' in page.text and all(code.startswith("1-") for code in rows(page.text))

    owned = await client.get("/p/EAST/units", params={"owned": "1"})
    assert rows(owned.text) == ["1-1-101", "2-1-106"]
    unowned = await client.get("/p/EAST/units", params={"owned": "0"})
    assert 'data-total="28"' in unowned.text


async def test_bad_filter_value_is_reported_next_to_the_filter_and_ignored(client, estate):
    await client.login("agent")
    page = await client.get("/p/EAST/customers", params={"created_from": "2024-13-45"})
    assert page.status_code == 422
    assert "Enter dates as YYYY-MM-DD." in page.text
    assert 'data-total="2"' in page.text  # nothing was filtered away

    page = await client.get("/p/EAST/units", params={"use": "castle"})
    assert page.status_code == 422 and "Choose one of the listed options." in page.text
    assert 'data-total="30"' in page.text


async def test_sorting_by_whitelisted_columns_only(client, estate):
    await client.login("agent")
    page = await client.get("/p/EAST/units", params={"sort": "-area", "per": "50"})
    codes = rows(page.text)
    assert codes[0] == "2-1-110" and codes[-1] == "1-1-101"
    assert 'class="sort desc"' in page.text
    # Columns that are not sortable (and arbitrary fields) fall back to the default order.
    for sort in ("owners", "project_id", "-password_hash"):
        page = await client.get("/p/EAST/units", params={"sort": sort, "per": "50"})
        assert page.status_code == 200 and rows(page.text)[0] == "1-1-101"


async def test_pagination_and_page_size(client, estate):
    await client.login("agent")
    first = await client.get("/p/EAST/units")
    assert len(rows(first.text)) == 25 and "1–25 of 30" in first.text
    assert 'href="/p/EAST/units?page=2"' in first.text
    second = await client.get("/p/EAST/units", params={"page": "2"})
    assert rows(second.text) == [f"2-1-{106 + i}" for i in range(5)] and "26–30 of 30" in second.text
    # Past the end shows the last page; a size that is not offered falls back to the default.
    assert rows((await client.get("/p/EAST/units", params={"page": "99"})).text) == rows(second.text)
    assert len(rows((await client.get("/p/EAST/units", params={"per": "100000"})).text)) == 25
    assert len(rows((await client.get("/p/EAST/units", params={"per": "50"})).text)) == 30


async def test_a_page_comes_with_its_total_in_one_statement(client, estate):
    await client.login("agent")
    await client.get("/p/EAST/units")
    with counting() as queries:
        second = await client.get("/p/EAST/units", params={"page": "2"})
    assert len(rows(second.text)) == 5 and "26–30 of 30" in second.text
    assert not [sql for sql in queries if sql.lstrip().upper().startswith("SELECT COUNT")]  # no count of its own
    # Nothing found, on any page: a total of 0. Past the end of a filtered list: its last page and its total.
    for number in ("1", "3"):
        empty = await client.get("/p/EAST/units", params={"q": "no-such-unit", "page": number})
        assert empty.status_code == 200 and 'data-total="0"' in empty.text and rows(empty.text) == []
    shops = await client.get("/p/EAST/units", params={"use": "commercial", "page": "4"})
    assert 'data-total="10"' in shops.text and rows(shops.text) == [f"2-1-{101 + i}" for i in range(10)]


async def test_search_box(client, estate):
    await client.login("agent")
    page = await client.get("/p/EAST/units", params={"q": "2-1-10"})
    assert rows(page.text) == [f"2-1-{101 + i}" for i in range(9)]
    by_owner = await client.get("/p/EAST/units", params={"q": "李四"})
    assert rows(by_owner.text) == ["2-1-106"]
    customers = await client.get("/p/EAST/customers", params={"q": "zs"})
    assert "张三" in customers.text and "李四" not in customers.text
    by_phone = await client.get("/p/EAST/customers", params={"q": "139 0013 9000"})
    assert "李四" in by_phone.text and "张三" not in by_phone.text


async def test_date_range_uses_whole_local_days(client, estate):
    with unscoped():
        # 2024-03-01 23:30 in Shanghai is still 2024-03-01 there, though 15:30 UTC.
        await Customer.filter(name="张三").update(created_at=datetime(2024, 3, 1, 15, 30, tzinfo=timezone.utc))
        await Customer.filter(name="李四").update(created_at=datetime(2024, 3, 1, 16, 30, tzinfo=timezone.utc))
    await client.login("agent")
    page = await client.get("/p/EAST/customers", params={"created_from": "2024-03-01", "created_to": "2024-03-01"})
    assert "张三" in page.text and "李四" not in page.text
    page = await client.get("/p/EAST/customers", params={"created_from": "2024-03-02"})
    assert "李四" in page.text and "张三" not in page.text
    page = await client.get("/p/EAST/customers", params={"created_from": "2024-03-05", "created_to": "2024-03-01"})
    assert page.status_code == 422 and "The start date is after the end date." in page.text


async def test_htmx_gets_only_the_list_and_the_url_works_without_js(client, estate):
    await client.login("agent")
    fragment = await client.get("/p/EAST/units", params={"use": "commercial"}, headers=HTMX)
    assert fragment.text.lstrip().startswith('<div id="list-units"') and "<html" not in fragment.text
    assert 'hx-push-url="true"' in fragment.text
    full = await client.get("/p/EAST/units", params={"use": "commercial"})
    assert "<html" in full.text and 'id="list-units"' in full.text
    # Sort links keep the filter; the export link carries the filter and sort.
    assert 'href="/p/EAST/units?use=commercial&amp;sort=-code"' in full.text
    assert "/p/EAST/units?use=commercial&amp;export=xlsx" in full.text


async def test_xlsx_export_is_the_filtered_sorted_list_as_shown(client, estate):
    await client.login("agent")
    response = await client.get("/p/EAST/units", params={"use": "commercial", "sort": "-area", "export": "xlsx"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "attachment" in response.headers["content-disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True).active
    table = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert table[0] == ["Unit", "Building", "Floor", "Area (m²)", "Use", "Layout", "Owner"]
    assert len(table) == 11  # header + the 10 shops, not the flats
    assert [row[0] for row in table[1:]] == [f"2-1-{110 - i}" for i in range(10)]
    shop = table[5]  # 2-1-106, owned by 李四
    assert shop[1] == "Building 2" and shop[4] == "Commercial" and shop[6] == "李四"
    assert shop[3] == 155  # numbers stay numbers in a spreadsheet


async def test_csv_export_opens_in_excel_and_respects_the_search(client, estate):
    await client.login("agent")
    response = await client.get("/p/EAST/customers", params={"q": "zhang", "export": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads the Chinese as UTF-8
    table = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert table[0][:3] == ["Name", "Phone", "Units"]
    assert len(table) == 2 and table[1][0] == "张三"
    assert table[1][1] == "138****8000"  # the agent sees masked numbers, in the export too
    assert table[1][2] == "1-1-101 (Owner)" and table[1][4] == "Phone"


def test_column_formats_show_labels_and_local_times():
    when = datetime(2024, 3, 1, 16, 30, tzinfo=timezone.utc)
    assert Column("at", "At", format="datetime").text(when, "Asia/Shanghai") == "2024-03-02 00:30"
    assert Column("on", "On", format="date").text(when, "Asia/Shanghai") == "2024-03-02"
    assert Column("use", "Use", format="choice", choices={"parking": "Parking"}).text("parking", "UTC") == "Parking"
    assert Column("fee", "Fee", format="money").sheet_value(Decimal("12.50"), "UTC") == Decimal("12.50")
    with pytest.raises(ValueError):
        Column("x", "X", format="colour")
