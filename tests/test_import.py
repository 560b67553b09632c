"""Importing buildings, units and customers: error report, all-or-nothing, idempotent, encodings."""

import asyncio
import io
import re
from decimal import Decimal

import openpyxl
import pytest

from core.importer import ImportBatch, map_header
from core.models import Building, Customer, CustomerPhone, CustomerUnit, Unit
from core.scope import unscoped
from core.testing import make_project, make_units, make_user

HEADER = ["楼栋", "房号", "楼层", "面积(㎡)", "用途", "业主姓名", "电话", "关系", "身份证号", "邮箱"]
ROWS = [
    ["3", "3-2-1502", "15", "88.50", "住宅", "张三", "138 0013 8000", "业主", "110101199003077777", "zs@example.com"],
    ["3", "3-2-1502", "15", "88.50", "住宅", "李梅", "+86 139 0013 9000", "家属", "", ""],
    ["3", "3-2-1601", "16", "120", "住宅", "王五", "13700137000/13600136000", "租户", "", ""],
    ["B1", "B1-001", "-1", "12.5", "车位", "", "", "", "", ""],
]


def csv_bytes(rows, encoding="utf-8-sig") -> bytes:
    text = "\r\n".join(",".join(row) for row in rows) + "\r\n"
    return text.encode(encoding)


def xlsx_bytes(rows) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        # Excel users type numbers as numbers: phones and floors arrive as floats/ints.
        sheet.append([float(c) if re.fullmatch(r"\d{11}|-?\d+", c) else c for c in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.fixture
async def estates(app, host):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    await make_user("east_admin", "admin", east)
    await make_user("east_agent", "agent", east)
    return east, west


async def upload(client, name, content) -> "httpx.Response":  # noqa: F821
    return await client.form("/p/EAST/import", {}, files={"file": (name, content, "application/octet-stream")})


async def upload_ok(client, name, content) -> str:
    response = await upload(client, name, content)
    assert response.status_code == 303, response.text[:2000]
    location = response.headers["location"]
    assert re.fullmatch(r"/p/EAST/import/\d+", location)
    return location


async def commit_and_wait(client, page: str) -> str:
    response = await client.form(page + "/commit", {})
    assert response.status_code == 303 and response.headers["location"] == page
    for _ in range(200):
        fragment = await client.get(page + "/progress", headers={"HX-Request": "true"})
        assert fragment.status_code == 200
        state = re.search(r'data-state="(\w+)"', fragment.text).group(1)
        if state in ("done", "failed"):
            return fragment.text
        assert 'hx-trigger="every 1s"' in fragment.text  # the page keeps polling while it runs
        await asyncio.sleep(0.05)
    raise AssertionError("import did not finish")


async def counts(project):
    with unscoped():
        return (
            await Building.filter(project=project).count(),
            await Unit.filter(project=project).count(),
            await Customer.filter(project=project).count(),
            await CustomerPhone.filter(project=project).count(),
            await CustomerUnit.filter(project=project).count(),
        )


async def test_a_file_with_one_bad_row_writes_nothing_then_the_corrected_file_is_imported(client, estates):
    east, west = estates
    await client.login("east_admin")
    bad = [HEADER, *ROWS[:2], ["3", "3-2-1601", "16", "一百二", "住宅", "王五", "12345", "租户", "", ""], ROWS[3]]
    page = await upload_ok(client, "业主清单.csv", csv_bytes(bad))
    report = await client.get(page)
    assert "Has errors" in report.text and "Nothing was imported" in report.text
    errors = re.findall(r'<tr><td class="num">(\d+)</td><td>([^<]*)</td><td class="wrap">([^<]*)</td></tr>', report.text)
    assert errors == [
        ("4", "Area (m²)", "Area must be a number of square metres, not 一百二."),
        ("4", "Phone", "12345 is not a phone number."),
    ]
    assert (await client.form(page + "/commit", {})).status_code == 422
    assert await counts(east) == (0, 0, 0, 0, 0)

    good = [HEADER, *ROWS]
    page = await upload_ok(client, "业主清单.csv", csv_bytes(good))
    preview = await client.get(page)
    assert "All 4 rows checked, no errors." in preview.text
    assert "3-2-1502" in preview.text and "Unit code" in preview.text  # the preview maps 房号 to unit code
    finished = await commit_and_wait(client, page)
    assert 'data-state="done"' in finished and "100%" in finished and "4 rows imported." in finished

    assert await counts(east) == (2, 3, 3, 4, 3)
    assert await counts(west) == (0, 0, 0, 0, 0)
    with unscoped():
        unit = await Unit.get(project=east, code="3-2-1502").prefetch_related("building")
        assert (unit.building.code, unit.floor, unit.area, unit.use) == ("3", 15, Decimal("88.50"), "residential")
        parking = await Unit.get(project=east, code="B1-001")
        assert (parking.floor, parking.use) == (-1, "parking")
        zhang = await Customer.get(project=east, name="张三")
        assert (zhang.name_pinyin, zhang.email, zhang.id_number) == ("zhangsan", "zs@example.com", "110101199003077777")
        relations = set(await CustomerUnit.filter(project=east).values_list("customer__name", "unit__code", "relation"))
        assert relations == {("张三", "3-2-1502", "owner"), ("李梅", "3-2-1502", "family"), ("王五", "3-2-1601", "tenant")}
        assert set(await CustomerPhone.filter(customer__name="王五").values_list("number", flat=True)) == {
            "+8613700137000", "+8613600136000",
        }


async def test_importing_the_same_file_again_creates_no_duplicates(client, estates):
    east, west = estates
    await client.login("east_admin")
    content = xlsx_bytes([HEADER, *ROWS])
    await commit_and_wait(client, await upload_ok(client, "units.xlsx", content))
    first = await counts(east)

    # Same people with other spellings of their numbers, one new email: updated, not duplicated.
    again = [HEADER, *ROWS]
    again[1] = [*ROWS[0][:6], "+86 138-0013-8000", "业主", "", "zhang3@example.com"]
    finished = await commit_and_wait(client, await upload_ok(client, "units.xlsx", xlsx_bytes(again)))
    assert await counts(east) == first == (2, 3, 3, 4, 3)
    for key, value in {"units_created": 0, "customers_created": 0, "links_created": 0, "customers_updated": 3}.items():
        assert f'data-summary="{key}">{value}<' in finished
    with unscoped():
        assert (await Customer.get(project=east, name="张三")).email == "zhang3@example.com"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "gb18030"])
async def test_csv_in_utf8_with_or_without_bom_and_gb18030(client, estates, encoding):
    east, west = estates
    await client.login("east_admin")
    content = csv_bytes([HEADER, *ROWS], encoding)
    if encoding == "gb18030":
        with pytest.raises(UnicodeDecodeError):
            content.decode("utf-8")  # really not UTF-8, as Chinese Excel writes it
    await commit_and_wait(client, await upload_ok(client, "清单.csv", content))
    with unscoped():
        assert set(await Customer.filter(project=east).values_list("name", flat=True)) == {"张三", "李梅", "王五"}
        assert await Building.filter(project=east, code="B1").exists()


async def test_units_of_unknown_buildings_and_duplicate_units_are_reported(client, estates):
    east, west = estates
    await make_units(east, 1, building_code="1")
    await client.login("east_admin")
    rows = [
        ["unit code", "floor", "area", "use"],  # English headers, no building column
        ["1-1-201", "2", "90", "residential"],
        ["9-1-101", "1", "90", "residential"],
        ["1-1-201", "2", "90", "residential"],
        ["1-1-301", "3", "90", "office"],
    ]
    page = await upload_ok(client, "units.csv", csv_bytes(rows, "utf-8"))
    text = (await client.get(page)).text
    assert "Unknown building 9" in text
    assert "Unit 1-1-201 is listed twice (also row 2)." in text
    assert "Unknown use office" in text
    assert await counts(east) == (1, 1, 0, 0, 0)


async def test_files_that_cannot_be_read_get_a_clear_message(client, estates):
    east, west = estates
    await client.login("east_admin")
    for name, content, message in [
        ("old.xls", b"\xd0\xcf\x11\xe0", "Old .xls workbooks cannot be read"),
        ("notes.docx", b"PK", "Upload an .xlsx workbook or a .csv file."),
    ]:
        response = await upload(client, name, content)
        assert response.status_code == 422 and message in response.text
    page = await upload_ok(client, "broken.xlsx", b"not a zip")
    assert "The file is not a valid .xlsx workbook." in (await client.get(page)).text
    page = await upload_ok(client, "random.csv", csv_bytes([["a", "b"], ["1", "2"]], "utf-8"))
    assert "No known columns in the first row." in (await client.get(page)).text
    with unscoped():
        assert await ImportBatch.filter(file_path__not="").count() == 0  # rejected uploads leave no file


async def test_import_needs_its_permission_and_the_template_has_the_headers(client, make_client, estates):
    east, west = estates
    agent = make_client()
    await agent.login("east_agent")
    assert (await agent.get("/p/EAST/import")).status_code == 403
    assert (await agent.form("/p/EAST/import", {})).status_code == 403
    assert 'href="/p/EAST/import"' not in (await agent.get("/p/EAST/")).text

    await client.login("east_admin")
    assert 'href="/p/EAST/import"' in (await client.get("/p/EAST/")).text
    assert (await client.get("/p/WEST/import")).status_code == 404
    template = await client.get("/p/EAST/import/template.xlsx")
    assert template.status_code == 200 and template.headers["content-disposition"].startswith("attachment")
    sheet = openpyxl.load_workbook(io.BytesIO(template.content)).worksheets[0]
    headers = [c.value for c in sheet[1]]
    mapping, _ = map_header(headers)
    assert {"building", "unit", "floor", "area", "use", "name", "phone", "relation", "id_number", "email"} <= set(mapping)


async def test_a_large_file_is_committed_in_the_background_up_to_100_percent(client, estates):
    east, west = estates
    await client.login("east_admin")
    rows = [["楼栋", "房号", "面积", "业主姓名", "手机号"]]
    for i in range(250):
        rows.append([str(1 + i // 100), f"{1 + i // 100}-1-{1000 + i}", "90", f"业主{i}", f"1390000{i:04d}"])
    page = await upload_ok(client, "big.xlsx", xlsx_bytes(rows))
    finished = await commit_and_wait(client, page)
    assert "250 / 250 · 100%" in finished and "250 rows imported." in finished
    assert 'hx-trigger' not in finished  # polling stops once done
    with unscoped():
        batch = await ImportBatch.get(project=east)
        assert (batch.state, batch.done, batch.total, batch.file_path) == ("done", 250, 250, "")
    assert await counts(east) == (3, 250, 250, 250, 250)


async def test_an_import_cut_off_by_a_restart_can_be_run_again(client, estates):
    east, west = estates
    await client.login("east_admin")
    page = await upload_ok(client, "units.csv", csv_bytes([HEADER, *ROWS]))
    batch_id = int(page.rsplit("/", 1)[1])
    # As if the process died mid-way: its transaction rolled back, the row still says "running".
    from datetime import datetime, timedelta, timezone

    with unscoped():
        await ImportBatch.filter(id=batch_id).update(state="running", updated_at=datetime.now(timezone.utc) - timedelta(hours=1))
    shown = await client.get(page)
    assert "The import was interrupted" in shown.text and 'hx-trigger="every 1s"' not in shown.text
    finished = await commit_and_wait(client, page)
    assert 'data-state="done"' in finished
    assert await counts(east) == (2, 3, 3, 4, 3)
