"""Shared set-up of the handover tests: an estate with units, owners, staff, a contractor and a checklist."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from core.api import unscoped
from core.people import create_customer, link_unit
from core.testing import make_project, make_units, make_user
from plugins.handover.models import ChecklistLine, ChecklistTemplate, Contractor

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*parts) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


@pytest.fixture
def clock(frozen_time):
    """Core's clock frozen on Monday 4 May 2026, 09:00 in Shanghai (the first handover day)."""
    frozen_time.set(local(2026, 5, 4, 9, 0))
    return frozen_time


TODAY = date(2026, 5, 4)


@pytest.fixture
async def estate(app, host, clock):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    with unscoped():
        units = await make_units(east, 3)
        for unit in units:
            unit.layout = "3室2厅"
            await unit.save()
        owners = []
        for i, unit in enumerate(units):
            owner = await create_customer(east, f"业主{i + 1}", [f"1380013800{i}"], email=f"owner{i + 1}@example.com")
            await link_unit(owner, unit)
            owners.append(owner)
        builder = await Contractor.create(project=east, name="中建三局", trade="土建", email="warranty@builder.example")
        checklist = await ChecklistTemplate.create(project=east, layout="3室2厅", name="三房验房单")
        for position, (room, item, mandatory) in enumerate(
            [("客厅", "墙面", False), ("客厅", "入户门", True), ("厨房", "给排水", True), ("卫生间", "防水", False)]
        ):
            await ChecklistLine.create(project=east, template=checklist, room=room, item=item, mandatory=mandatory,
                                       position=position)
        west_units = await make_units(west, 1)
    boss = await make_user("boss", "manager", east, display_name="赵经理", email="boss@example.com")
    agent = await make_user("agent", "agent", east, display_name="王客服", email="agent@example.com")
    tech = await make_user("tech", "staff", east, display_name="刘师傅", email="tech@example.com")
    await make_user("west_boss", "manager", west)
    return {"east": east, "west": west, "units": units, "owners": owners, "builder": builder, "boss": boss,
            "agent": agent, "tech": tech, "west_units": west_units}


async def login(make_client, username):
    c = make_client()
    await c.login(username)
    return c


async def make_batch(c, estate, **over):
    """A batch over building 1 from 4 to 6 May with two one-hour slots per day (capacity 2)."""
    from core.models import Building

    with unscoped():
        building = await Building.get(code="1", project_id=estate["east"].id)
    data = {"name": "一期交房", "start_date": "2026-05-04", "end_date": "2026-05-06", "buildings": str(building.id)}
    data.update(over)
    response = await c.form("/p/EAST/handover/batches/new", data)
    assert response.status_code == 303, response.text[:500]
    batch_url = response.headers["location"]
    response = await c.form(batch_url + "/slots", {
        "first_day": "2026-05-04", "last_day": "2026-05-06", "day_start": "09:00", "day_end": "11:00",
        "length": "60", "capacity": "2",
    })
    assert response.status_code == 303, response.text[:500]
    return batch_url
