"""Payments: allocation, partial payment, credit, reversal; receipts without gaps."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from core.testing import translated
from tests.fees_helpers import MAY, fee_estate

NOW = datetime(2026, 5, 1, 2, 0, tzinfo=timezone.utc)
JUNE = date(2026, 6, 1)


@pytest.fixture
async def estate(app, host):
    from plugins.fees.billing import run_bill_run

    estate = await fee_estate(host)
    await run_bill_run(estate[0], MAY, now=NOW)
    return estate


async def pay(project, unit, amount, cashier, key, **kw):
    from plugins.fees.payments import post_payment

    payment, _created = await post_payment(
        project_id=project.id, unit_id=unit.id, amount=amount, method=kw.pop("method", "cash"),
        cashier_id=cashier.id, idempotency_key=key, **kw,
    )
    return payment


async def bill_of(unit, period=MAY):
    from plugins.fees.models import Bill

    return await Bill.get(unit_id=unit.id, period=period)


async def test_partial_payment_then_the_rest_closes_the_bill(estate):
    project, homes, space, items, cashier, manager = estate
    bill = await bill_of(homes[0])  # 217.98
    first = await pay(project, homes[0], "100.00", cashier, "k1")
    bill = await bill_of(homes[0])
    assert (bill.paid, bill.balance, bill.status) == (Decimal("100.00"), Decimal("117.98"), "open")
    second = await pay(project, homes[0], "117.98", cashier, "k2", method="transfer", reference="TX-889")
    bill = await bill_of(homes[0])
    assert (bill.paid, bill.status) == (Decimal("217.98"), "paid")
    assert (first.receipt_number, second.receipt_number) == ("R00000001", "R00000002")


async def test_overpayment_becomes_credit_used_by_the_next_bill(estate):
    from plugins.fees.billing import run_bill_run
    from plugins.fees.payments import unit_credit

    project, homes, space, items, cashier, manager = estate
    await pay(project, homes[1], "300.00", cashier, "k1")
    assert (await bill_of(homes[1])).status == "paid"
    assert (await unit_credit([homes[1].id])) == {homes[1].id: Decimal("82.02")}

    await run_bill_run(project, JUNE, now=NOW)
    june = await bill_of(homes[1], JUNE)
    assert (june.paid, june.balance) == (Decimal("82.02"), Decimal("135.96"))
    assert await unit_credit([homes[1].id]) == {}


async def test_payment_goes_to_oldest_open_bills_or_to_the_chosen_one(estate):
    from plugins.fees.billing import run_bill_run

    project, homes, space, items, cashier, manager = estate
    await run_bill_run(project, JUNE, now=NOW)
    may, june = await bill_of(homes[2]), await bill_of(homes[2], JUNE)
    await pay(project, homes[2], "217.98", cashier, "chosen", bill_ids=[june.id])
    assert (await bill_of(homes[2], JUNE)).status == "paid" and (await bill_of(homes[2])).status == "open"
    await pay(project, homes[2], "50.00", cashier, "oldest")
    assert (await bill_of(homes[2])).paid == Decimal("50.00")


async def test_reversal_reopens_the_bill_and_everything_reconciles_to_the_fen(estate):
    from tortoise.functions import Sum

    from plugins.fees.models import Allocation, Payment
    from plugins.fees.money import InputError
    from plugins.fees.payments import reverse_payment, unit_credit

    project, homes, space, items, cashier, manager = estate
    kept = await pay(project, homes[3], "17.98", cashier, "a")
    wrong = await pay(project, homes[3], "250.00", cashier, "b")  # 200.00 to the bill, 50.00 credit
    bill = await bill_of(homes[3])
    assert bill.status == "paid" and await unit_credit([homes[3].id]) == {homes[3].id: Decimal("50.00")}

    with pytest.raises(InputError) as error:
        await reverse_payment(wrong, "  ", approver_id=manager.id)
    assert "reason" in error.value.errors
    reversal = await reverse_payment(wrong, "收错户", approver_id=manager.id)
    assert reversal.amount == Decimal("-250.00") and reversal.reverses_id == wrong.id
    assert reversal.receipt_number == "R00000003"
    with pytest.raises(InputError):
        await reverse_payment(wrong, "again", approver_id=manager.id)

    bill = await bill_of(homes[3])
    assert (bill.paid, bill.balance, bill.status) == (Decimal("17.98"), Decimal("200.00"), "open")
    assert await unit_credit([homes[3].id]) == {}
    # Both entries stay; the books add up: received − allocated = credit, allocations = bill.paid.
    assert await Payment.filter(unit_id=homes[3].id).count() == 3
    received = sum(p.amount for p in await Payment.filter(unit_id=homes[3].id))
    allocated = sum(a.amount for a in await Allocation.filter(unit_id=homes[3].id))
    assert received == allocated == bill.paid == Decimal("17.98") == kept.amount


async def test_bad_amounts_and_void_bills_are_refused_and_change_nothing(estate):
    from plugins.fees.models import Payment
    from plugins.fees.money import InputError
    from plugins.fees.payments import void_bill

    project, homes, space, items, cashier, manager = estate
    greater = translated("Enter an amount greater than zero.")
    for amount, message in (
        ("-5", greater), ("abc", translated("Enter a number, e.g. 1280.50.")),
        ("10.005", translated("Amounts have at most 2 decimals (fen).")), ("0", greater),
    ):
        with pytest.raises(InputError) as error:
            await pay(project, homes[0], amount, cashier, f"bad-{amount}")
        assert message in error.value.errors["amount"]
    bill = await bill_of(homes[4])
    await void_bill(bill, "重复开单", approver_id=manager.id)
    with pytest.raises(InputError) as error:
        await pay(project, homes[4], "10", cashier, "void", bill_ids=[bill.id])
    assert error.value.errors["bills"] == translated("Bill %(number)s is void and cannot be paid.", number=bill.number)
    assert await Payment.all().count() == 0


async def test_the_same_form_submitted_twice_records_one_payment(estate):
    from plugins.fees.models import Payment
    from plugins.fees.payments import post_payment

    project, homes, space, items, cashier, manager = estate
    args = dict(project_id=project.id, unit_id=homes[0].id, amount="50", method="cash", cashier_id=cashier.id,
                idempotency_key="same-form")
    first, created = await post_payment(**args)
    again, created_again = await post_payment(**args)
    assert created and not created_again and again.id == first.id
    assert await Payment.all().count() == 1


async def test_receipts_stay_gapless_under_concurrent_posting(estate, db_kind, monkeypatch):
    """Several cashiers post at once, each in its own transaction; failed ones give their number back."""
    from plugins.fees import payments
    from plugins.fees.models import Payment

    project, homes, space, items, cashier, manager = estate
    real_allocate = payments._allocate

    async def failing_allocate(payment, available, bills, now):
        await asyncio.sleep(0)  # let the other cashiers run while this one holds the sequence lock
        if payment.amount == Decimal("13.13"):
            raise RuntimeError("printer jammed")
        return await real_allocate(payment, available, bills, now)

    monkeypatch.setattr(payments, "_allocate", failing_allocate)
    amounts = ["10.00", "13.13", "20.00", "13.13", "30.00", "40.00", "13.13", "50.00", "60.00", "70.00"]
    units = homes + [space]
    results = await asyncio.gather(
        *[pay(project, units[i % len(units)], amount, cashier, f"c{i}") for i, amount in enumerate(amounts)],
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == 3 and all("printer jammed" in str(r) for r in failed)
    numbers = sorted(p.receipt_number for p in await Payment.all())
    assert numbers == [f"R{n:08d}" for n in range(1, 8)]
    following = await pay(project, homes[0], "1.00", cashier, "after")
    assert following.receipt_number == "R00000008"
