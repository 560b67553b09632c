"""Payments, allocations, credit, reversals and voided bills.

A payment is allocated to the chosen bills or else to the unit's oldest open
bills; whatever is left is credit on the unit's account, which later bills use
(`apply_credit`, called by the bill run for the units with a `CreditHint`).
Posting announces `fees.payment_posted`, a reversal `fees.payment_reversed`,
in the same transaction. A bill's `paid` is always the sum of
its allocations, recomputed in the same transaction (`refresh_bills`).

Receipt numbers come from the estate's gapless "fees.receipt" sequence, taken
inside the payment's transaction: a payment that fails gives its number back.
On PostgreSQL the unit's open bills are locked (SELECT ... FOR UPDATE) first,
so two cashiers paying the same bills at once are served one after the other.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Iterable

from tortoise.exceptions import IntegrityError
from tortoise.functions import Sum

from core.api import Sequence, Unit, emit, gettext as _, timeline, transaction
from plugins.fees.models import Allocation, Bill, BillStatus, CreditHint, Method, Payment, PaymentKind
from plugins.fees.money import FEN, InputError, ZERO, format_amount, parse_amount, utcnow

RECEIPT_SEQUENCE = "fees.receipt"
MAX_KEY = 64


def receipt_number(serial: int) -> str:
    return f"R{serial:08d}"


def _dec(value) -> Decimal:
    # SQLite sums NUMERIC text as floating point: back to exact fen.
    return Decimal(str(value or 0)).quantize(FEN)


async def sums_by(queryset, key: str, field: str = "amount") -> dict:
    rows = await queryset.group_by(key).annotate(total=Sum(field)).values(key, "total")
    return {row[key]: _dec(row["total"]) for row in rows}


async def refresh_bills(bill_ids: Iterable[int]) -> None:
    """Recompute `paid` and the status of bills from their allocations."""
    ids = sorted(set(bill_ids))
    if not ids:
        return
    paid = await sums_by(Allocation.filter(bill_id__in=ids), "bill_id")
    for bill in await Bill.filter(id__in=ids):
        amount = paid.get(bill.id, ZERO)
        status = bill.status
        if status != BillStatus.VOID:
            status = BillStatus.PAID if amount >= bill.total else BillStatus.OPEN
        if (bill.paid, bill.status) != (amount, status):
            await Bill.filter(id=bill.id).update(paid=amount, status=status)


async def _reversed_ids(unit_ids: list[int]) -> set[int]:
    return set(
        await Payment.filter(unit_id__in=unit_ids, kind=PaymentKind.REVERSAL).values_list("reverses_id", flat=True)
    )


async def unit_credit(unit_ids: list[int]) -> dict[int, Decimal]:
    """Money received but not allocated, per unit (only units that have some)."""
    received = await sums_by(Payment.filter(unit_id__in=unit_ids), "unit_id")
    allocated = await sums_by(Allocation.filter(unit_id__in=unit_ids), "unit_id")
    credit = {unit: amount - allocated.get(unit, ZERO) for unit, amount in received.items()}
    return {unit: amount for unit, amount in credit.items() if amount > 0}


async def _remaining_by_payment(unit_ids: list[int]) -> list[tuple[Payment, Decimal]]:
    """Payments with unallocated money, oldest first (reversed payments have none left to give)."""
    reversed_ids = await _reversed_ids(unit_ids)
    payments = [
        p for p in await Payment.filter(unit_id__in=unit_ids, kind=PaymentKind.PAYMENT).order_by("id")
        if p.id not in reversed_ids
    ]
    if not payments:
        return []
    used = await sums_by(Allocation.filter(payment_id__in=[p.id for p in payments]), "payment_id")
    result = []
    for payment in payments:
        left = payment.amount - used.get(payment.id, ZERO)
        if left > 0:
            result.append((payment, left))
    return result


async def _allocate(payment: Payment, available: Decimal, bills: list[Bill], now: datetime) -> tuple[Decimal, list[int]]:
    """Allocate up to `available` of `payment` to `bills` in order; returns what is left and the bills touched."""
    touched = []
    for bill in bills:
        if available <= 0:
            break
        due = bill.total - bill.paid
        if due <= 0 or bill.status == BillStatus.VOID:
            continue
        part = min(due, available)
        await Allocation.create(
            project_id=payment.project_id, payment=payment, bill=bill, unit_id=bill.unit_id, amount=part,
            created_at=now,
        )
        bill.paid += part
        available -= part
        touched.append(bill.id)
        await timeline.post(
            bill, "payment",
            _("%(amount)s received with receipt %(receipt)s.", amount=format_amount(part), receipt=payment.receipt_number),
            author=payment.cashier_id, data={"payment": payment.id, "amount": str(part)},
        )
    return available, touched


def _open_bills(unit_ids: list[int]):
    query = Bill.filter(unit_id__in=unit_ids, status=BillStatus.OPEN).order_by("period", "id")
    return query.select_for_update()


async def mark_credit(payment: Payment) -> None:
    """Note that the payment's unit has credit now, so bill runs look at it (CreditHint)."""
    if not await CreditHint.filter(unit_id=payment.unit_id).exists():
        try:
            async with transaction():
                await CreditHint.create(project_id=payment.project_id, unit_id=payment.unit_id)
        except IntegrityError:
            pass  # noted by a payment at the same moment


async def apply_credit(first: int, last: int, *, now: datetime | None = None) -> None:
    """Use the credit of units with ids first..last for their open bills, oldest bill first.

    Only units with a CreditHint are looked at (a bill run calls this for every
    chunk of units); a hint whose unit has no credit left is removed.
    """
    now = now or utcnow()
    hinted = await CreditHint.filter(unit_id__gte=first, unit_id__lte=last).values_list("unit_id", flat=True)
    if not hinted:
        return
    credit = await unit_credit(hinted)
    units = list(credit)
    if not units:
        await CreditHint.filter(unit_id__in=hinted).delete()
        return
    bills_by_unit: dict[int, list[Bill]] = defaultdict(list)
    for bill in await _open_bills(units):
        bills_by_unit[bill.unit_id].append(bill)
    touched, spending = [], []
    for payment, left in await _remaining_by_payment(units):
        bills = bills_by_unit.get(payment.unit_id)
        if bills:
            _left, ids = await _allocate(payment, left, bills, now)
            touched.extend(ids)
            if ids:
                spending.append(payment.id)
    await refresh_bills(touched)
    if spending:  # their allocations changed: API syncs (updated_since) must see them again
        await Payment.filter(id__in=spending).update()
    spent = set(hinted) - set(await unit_credit(units))
    if spent:
        await CreditHint.filter(unit_id__in=sorted(spent)).delete()


async def post_payment(
    *,
    project_id: int,
    unit_id: int,
    amount,
    method: str,
    cashier_id: int,
    idempotency_key: str,
    reference: str = "",
    payer: str = "",
    bill_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> tuple[Payment, bool]:
    """Record money received for a unit and allocate it; returns (payment, created).

    The same `idempotency_key` (a hidden field of the payment form) records one
    payment only: a second submission returns the first payment.
    """
    now = now or utcnow()
    key = (idempotency_key or "").strip()
    if not key or len(key) > MAX_KEY:
        raise InputError({"form": _("This form has expired; reload the page and enter the payment again.")})
    existing = await Payment.get_or_none(idempotency_key=key)
    if existing is not None:
        return existing, False
    errors: dict[str, str] = {}
    try:
        value = parse_amount(amount)
    except InputError as exc:
        errors.update(exc.errors)
        value = None
    if method not in Method.CHOICES:
        errors["method"] = _("Choose how the money was paid.")
    unit = await Unit.get_or_none(id=unit_id, project_id=project_id)
    if unit is None:
        errors["unit"] = _("Choose a unit of this estate.")
    chosen = sorted({int(b) for b in bill_ids})
    if chosen and unit is not None:
        bills = await Bill.filter(id__in=chosen, unit_id=unit.id)
        if len(bills) != len(chosen):
            errors["bills"] = _("Choose bills of this unit.")
        elif void := [b.number for b in bills if b.status == BillStatus.VOID]:
            errors["bills"] = _("Bill %(number)s is void and cannot be paid.", number=", ".join(void))
        elif paid := [b.number for b in bills if b.status == BillStatus.PAID]:
            errors["bills"] = _("Bill %(number)s is already paid.", number=", ".join(paid))
    if errors:
        raise InputError(errors)
    try:
        async with transaction():
            open_bills = await _open_bills([unit.id])  # locks them on PostgreSQL
            targets = [b for b in open_bills if b.id in chosen] if chosen else open_bills
            if chosen and len(targets) != len(chosen):
                raise InputError({"bills": _("One of the chosen bills was paid or voided meanwhile; check and try again.")})
            serial = await Sequence.take(project_id, RECEIPT_SEQUENCE)
            latest = await Bill.filter(unit_id=unit.id, customer_id__isnull=False).order_by("-period").first()
            payment = await Payment.create(
                project_id=project_id, receipt_number=receipt_number(serial), kind=PaymentKind.PAYMENT,
                unit_id=unit.id, customer_id=latest.customer_id if latest else None, amount=value, method=method,
                reference=(reference or "").strip()[:64], payer=(payer or "").strip()[:64], cashier_id=cashier_id,
                idempotency_key=key, received_at=now,
            )
            left, touched = await _allocate(payment, value, targets, now)
            await refresh_bills(touched)
            if left > 0:
                await mark_credit(payment)
            await emit("fees.payment_posted", project_id, cashier_id, **await _event_data(payment, unit))
    except IntegrityError:
        # The same form was submitted twice at once: the database kept the first.
        existing = await Payment.get_or_none(idempotency_key=key)
        if existing is None:
            raise
        return existing, False
    return payment, True


async def reverse_payment(payment: Payment, reason: str, *, approver_id: int, now: datetime | None = None) -> Payment:
    """Cancel a posted payment with a negative entry that references it; both stay on the books."""
    now = now or utcnow()
    reason = (reason or "").strip()
    if not reason:
        raise InputError({"reason": _("Say why the payment is reversed.")})
    if payment.kind != PaymentKind.PAYMENT:
        raise InputError({"reason": _("A reversal cannot itself be reversed.")})
    try:
        async with transaction():
            original = await Payment.filter(id=payment.id).select_for_update().get()
            if await Payment.filter(reverses_id=original.id).exists():
                raise InputError({"reason": _("This payment has already been reversed.")})
            net = await sums_by(Allocation.filter(payment_id=original.id), "bill_id")
            # Bills before the receipt sequence, the order post_payment takes its locks in (no deadlock).
            bills = {b.id: b for b in await Bill.filter(id__in=list(net)).order_by("id").select_for_update()}
            serial = await Sequence.take(original.project_id, RECEIPT_SEQUENCE)
            reversal = await Payment.create(
                project_id=original.project_id, receipt_number=receipt_number(serial), kind=PaymentKind.REVERSAL,
                unit_id=original.unit_id, customer_id=original.customer_id, amount=-original.amount,
                method=original.method, reference=original.receipt_number, payer=original.payer, reverses=original,
                reason=reason[:255], cashier_id=approver_id, approved_by_id=approver_id,
                idempotency_key=f"reversal:{original.id}", received_at=now,
            )
            for bill_id, amount in sorted(net.items()):
                if amount == 0:
                    continue
                await Allocation.create(
                    project_id=original.project_id, payment=reversal, bill_id=bill_id,
                    unit_id=bills[bill_id].unit_id, amount=-amount, created_at=now,
                )
                await timeline.post(
                    bills[bill_id], "reversal",
                    _("Receipt %(receipt)s reversed (%(reversal)s): %(amount)s is due again. Reason: %(reason)s",
                      receipt=original.receipt_number, reversal=reversal.receipt_number,
                      amount=format_amount(amount), reason=reason),
                    author=approver_id, data={"payment": original.id, "reversal": reversal.id},
                )
            await refresh_bills(net)
            await Payment.filter(id=original.id).update()  # marked changed (now reversed) for API syncs
            unit = await Unit.get(id=original.unit_id)
            await emit("fees.payment_reversed", original.project_id, approver_id,
                       **await _event_data(reversal, unit), reverses_id=original.id,
                       reverses_receipt=original.receipt_number, reason=reversal.reason)
    except IntegrityError:
        raise InputError({"reason": _("This payment has already been reversed.")}) from None
    return reversal


async def _event_data(payment: Payment, unit: Unit) -> dict:
    """What `fees.payment_posted` / `fees.payment_reversed` carry (amounts as text, times ISO 8601 UTC)."""
    allocated = await Allocation.filter(payment_id=payment.id).values_list("bill_id", "amount")
    return {
        "payment_id": payment.id, "receipt_number": payment.receipt_number, "unit_id": unit.id,
        "unit_code": unit.code, "customer_id": payment.customer_id, "amount": str(payment.amount),
        "method": payment.method, "reference": payment.reference, "posted_at": payment.received_at.isoformat(),
        "bills": [{"bill_id": bill_id, "amount": str(amount)} for bill_id, amount in allocated],
    }


async def void_bill(bill: Bill, reason: str, *, approver_id: int) -> Bill:
    """Cancel a bill issued by mistake; only a bill with nothing paid on it."""
    reason = (reason or "").strip()
    if not reason:
        raise InputError({"reason": _("Say why the bill is voided.")})
    async with transaction():
        bill = await Bill.filter(id=bill.id).select_for_update().get()
        if bill.status == BillStatus.VOID:
            raise InputError({"reason": _("This bill is already void.")})
        if bill.paid != 0:
            raise InputError({"reason": _("Money is allocated to this bill; reverse those payments first.")})
        await Bill.filter(id=bill.id).update(status=BillStatus.VOID, void_reason=reason[:255])
        await timeline.post(bill, "status", _("Bill voided. Reason: %(reason)s", reason=reason), author=approver_id,
                            data={"from": bill.status, "to": BillStatus.VOID})
        await bill.refresh_from_db()
    return bill
