"""Demo data: fee items and rates, six months of bills and a realistic payment history."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from core.api import Membership, Unit, local_today, now as clock_now
from plugins.fees import billing, dunning, payments
from plugins.fees.models import Basis, Bill, Method
from plugins.fees.money import add_months, month_start, round_fen

METHODS = [Method.ONLINE] * 5 + [Method.TRANSFER] * 3 + [Method.CASH] * 2 + [Method.CARD]


async def load(project, rng) -> None:
    zone = ZoneInfo(project.timezone)
    now = clock_now()  # core's clock: a test's frozen time, one instant for the whole load
    today = local_today(project.timezone, now)
    this_month = month_start(today)
    first = add_months(this_month, -5)
    prop = await billing.create_item(project.id, "PROP", "物业服务费", Basis.AREA, order=1)
    garbage = await billing.create_item(project.id, "GARB", "生活垃圾清运费", Basis.FLAT, order=2)
    await billing.create_item(project.id, "PARK", "车位管理费", Basis.FLAT, order=3)
    await billing.create_item(project.id, "WATER", "公摊水电费", Basis.METERED, order=4)
    start = add_months(first, -12)
    await billing.add_rate(prop, "residential", Decimal("2.35"), start, None)
    await billing.add_rate(prop, "commercial", Decimal("5.80"), start, None)
    await billing.add_rate(garbage, "residential", Decimal("8.00"), start, None)
    await dunning.ensure_default_steps(project.id)
    membership = await Membership.filter(project_id=project.id, role__code="cashier").first()
    if membership is None or not await Unit.filter(project_id=project.id).exists():
        return
    # Households differ: most pay on time, some always late, a few not at all.
    habits = {}
    for unit_id in await Unit.filter(project_id=project.id).values_list("id", flat=True):
        habits[unit_id] = rng.choices(("prompt", "late", "partial", "never"), weights=(70, 18, 6, 6))[0]
    receipts = []
    for i in range(6):
        period = add_months(first, i)
        issued = datetime.combine(period, time(2), zone).astimezone(timezone.utc)
        await billing.run_bill_run(project, period, now=issued)
        for bill in await Bill.filter(project_id=project.id, period=period):
            habit = habits.get(bill.unit_id, "never")
            if habit == "never":
                continue
            days = rng.randint(0, 14) if habit == "prompt" else rng.randint(20, 75)
            paid_at = issued + timedelta(days=days, hours=rng.randint(1, 9), minutes=rng.randint(0, 59))
            if paid_at >= now:
                continue
            amount = bill.total if habit != "partial" else round_fen(bill.total * Decimal("0.5"))
            receipts.append((paid_at, bill.unit_id, amount))
    receipts.sort()
    for n, (paid_at, unit_id, amount) in enumerate(receipts):
        method = rng.choice(METHODS)
        await payments.post_payment(
            project_id=project.id, unit_id=unit_id, amount=amount, method=method, cashier_id=membership.user_id,
            idempotency_key=f"demo-{project.code}-{n}", now=paid_at,
            reference=f"{rng.randint(10**9, 10**10 - 1)}" if method != Method.CASH else "",
        )
    await dunning.apply_dunning(project, today, now=now)
