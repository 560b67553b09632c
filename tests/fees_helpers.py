"""A small estate with fee items and rates, shared by the fees tests."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from core.models import Building, Unit
from core.people import create_customer, link_unit
from core.testing import make_project, make_user

MAY = date(2026, 5, 1)


async def fee_estate(host, code: str = "EAST", units: int = 5):
    """Units 1-1-101.. (residential, 88.50 m²) each with an owner, and a parking space.

    Fee items: property fee 2.35/m²/month (residential), parking 300/month,
    garbage 10/month (residential); water is a pass-through.
    """
    from plugins.fees import billing
    from plugins.fees.models import Basis

    project = await make_project(code, host=host)
    building = await Building.create(project=project, code="1", name="1栋")
    homes = []
    for i in range(units):
        unit = await Unit.create(project=project, building=building, code=f"1-1-{101 + i}", floor=1, area=Decimal("88.50"))
        owner = await create_customer(project, f"业主{i}", [f"1380013800{i}"], email=f"owner{i}@example.com")
        await link_unit(owner, unit, "owner", date(2024, 1, 1))
        homes.append(unit)
    space = await Unit.create(project=project, building=building, code="P-001", area=Decimal("12.00"), use="parking")
    owner = await create_customer(project, "车主", ["13900139000"])
    await link_unit(owner, space, "owner", date(2024, 1, 1))
    prop = await billing.create_item(project.id, "PROP", "物业费", Basis.AREA, order=1)
    park = await billing.create_item(project.id, "PARK", "车位管理费", Basis.FLAT, order=2)
    garbage = await billing.create_item(project.id, "GARB", "垃圾清运费", Basis.FLAT, order=3)
    water = await billing.create_item(project.id, "WATER", "水费", Basis.METERED, order=4)
    await billing.add_rate(prop, "residential", Decimal("2.35"), date(2025, 1, 1), None)
    await billing.add_rate(park, "parking", Decimal("300"), date(2025, 1, 1), None)
    await billing.add_rate(garbage, "residential", Decimal("10"), date(2025, 1, 1), None)
    cashier = await make_user(f"{code.lower()}_cashier", "cashier", project)
    manager = await make_user(f"{code.lower()}_manager", "manager", project)
    items = {"prop": prop, "park": park, "garbage": garbage, "water": water}
    return project, homes, space, items, cashier, manager
