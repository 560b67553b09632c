"""Bill runs: one bill per unit and month, amounts to the fen, repeatable and resumable."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from tortoise.exceptions import IntegrityError

from core.models import CustomerUnit
from core.people import create_customer, link_unit
from tests.fees_helpers import MAY, fee_estate

NOW = datetime(2026, 5, 1, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
async def estate(app, host):
    return await fee_estate(host)


async def bills_of(project):
    from plugins.fees.models import Bill

    return await Bill.filter(project_id=project.id).order_by("unit_id").prefetch_related("lines")


async def test_bill_run_bills_every_chargeable_unit_once_with_exact_amounts(estate):
    from plugins.fees.billing import run_bill_run
    from plugins.fees.models import BillRunState

    project, homes, space, items, *_ = estate
    run = await run_bill_run(project, MAY, now=NOW)
    assert run.state == BillRunState.DONE and run.bills_created == 6 and run.units_done == 6

    bills = await bills_of(project)
    assert len(bills) == 6
    home = bills[0]
    # 88.50 m² × 2.35 = 207.975 -> 207.98 (half up), plus garbage 10.00
    assert [(line.description, line.amount) for line in home.lines] == [
        ("物业费", Decimal("207.98")), ("垃圾清运费", Decimal("10.00"))
    ]
    assert home.total == Decimal("217.98") and home.due_date == date(2026, 5, 15)
    owner = await CustomerUnit.get(unit_id=homes[0].id)
    assert home.customer_id == owner.customer_id
    parking = [b for b in bills if b.unit_id == space.id][0]
    assert parking.total == Decimal("300.00")
    assert len({b.number for b in bills}) == 6

    again = await run_bill_run(project, MAY, now=NOW)
    assert again.state == BillRunState.DONE and again.bills_created == 0
    assert len(await bills_of(project)) == 6


async def test_resumed_after_a_crash_part_way_misses_and_duplicates_nothing(estate):
    from plugins.fees.billing import run_bill_run
    from plugins.fees.models import BillRun, BillRunState

    project, homes, *_ = estate
    seen = []

    async def crash_after_second_chunk(done, total):
        seen.append((done, total))
        if len(seen) == 2:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        await run_bill_run(project, MAY, progress=crash_after_second_chunk, chunk_size=2, now=NOW)
    # The chunk that crashed rolled back; the first one is kept and remembered.
    assert seen == [(2, 6), (4, 6)]
    assert len(await bills_of(project)) == 2
    run = await BillRun.get(project_id=project.id, period=MAY)
    assert run.state == BillRunState.FAILED and run.units_done == 2 and run.last_unit_id == homes[1].id

    progress = []

    async def record(done, total):
        progress.append((done, total))

    run = await run_bill_run(project, MAY, progress=record, chunk_size=2, now=NOW)
    assert progress == [(4, 6), (6, 6)]  # resumed after the last committed unit
    bills = await bills_of(project)
    assert sorted(b.unit_id for b in bills) == sorted({b.unit_id for b in bills}) and len(bills) == 6
    assert run.state == BillRunState.DONE


async def test_database_refuses_a_second_bill_or_line_for_the_same_month(estate):
    from plugins.fees.billing import run_bill_run
    from plugins.fees.models import Bill, BillLine

    project, homes, space, items, *_ = estate
    await run_bill_run(project, MAY, now=NOW)
    bill = (await bills_of(project))[0]
    with pytest.raises(IntegrityError):
        await Bill.create(project_id=project.id, number="X-1", unit_id=bill.unit_id, period=MAY, due_date=MAY, issued_at=NOW)
    with pytest.raises(IntegrityError):
        await BillLine.create(
            project_id=project.id, bill_id=bill.id, unit_id=bill.unit_id, item_id=items["prop"].id, period=MAY,
            quantity=1, unit_price=1, gross=1, amount=1,
        )


async def test_discounts_exclusions_pass_through_and_tenant_billing(estate):
    from plugins.fees import billing
    from plugins.fees.models import Discount, MeterCharge, UnitBilling, UnitItemExclusion

    project, homes, space, items, cashier, manager = estate
    # 50 % off the property fee for unit 0, garbage not charged to unit 1, water for unit 2, unit 3 bills its tenant.
    await Discount.create(project_id=project.id, unit=homes[0], item=items["prop"], percent=Decimal("50"),
                          valid_from=date(2026, 1, 1), reason="困难家庭", approved_by=manager)
    await UnitItemExclusion.create(project_id=project.id, unit=homes[1], item=items["garbage"])
    await MeterCharge.create(project_id=project.id, unit=homes[2], item=items["water"], period=MAY, amount=Decimal("36.40"))
    tenant = await create_customer(project, "租户", ["13700137000"])
    await link_unit(tenant, homes[3], "tenant", date(2026, 3, 1))
    await UnitBilling.create(project_id=project.id, unit=homes[3], bill_to="tenant")

    await billing.run_bill_run(project, MAY, now=NOW)
    by_unit = {b.unit_id: b for b in await bills_of(project)}
    first = by_unit[homes[0].id]
    assert first.lines[0].gross == Decimal("207.98") and first.lines[0].discount == Decimal("103.99")
    assert first.total == Decimal("103.99") + Decimal("10.00")
    assert [line.item_id for line in by_unit[homes[1].id].lines] == [items["prop"].id]
    assert by_unit[homes[2].id].total == Decimal("207.98") + Decimal("10.00") + Decimal("36.40")
    assert by_unit[homes[3].id].customer_id == tenant.id


async def test_rate_periods_may_not_overlap(estate):
    from plugins.fees import billing
    from plugins.fees.models import FeeRate
    from plugins.fees.money import InputError

    project, homes, space, items, *_ = estate
    before = await FeeRate.all().count()
    with pytest.raises(InputError) as error:
        await billing.add_rate(items["prop"], "residential", Decimal("2.50"), date(2026, 1, 1), None)
    assert "valid_from" in error.value.errors and "2025-01-01" in error.value.errors["valid_from"]
    # Commercial units are a different use: no overlap.
    await billing.add_rate(items["prop"], "commercial", Decimal("5.80"), date(2026, 1, 1), date(2026, 12, 31))
    with pytest.raises(InputError):
        await billing.add_rate(items["prop"], "commercial", Decimal("6.00"), date(2026, 12, 31), None)
    await billing.add_rate(items["prop"], "commercial", Decimal("6.00"), date(2027, 1, 1), None)
    assert await FeeRate.all().count() == before + 2
