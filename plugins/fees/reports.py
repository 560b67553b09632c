"""Collection rate, statements of account, the daily cash summary and snapshots.

Collection rate (收缴率) of a period = amount collected on the bills of that
period (allocations so far) / amount billed for that period; void bills count
in neither. Money paid in advance or late counts for the period of the bill it
was allocated to, so the figure for a month keeps improving as arrears come in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from tortoise.functions import Count, Sum

from core.api import Building, Unit
from plugins.fees.dunning import BUCKETS, ageing
from plugins.fees.models import Bill, BillStatus, CollectionSnapshot, Payment, PaymentKind
from plugins.fees.money import FEN, ZERO, add_months, month_start, utcnow


def _dec(value) -> Decimal:
    return Decimal(str(value or 0)).quantize(FEN)


@dataclass
class Rate:
    label: str
    billed: Decimal = ZERO
    collected: Decimal = ZERO
    key: object = None

    @property
    def outstanding(self) -> Decimal:
        return self.billed - self.collected

    @property
    def rate(self) -> Decimal | None:
        """Collected / billed, to 4 decimals (0.9512 = 95.1 %); None when nothing was billed."""
        return (self.collected / self.billed).quantize(Decimal("0.0001")) if self.billed else None


def _billed_bills(project_id: int):
    return Bill.filter(project_id=project_id).exclude(status=BillStatus.VOID)


async def rate_by_month(project_id: int, last: date, months: int = 12) -> list[Rate]:
    first = add_months(last, -(months - 1))
    rows = await _billed_bills(project_id).filter(period__gte=first, period__lte=last).group_by("period").annotate(
        billed=Sum("total"), collected=Sum("paid")
    ).values("period", "billed", "collected")
    found = {row["period"]: row for row in rows}
    result = []
    for i in range(months):
        period = add_months(first, i)
        row = found.get(period, {})
        result.append(Rate(f"{period.year}-{period.month:02d}", _dec(row.get("billed")), _dec(row.get("collected")), period))
    return result


async def rate_for(project_id: int, period: date) -> Rate:
    return (await rate_by_month(project_id, period, 1))[0]


async def rate_by_building(project_id: int, period: date) -> list[Rate]:
    rows = await _billed_bills(project_id).filter(period=period).group_by("unit__building_id").annotate(
        billed=Sum("total"), collected=Sum("paid")
    ).values("unit__building_id", "billed", "collected")
    names = {b.id: b.name for b in await Building.filter(project_id=project_id)}
    result = [
        Rate(names.get(row["unit__building_id"], "?"), _dec(row["billed"]), _dec(row["collected"]), row["unit__building_id"])
        for row in rows
    ]
    return sorted(result, key=lambda r: r.label)


# Statement of account -----------------------------------------------------------------


@dataclass
class StatementLine:
    when: date
    kind: str  # "bill" or "payment"
    reference: str
    text: str
    debit: Decimal
    credit: Decimal
    balance: Decimal = ZERO
    record: object = None


async def statement(unit: Unit, tz: str) -> tuple[list[StatementLine], Decimal]:
    """Bills (debits) and payments (credits, reversals negative) in date order with the running balance.

    The closing balance equals the open bills' balances minus the unit's credit.
    """
    lines = []
    for bill in await Bill.filter(unit_id=unit.id).exclude(status=BillStatus.VOID).order_by("period", "id"):
        lines.append(StatementLine(bill.period, "bill", bill.number, f"{bill.period.year}-{bill.period.month:02d}",
                                   bill.total, ZERO, record=bill))
    zone = ZoneInfo(tz)
    for payment in await Payment.filter(unit_id=unit.id).order_by("received_at", "id"):
        lines.append(StatementLine(payment.received_at.astimezone(zone).date(), "payment", payment.receipt_number,
                                   payment.method, ZERO, payment.amount, record=payment))
    lines.sort(key=lambda line: (line.when, 0 if line.kind == "bill" else 1))
    balance = ZERO
    for line in lines:
        balance += line.debit - line.credit
        line.balance = balance
    return lines, balance


# A unit's or customer's account at a glance ------------------------------------------


def open_totals(open_bills, today: date) -> tuple[Decimal, Decimal]:
    """(outstanding, overdue) of open bills: the sum of their balances, and of those past their due date."""
    outstanding = sum((b.balance for b in open_bills), ZERO)
    return outstanding, sum((b.balance for b in open_bills if b.due_date < today), ZERO)


async def last_payment(**where) -> Payment | None:
    """The latest payment (not reversal) matching `where`, e.g. `unit_id=...` or `customer_id=...`."""
    return await Payment.filter(kind=PaymentKind.PAYMENT, **where).order_by("-received_at", "-id").first()


@dataclass
class Account:
    """A unit's account: what its open bills still owe (and of it, overdue), its credit and last payment."""

    outstanding: Decimal
    overdue: Decimal
    open_bills: int
    credit: Decimal
    last_payment: Payment | None

    @property
    def balance(self) -> Decimal:
        """Owed less credit: the closing balance of the unit's statement (negative: paid in advance)."""
        return self.outstanding - self.credit


async def unit_account(unit_id: int, today: date) -> Account:
    """The figures of the unit page's account box (and the JSON API's balance); `today` in the estate's zone."""
    from plugins.fees.payments import unit_credit

    bills = await Bill.filter(unit_id=unit_id, status=BillStatus.OPEN)
    outstanding, overdue = open_totals(bills, today)
    credit = (await unit_credit([unit_id])).get(unit_id, ZERO)
    return Account(outstanding, overdue, len(bills), credit, await last_payment(unit_id=unit_id))


# Daily cash summary ------------------------------------------------------------------


def local_day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(), zone).astimezone(timezone.utc)
    return start, datetime.combine(day + timedelta(days=1), time(), zone).astimezone(timezone.utc)


@dataclass
class CashierDay:
    cashier_id: int
    name: str
    by_method: dict[str, Decimal] = field(default_factory=dict)
    count: int = 0
    reversals: Decimal = ZERO
    total: Decimal = ZERO


async def cash_summary(project_id: int, day: date, tz: str) -> tuple[list[CashierDay], list[Payment], Decimal]:
    """Per cashier and method, the day's receipts (reversals count on the day they were made).

    Returns (per cashier, the receipts themselves, the day's total); the
    cashiers' totals add up to the sum of the receipts.
    """
    start, end = local_day_bounds(day, tz)
    receipts = await Payment.filter(project_id=project_id, received_at__gte=start, received_at__lt=end).order_by(
        "receipt_number"
    ).prefetch_related("cashier", "unit")
    people: dict[int, CashierDay] = {}
    for payment in receipts:
        person = people.get(payment.cashier_id)
        if person is None:
            person = people[payment.cashier_id] = CashierDay(payment.cashier_id, str(payment.cashier))
        person.by_method[payment.method] = person.by_method.get(payment.method, ZERO) + payment.amount
        person.count += 1
        person.total += payment.amount
        if payment.kind == PaymentKind.REVERSAL:
            person.reversals += payment.amount
    total = sum((p.amount for p in receipts), ZERO)
    return sorted(people.values(), key=lambda p: p.name), receipts, total


# Snapshots -----------------------------------------------------------------------------


async def take_snapshot(project, day: date, *, now: datetime | None = None) -> CollectionSnapshot:
    """The day's figures for the dashboard: this month's billed and collected, arrears by bucket."""
    period = month_start(day)
    rate = await rate_for(project.id, period)
    buckets = await ageing(project.id, day)
    values = {
        "billed": rate.billed, "collected": rate.collected, "arrears": sum(buckets.values(), ZERO),
        "buckets": {key: str(amount) for key, amount in buckets.items()}, "taken_at": now or utcnow(),
    }
    snapshot, _created = await CollectionSnapshot.update_or_create(defaults=values, project_id=project.id, day=day)
    return snapshot


async def bill_counts(project_id: int, period: date) -> dict[str, int]:
    rows = await Bill.filter(project_id=project_id, period=period).group_by("status").annotate(n=Count("id")).values(
        "status", "n"
    )
    counts = defaultdict(int)
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


BUCKET_KEYS = [key for key, _first, _last in BUCKETS]
