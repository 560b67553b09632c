"""Arrears ageing, dunning steps on frozen days, promises to pay, and the collection rate."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from core.testing import translated

from core.plugins import current_host
from tests.fees_helpers import MAY, fee_estate

NOW = datetime(2026, 5, 1, 2, 0, tzinfo=timezone.utc)
DUE = date(2026, 5, 15)


@pytest.fixture
async def estate(app, host):
    from plugins.fees.billing import run_bill_run
    from plugins.fees.dunning import ensure_default_steps

    estate = await fee_estate(host)
    await ensure_default_steps(estate[0].id)
    await run_bill_run(estate[0], MAY, now=NOW)
    return estate


async def run_on(project, day):
    from plugins.fees.dunning import apply_dunning

    return await apply_dunning(project, day, now=datetime.combine(day, datetime.min.time(), timezone.utc),
                               host=current_host(), enabled={"fees"})


async def records(unit):
    from plugins.fees.models import DunningRecord

    return [r.action for r in await DunningRecord.filter(bill__unit_id=unit.id).order_by("id")]


async def test_steps_apply_once_each_as_days_pass_and_show_on_the_timeline(estate):
    from core.outbox import OutboxMessage
    from core.timeline import TimelineEntry
    from plugins.fees.models import Bill

    project, homes, space, items, cashier, manager = estate
    assert (await run_on(project, DUE + timedelta(days=14))).applied == {}
    first = await run_on(project, DUE + timedelta(days=15))
    assert first.applied == {"email": 6}
    assert await run_on(project, DUE + timedelta(days=16)) and await records(homes[0]) == ["email"]
    mails = await OutboxMessage.filter(template="fees/reminder").order_by("id")
    assert len(mails) == 5  # the parking space's owner has no email address
    assert "1-1-101" in mails[0].subject
    await run_on(project, DUE + timedelta(days=30))
    await run_on(project, DUE + timedelta(days=30))  # a second run the same day changes nothing
    await run_on(project, DUE + timedelta(days=61))
    await run_on(project, DUE + timedelta(days=95))
    assert await records(homes[0]) == ["email", "letter", "call", "review"]
    bill = await Bill.get(unit_id=homes[0].id)
    entries = await TimelineEntry.filter(subject="fees.Bill", subject_id=bill.id, kind="dunning").order_by("id")
    assert len(entries) == 4 and translated("reminder letter ready to print") in entries[1].body


async def test_a_bill_found_late_gets_only_the_step_it_has_reached(estate):
    project, homes, *_ = estate
    await run_on(project, DUE + timedelta(days=70))
    assert await records(homes[0]) == ["call"]


async def test_paid_bills_promises_and_holds_pause_dunning(estate, monkeypatch):
    from core.models import Unit
    from plugins.fees.dunning import record_promise
    from plugins.fees.money import InputError
    from tests.test_fees_payments import pay

    project, homes, space, items, cashier, manager = estate
    await pay(project, homes[0], "217.98", cashier, "paid-in-full")
    today = DUE + timedelta(days=15)
    with pytest.raises(InputError):
        await record_promise(homes[1], today - timedelta(days=1), "", "", user_id=manager.id, today=today)
    await record_promise(homes[1], today + timedelta(days=10), "217.98", "月底发工资", user_id=manager.id, today=today)

    async def complaint_holds(project, unit_ids):
        return {homes[2].id}

    host = current_host()
    original = host.call

    async def call(hook_name, **kwargs):
        if hook_name == "dunning_holds":
            return [type("R", (), {"error": None, "value": await complaint_holds(**{k: kwargs[k] for k in ("project", "unit_ids")})})()]
        return await original(hook_name, **kwargs)

    monkeypatch.setattr(host, "call", call)
    report = await run_on(project, today)
    assert report.held == 2 and report.applied == {"email": 3}
    assert await records(homes[0]) == [] and await records(homes[1]) == [] and await records(homes[2]) == []
    # After the promised date has passed, the reminder goes out.
    await run_on(project, today + timedelta(days=11))
    assert await records(homes[1]) == ["email"]


async def test_ageing_buckets(estate):
    from plugins.fees.billing import run_bill_run
    from plugins.fees.dunning import ageing

    project, homes, *_ = estate
    await run_bill_run(project, date(2026, 6, 1), now=NOW)
    # On 2026-08-20 May's bills are 97 days overdue, June's (due 06-15) 66 days.
    buckets = await ageing(project.id, date(2026, 8, 20))
    month = Decimal("217.98") * 5 + Decimal("300.00")
    assert buckets == {"0-30": Decimal("0.00"), "31-60": Decimal("0.00"), "61-90": month, "90+": month}


async def test_collection_rate_against_a_known_data_set(estate):
    from plugins.fees.billing import run_bill_run
    from plugins.fees.payments import reverse_payment
    from plugins.fees.reports import rate_by_building, rate_by_month
    from tests.test_fees_payments import pay

    project, homes, space, items, cashier, manager = estate
    june = date(2026, 6, 1)
    await run_bill_run(project, june, now=NOW)
    # May billed 5 × 217.98 + 300 = 1389.90. Collected: two homes in full, one half, parking paid then reversed.
    await pay(project, homes[0], "217.98", cashier, "a")
    await pay(project, homes[1], "217.98", cashier, "b")
    await pay(project, homes[2], "108.99", cashier, "c")
    wrong = await pay(project, space, "300.00", cashier, "d")
    await reverse_payment(wrong, "走错账", approver_id=manager.id)
    months = await rate_by_month(project.id, june, 2)
    may = months[0]
    assert (may.label, may.billed, may.collected) == ("2026-05", Decimal("1389.90"), Decimal("544.95"))
    assert may.rate == Decimal("0.3921")  # 544.95 / 1389.90
    assert months[1].collected == Decimal("0.00") and months[1].rate == Decimal("0.0000")
    buildings = await rate_by_building(project.id, MAY)
    assert [(b.label, b.billed, b.collected) for b in buildings] == [("1栋", Decimal("1389.90"), Decimal("544.95"))]


async def test_cash_summary_reconciles_with_receipts(estate):
    from plugins.fees.payments import reverse_payment
    from plugins.fees.reports import cash_summary
    from tests.test_fees_payments import pay

    project, homes, space, items, cashier, manager = estate
    now = datetime(2026, 5, 20, 3, 0, tzinfo=timezone.utc)  # 11:00 in Shanghai
    await pay(project, homes[0], "217.98", cashier, "a", now=now)
    await pay(project, homes[1], "100.00", cashier, "b", method="card", now=now)
    wrong = await pay(project, homes[2], "50.00", cashier, "c", now=now)
    await reverse_payment(wrong, "金额错误", approver_id=manager.id, now=now)
    await pay(project, homes[3], "80.00", cashier, "late", now=datetime(2026, 5, 20, 17, 0, tzinfo=timezone.utc))
    people, receipts, total = await cash_summary(project.id, date(2026, 5, 20), "Asia/Shanghai")
    assert [r.receipt_number for r in receipts] == ["R00000001", "R00000002", "R00000003", "R00000004"]
    assert total == Decimal("317.98") == sum(p.total for p in people)
    by_name = {p.name: p for p in people}
    assert by_name[str(cashier)].by_method == {"cash": Decimal("267.98"), "card": Decimal("100.00")}
    # The manager who reversed the wrong receipt carries the negative entry.
    assert (by_name[str(manager)].total, by_name[str(manager)].reversals) == (Decimal("-50.00"), Decimal("-50.00"))
