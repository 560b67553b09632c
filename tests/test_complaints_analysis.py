"""Complaint analysis against a known data set, defect feedback across estates, dashboard, 360, search, categories."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from core.api import unscoped
from plugins.complaints.models import Category, Survey
from tests.complaints_helpers import (  # noqa: F401  (fixtures)
    clock, estate, local, login, open_case, walk,
)

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


@pytest.fixture
async def known(estate, clock):
    """EAST: a leak closed after 4 h (score 4), a crack still open, a service complaint closed after 2 h
    (score 2) from the leak's unit (a repeat). WEST: a leak still open."""
    leak = await open_case(estate, unit=0, category="leak", subject="卫生间渗水")
    clock.at = local(2026, 3, 2, 14, 0)
    leak = await walk(leak, estate, "closed")
    crack = await open_case(estate, customer="lily", unit=1, category="crack", subject="客厅墙面裂缝")
    clock.at = local(2026, 3, 3, 10, 0)
    attitude = await open_case(estate, unit=0, category="attitude", subject="维修工态度差")
    clock.at = local(2026, 3, 3, 12, 0)
    attitude = await walk(attitude, estate, "closed")
    west = estate["west"]
    with unscoped():
        west_leak = await open_case({**estate, "east": west, "units": estate["west_units"], "zhang": estate["li"],
                                     "leak": estate["west_leak"]}, category="leak", subject="地下室渗水")
        for case, score in ((leak, 4), (attitude, 2)):
            await Survey.create(project_id=case.project_id, case=case, email="x@example.com", sent_at=clock(),
                                expires_at=clock(), answered_at=clock(), score=score)
    return {"leak": leak, "crack": crack, "attitude": attitude, "west_leak": west_leak}


async def test_the_analysis_counts_a_known_data_set(make_client, estate, known, clock):
    boss = await login(make_client, "boss")
    page = await boss.get("/p/EAST/complaints/analysis", params=MARCH)
    assert page.status_code == 200
    assert 'id="total">3<' in page.text
    assert "3.0 h" in page.text and "3.0 / 5" in page.text  # (4 h + 2 h) / 2; (4 + 2) / 2

    export = await boss.get("/p/EAST/complaints/analysis.xlsx", params=MARCH)
    assert export.status_code == 200
    book = load_workbook(io.BytesIO(export.content))
    summary = {row[0]: row[1] for row in book.worksheets[0].iter_rows(values_only=True)}
    assert summary["Received"] == 3 and summary["Open"] == 1 and summary["Closed"] == 2
    assert summary["Repeats"] == 1 and summary["Average time to close (hours)"] == 3.0
    assert summary["Average satisfaction score"] == 3.0
    sheets = {sheet.title: dict(list(sheet.iter_rows(values_only=True))[1:]) for sheet in book.worksheets[1:]}
    assert sheets["Category"] == {"渗漏水": 1, "墙体裂缝": 1, "服务态度": 1}
    assert sheets["Classification"] == {"Product quality": 2, "Service attitude": 1}
    assert sheets["Building"] == {"1栋": 3}
    assert sheets["Root cause"] == {"Construction workmanship": 2}
    assert sheets["Responsible party"] == {"Construction contractor": 2}
    assert sheets["Month"] == {"2026-03": 3}
    assert sheets["Estate"] == {"Estate EAST": 3}

    february = await boss.get("/p/EAST/complaints/analysis", params={"from": "2026-02-01", "to": "2026-02-28"})
    assert 'id="total">0<' in february.text
    bad = await boss.get("/p/EAST/complaints/analysis", params={"from": "2026-03-31", "to": "2026-03-01"})
    assert bad.status_code == 422 and 'id="f-to-error"' in bad.text

    agent = await login(make_client, "agent")
    assert (await agent.get("/p/EAST/complaints/analysis")).status_code == 403


async def test_defect_feedback_rolls_up_estates_for_head_office(make_client, estate, known, clock):
    hq = await login(make_client, "hq")
    export = await hq.get("/complaints/defects.xlsx", params=MARCH)
    rows = list(load_workbook(io.BytesIO(export.content)).active.iter_rows(values_only=True))
    by_defect = {row[0]: row for row in rows[1:]}
    assert set(by_defect) == {"Leaks and seepage", "Cracks"}
    leaks = by_defect["Leaks and seepage"]
    assert leaks[1] == 2 and leaks[2] == 1  # EAST's closed, WEST's open
    assert "Estate EAST 1" in leaks[3] and "Estate WEST 1" in leaks[3]
    assert leaks[4] == "Construction workmanship 1"
    page = await hq.get("/complaints/defects", params=MARCH)
    assert page.status_code == 200 and "Estate WEST" in page.text

    # An estate's manager sees only the estates they belong to.
    boss = await login(make_client, "boss")
    own = list(load_workbook(io.BytesIO((await boss.get("/complaints/defects.xlsx", params=MARCH)).content))
               .active.iter_rows(values_only=True))
    assert {row[0]: row[1] for row in own[1:]} == {"Leaks and seepage": 1, "Cracks": 1}
    agent = await login(make_client, "agent")
    assert (await agent.get("/complaints/defects")).status_code == 403


async def test_dashboard_360_and_search_show_complaints(make_client, estate, known, clock):
    agent = await login(make_client, "agent")
    dashboard = await agent.get("/p/EAST/")
    assert "Open complaints" in dashboard.text and "Complaint satisfaction" in dashboard.text
    customer = await agent.get(f"/p/EAST/customers/{estate['zhang'].id}")
    assert known["leak"].number in customer.text and known["attitude"].number in customer.text
    assert "Last satisfaction score: 2 / 5" in customer.text
    found = await agent.get("/search", params={"q": known["crack"].number})
    assert f"/p/EAST/complaints/cases/{known['crack'].id}" in found.text
    listing = await agent.get("/p/EAST/complaints/", params={"q": "裂缝"})
    assert known["crack"].number in listing.text and known["leak"].number not in listing.text
    exported = await agent.get("/p/EAST/complaints/", params={"state": "closed", "export": "xlsx"})
    numbers = [row[0] for row in load_workbook(io.BytesIO(exported.content)).active.iter_rows(values_only=True)][1:]
    assert sorted(numbers) == sorted([known["leak"].number, known["attitude"].number])


async def test_categories_are_maintained_as_a_tree(make_client, estate, clock):
    boss = await login(make_client, "boss")
    assert (await boss.get("/p/EAST/complaints/categories/new")).status_code == 200
    created = await boss.form("/p/EAST/complaints/categories/new", {
        "name": "外墙渗水", "parent": str(estate["leak"].id), "classification": "product_quality", "defect": "leak",
        "is_active": "1",
    })
    assert created.status_code == 303
    with unscoped():
        child = await Category.get(name="外墙渗水")
    assert child.parent_id == estate["leak"].id and child.defect == "leak"
    duplicate = await boss.form("/p/EAST/complaints/categories/new", {"name": "外墙渗水", "classification": "other"})
    assert duplicate.status_code == 422 and 'id="f-name-error"' in duplicate.text
    loop = await boss.form(f"/p/EAST/complaints/categories/{estate['leak'].id}", {
        "name": "渗漏水", "parent": str(child.id), "classification": "product_quality", "defect": "leak", "is_active": "1",
    })
    assert loop.status_code == 422 and 'id="f-parent-error"' in loop.text
    tree = await boss.get("/p/EAST/complaints/categories")
    assert tree.text.index("渗漏水") < tree.text.index("外墙渗水")
    west = await boss.get(f"/p/EAST/complaints/categories/{estate['west_leak'].id}")
    assert west.status_code == 404
