"""The visitor log: registration, the list and its htmx action, the tile, the 360 section, the nightly job."""

from datetime import datetime, timedelta, timezone

import pytest

from core.api import CustomerUnit, create_customer, unscoped
from core.testing import make_project, make_units, pending_migrations
from courtyard_visitors.models import Visitor


@pytest.fixture
def plugin_modules():
    return ["courtyard_visitors"]


@pytest.fixture
async def estate(app):
    east = await make_project("EAST", modules=["visitors"])
    units = await make_units(east, 2)
    return east, units


async def visit(project, unit, name, arrived_at, left_at=None, purpose="delivery"):
    with unscoped():
        return await Visitor.create(
            project=project, unit=unit, name=name, purpose=purpose, arrived_at=arrived_at, left_at=left_at
        )


async def test_migrations_match_the_models():
    assert await pending_migrations("courtyard_visitors") == []


async def test_guard_registers_a_visitor_and_marks_them_left(estate, login_as):
    guard = await login_as("staff", estate[0], locale="zh_CN")  # this guard reads Chinese
    page = await guard.get("/p/EAST/visitors/new")
    assert page.status_code == 200

    bad = await guard.form("/p/EAST/visitors/new", {"name": "", "unit": "9-9-999", "phone": "12"})
    assert bad.status_code == 422
    assert "请输入访客姓名" in bad.text and "本项目没有这个房号" in bad.text and "请输入电话号码" in bad.text

    done = await guard.form("/p/EAST/visitors/new", {"name": "王快递", "unit": "1-1-101", "phone": "138 0013 8000"})
    assert done.status_code == 303 and done.headers["location"] == "/p/EAST/visitors/"
    visitor = await Visitor.get(name="王快递")
    assert visitor.phone == "+8613800138000" and visitor.left_at is None

    listing = await guard.get("/p/EAST/visitors/?inside=1")
    assert "王快递" in listing.text and "登记离开" in listing.text
    assert "13800138000" not in listing.text  # staff see the phone number masked

    left = await guard.form(f"/p/EAST/visitors/{visitor.id}/left", htmx=True)
    assert left.status_code == 200 and "登记离开" not in left.text
    assert "showToast" in left.headers["HX-Trigger"]
    await visitor.refresh_from_db()
    assert visitor.left_at is not None
    assert "王快递" not in (await guard.get("/p/EAST/visitors/?inside=1")).text


async def test_the_page_is_missing_where_the_module_is_off(estate, login_as):
    west = await make_project("WEST2", modules=[])
    agent = await login_as("agent", west)
    assert (await agent.get("/p/WEST2/visitors/")).status_code == 404
    readonly = await login_as("readonly", estate[0])
    assert (await readonly.get("/p/EAST/visitors/")).status_code == 200
    assert (await readonly.get("/p/EAST/visitors/new")).status_code == 403


@pytest.mark.frozen_time("2026-05-01T15:20+08:00")
async def test_dashboard_tile_counts_todays_visitors_by_hour(estate, login_as, frozen_time):
    east, units = estate
    now = frozen_time.now()
    await visit(east, units[0], "A", now - timedelta(hours=6))  # 09:20
    await visit(east, units[0], "B", now - timedelta(hours=6, minutes=10), left_at=now)  # 09:10
    await visit(east, units[1], "C", now - timedelta(minutes=5))  # 15:15
    await visit(east, units[1], "yesterday", now - timedelta(days=1), left_at=now - timedelta(days=1))
    manager = await login_as("manager", east, locale="en")
    page = await manager.get("/p/EAST/")
    assert 'data-plugin="visitors"' in page.text and "Visitors today" in page.text
    assert '<div class="tile-value">3</div>' in page.text and "2 still inside" in page.text
    by_hour = [0] * 24
    by_hour[9], by_hour[15] = 2, 1
    assert f'"data": {by_hour}' in page.text.replace("&#34;", '"')


async def test_customer_360_shows_recent_visitors_to_their_units(estate, login_as):
    east, units = estate
    with unscoped():
        owner = await create_customer(east, "李业主", ["13900139000"])
        await CustomerUnit.create(project=east, customer=owner, unit=units[0], relation="owner")
    await visit(east, units[0], "来访的朋友", datetime.now(timezone.utc), purpose="拜访")
    await visit(east, units[1], "隔壁的客人", datetime.now(timezone.utc))
    agent = await login_as("agent", east, locale="en")
    page = await agent.get(f"/p/EAST/customers/{owner.id}")
    assert page.status_code == 200
    assert "Recent visitors" in page.text and "来访的朋友" in page.text and "隔壁的客人" not in page.text


@pytest.mark.frozen_time("2026-05-01T23:30+08:00")
async def test_nightly_job_closes_open_visits_and_emails_the_managers(estate, login_as, frozen_time, run_job, outbox):
    east, units = estate
    now = frozen_time.now()
    await visit(east, units[0], "Forgotten", now - timedelta(hours=3))
    await visit(east, units[1], "Gone", now - timedelta(hours=2), left_at=now - timedelta(hours=1))
    manager = await login_as("manager", east, email="manager@example.com", locale="en")
    await login_as("agent", east, email="agent@example.com")  # agents get no summary

    run = await run_job("visitors.close_open_visits", east)
    assert "closed 1 open visit(s); 2 visitor(s) today" in run.log

    forgotten = await Visitor.get(name="Forgotten")
    assert forgotten.left_at == now and forgotten.closed_automatically
    mails = await outbox.messages(template="visitors/nightly_summary")
    assert [m.to for m in mails] == [manager.user.email]
    assert mails[0].subject == "Estate EAST: 2 visitors on 2026-05-01"
    assert "Forgotten, 1-1-101: delivery" in mails[0].text
    assert "/p/EAST/visitors/" in mails[0].text
