"""Fee items, rates and the monthly bill run.

The bill run goes through an estate's units in id order, in chunks (500 by
default), each chunk in its own transaction that also records the last unit
id done on the period's `BillRun` row. A crash loses at most the chunk in
flight, and the next run resumes after the last committed unit. A bill is
created only where none exists for the unit and period; should two runs race
anyway, the UNIQUE constraints on (unit, period) and (unit, item, period)
refuse the second bill and its chunk is redone.

Amounts: quantity × price per line, half-up to the fen, then the discount
(percent of that line, half-up to the fen) is taken off. The bill's total is
the sum of its lines. The rate used is the one valid on the period's first day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Awaitable, Callable

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from core.api import CustomerUnit, Relation, Sequence, Unit, UnitUse, gettext as _, transaction
from plugins.fees.models import (
    Basis, Bill, BillLine, BillRun, BillRunState, BillStatus, BillTo, Discount, FeeItem, FeeRate, MeterCharge,
    UnitBilling, UnitItemExclusion,
)
from plugins.fees.money import InputError, ZERO, month_end, round_fen, utcnow

CHUNK_SIZE = 500
DEFAULT_DUE_DAY = 15
HUNDRED = Decimal(100)

Progress = Callable[[int, int], Awaitable[Any]]
Checkpoint = Callable[[dict], Awaitable[Any]]


# Fee items and rates ---------------------------------------------------------


async def create_item(project_id: int, code: str, name: str, basis: str, order: int = 0) -> FeeItem:
    code, name = (code or "").strip(), (name or "").strip()
    errors = {}
    if not code:
        errors["code"] = _("Enter a short code, e.g. PROP.")
    elif len(code) > 32:
        errors["code"] = _("At most 32 characters.")
    elif await FeeItem.filter(project_id=project_id, code=code).exists():
        errors["code"] = _("Another fee item has this code.")
    if not name:
        errors["name"] = _("Enter the name shown on bills.")
    if basis not in Basis.CHOICES:
        errors["basis"] = _("Choose how the amount is found.")
    if errors:
        raise InputError(errors)
    return await FeeItem.create(project_id=project_id, code=code, name=name[:64], basis=basis, order=order)


async def add_rate(item: FeeItem, use: str, price: Decimal, valid_from: date, valid_to: date | None) -> FeeRate:
    """A rate for `item` and units of `use`; refused when its dates overlap another rate of the same item and use."""
    if use not in UnitUse.CHOICES:
        raise InputError({"use": _("Choose the unit use this rate is for.")})
    if item.basis == Basis.METERED:
        raise InputError({"item": _("Pass-through items have no rate: their amounts are entered per unit.")})
    if valid_to is not None and valid_to < valid_from:
        raise InputError({"valid_to": _("The end date is before the start date.")})
    async with transaction():
        # Lock the item so two rates for it cannot both pass the overlap check.
        await FeeItem.filter(id=item.id).select_for_update().first()
        clash = await _overlapping_rate(item.id, use, valid_from, valid_to)
        if clash is not None:
            until = clash.valid_to.isoformat() if clash.valid_to else _("open-ended")
            raise InputError({
                "valid_from": _(
                    "Overlaps the rate valid from %(start)s to %(end)s for this item and use; end that rate first.",
                    start=clash.valid_from.isoformat(), end=until,
                )
            })
        return await FeeRate.create(
            project_id=item.project_id, item=item, use=use, price=price, valid_from=valid_from, valid_to=valid_to
        )


async def _overlapping_rate(item_id: int, use: str, start: date, end: date | None) -> FeeRate | None:
    query = FeeRate.filter(item_id=item_id, use=use).filter(Q(valid_to__isnull=True) | Q(valid_to__gte=start))
    if end is not None:
        query = query.filter(valid_from__lte=end)
    return await query.first()


async def rates_on(project_id: int, day: date) -> dict[tuple[int, str], FeeRate]:
    """(item id, use) -> the rate valid on `day`, for active items."""
    rates = await FeeRate.filter(
        Q(valid_to__isnull=True) | Q(valid_to__gte=day), project_id=project_id, valid_from__lte=day,
        item__is_active=True,
    )
    return {(rate.item_id, rate.use): rate for rate in rates}


# Working out one unit's bill ---------------------------------------------------


@dataclass
class LineDraft:
    item: FeeItem
    description: str
    quantity: Decimal
    unit_price: Decimal
    gross: Decimal
    discount: Decimal
    amount: Decimal


def price_line(item: FeeItem, quantity: Decimal, unit_price: Decimal, percent_off: Decimal) -> LineDraft:
    gross = round_fen(quantity * unit_price)
    discount = round_fen(gross * percent_off / HUNDRED) if percent_off else ZERO
    description = item.name
    if percent_off:
        description = f"{item.name} (-{percent_off.normalize():f}%)"
    return LineDraft(item, description, quantity, unit_price, gross, discount, gross - discount)


@dataclass
class ChunkFacts:
    """Everything the lines of one chunk of units depend on, loaded with a few queries."""

    items: dict[int, FeeItem]
    rates: dict[tuple[int, str], FeeRate]
    excluded: set[tuple[int, int]]
    discounts: dict[int, list[Discount]]
    metered: dict[tuple[int, int], MeterCharge]
    bill_tenant: set[int]
    links: dict[int, list[CustomerUnit]]


async def _chunk_facts(project_id: int, period: date, unit_ids: list[int], items, rates) -> ChunkFacts:
    last = month_end(period)
    excluded = set(await UnitItemExclusion.filter(unit_id__in=unit_ids).values_list("unit_id", "item_id"))
    discounts: dict[int, list[Discount]] = {}
    for discount in await Discount.filter(
        Q(valid_to__isnull=True) | Q(valid_to__gte=period), unit_id__in=unit_ids, valid_from__lte=period
    ):
        discounts.setdefault(discount.unit_id, []).append(discount)
    metered = {
        (m.unit_id, m.item_id): m for m in await MeterCharge.filter(unit_id__in=unit_ids, period=period)
    }
    bill_tenant = set(
        await UnitBilling.filter(unit_id__in=unit_ids, bill_to=BillTo.TENANT).values_list("unit_id", flat=True)
    )
    links: dict[int, list[CustomerUnit]] = {}
    for link in await CustomerUnit.filter(
        Q(start_date__isnull=True) | Q(start_date__lte=last),
        Q(end_date__isnull=True) | Q(end_date__gte=period),
        unit_id__in=unit_ids, relation__in=[Relation.OWNER, Relation.TENANT],
    ).order_by("id"):
        links.setdefault(link.unit_id, []).append(link)
    return ChunkFacts(items, rates, excluded, discounts, metered, bill_tenant, links)


def _percent_off(discounts: list[Discount], item_id: int) -> Decimal:
    # Several discounts do not add up: the largest one for the item applies.
    applicable = [d.percent for d in discounts if d.item_id in (None, item_id)]
    return min(max(applicable), HUNDRED) if applicable else ZERO


def lines_for(unit: dict, facts: ChunkFacts) -> list[LineDraft]:
    lines = []
    unit_id = unit["id"]
    for item in facts.items.values():
        if (unit_id, item.id) in facts.excluded:
            continue
        percent = _percent_off(facts.discounts.get(unit_id, []), item.id)
        if item.basis == Basis.METERED:
            charge = facts.metered.get((unit_id, item.id))
            if charge is not None:
                lines.append(price_line(item, Decimal(1), charge.amount, percent))
            continue
        rate = facts.rates.get((item.id, unit["use"]))
        if rate is None:
            continue
        quantity = Decimal(unit["area"]) if item.basis == Basis.AREA else Decimal(1)
        if quantity <= 0:
            continue
        lines.append(price_line(item, quantity.quantize(Decimal("0.01")), rate.price, percent))
    return lines


def bill_to(unit_id: int, facts: ChunkFacts) -> int | None:
    """The customer billed: the unit's owner for the period (or its tenant where configured); the latest link wins."""
    links = facts.links.get(unit_id, [])
    wanted = [Relation.TENANT, Relation.OWNER] if unit_id in facts.bill_tenant else [Relation.OWNER]
    for relation in wanted:
        candidates = [link for link in links if link.relation == relation]
        if candidates:
            candidates.sort(key=lambda link: (link.start_date or date.min, link.id))
            return candidates[-1].customer_id
    return None


def due_date_for(period: date, due_day: int) -> date:
    return period.replace(day=min(max(1, due_day), month_end(period).day))


def bill_number(period: date, serial: int) -> str:
    return f"B{period.year}{period.month:02d}-{serial:06d}"


# The bill run --------------------------------------------------------------------


async def start_bill_run(project_id: int, period: date, *, requested_by: int | None = None, now: datetime | None = None) -> BillRun:
    """The period's run, queued to (re)start: a finished run is scanned again from the first unit."""
    now = now or utcnow()
    run = await BillRun.get_or_none(project_id=project_id, period=period)
    if run is None:
        try:
            async with transaction():
                return await BillRun.create(
                    project_id=project_id, period=period, created_at=now, requested_by_id=requested_by
                )
        except IntegrityError:
            run = await BillRun.get(project_id=project_id, period=period)
    if run.state in (BillRunState.DONE, BillRunState.FAILED):
        values: dict[str, Any] = {"state": BillRunState.QUEUED, "error": "", "requested_by_id": requested_by}
        if run.state == BillRunState.DONE:
            values.update(last_unit_id=0, units_done=0, bills_created=0)
        await BillRun.filter(id=run.id).update(**values)
        await run.refresh_from_db()
    return run


async def run_bill_run(
    project,
    period: date,
    *,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
    chunk_size: int = CHUNK_SIZE,
    due_day: int = DEFAULT_DUE_DAY,
    now: datetime | None = None,
    requested_by: int | None = None,
) -> BillRun:
    """Bill every chargeable unit of `project` for `period` (a month's first day); safe to repeat.

    Resumes after the last unit of the period's run that committed. `progress(done,
    total)` and `checkpoint({"period", "after"})` are called inside each chunk's
    transaction (the job runner stores the checkpoint with the chunk).
    """
    from plugins.fees.payments import apply_credit

    now = now or utcnow()
    run = await BillRun.get_or_none(project_id=project.id, period=period)
    if run is None or run.state == BillRunState.DONE:
        run = await start_bill_run(project.id, period, requested_by=requested_by, now=now)
    total = await Unit.filter(project_id=project.id).count()
    await BillRun.filter(id=run.id).update(state=BillRunState.RUNNING, started_at=now, units_total=total, error="")
    items = {item.id: item for item in await FeeItem.filter(project_id=project.id, is_active=True).order_by("order", "id")}
    rates = await rates_on(project.id, period)
    after, done = run.last_unit_id, run.units_done
    try:
        while True:
            units = await Unit.filter(project_id=project.id, id__gt=after).order_by("id").limit(chunk_size).values(
                "id", "area", "use"
            )
            if not units:
                break
            for attempt in (1, 2):
                try:
                    async with transaction():
                        created = await _bill_chunk(project.id, period, units, items, rates, due_day, now)
                        await apply_credit([u["id"] for u in units], now=now)
                        after, done = units[-1]["id"], done + len(units)
                        await BillRun.filter(id=run.id).update(
                            last_unit_id=after, units_done=done, bills_created=run.bills_created + created
                        )
                        run.bills_created += created
                        if checkpoint is not None:
                            await checkpoint({"period": period.isoformat(), "after": after})
                        if progress is not None:
                            await progress(done, total)
                    break
                except IntegrityError:
                    # Another run billed some of these units meanwhile: redo the chunk, skipping them.
                    if attempt == 2:
                        raise
    except Exception as exc:
        await BillRun.filter(id=run.id).update(state=BillRunState.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    await BillRun.filter(id=run.id).update(
        state=BillRunState.DONE, finished_at=utcnow() if now is None else now, units_done=total
    )
    await run.refresh_from_db()
    return run


async def _bill_chunk(project_id, period, units, items, rates, due_day, now) -> int:
    unit_ids = [u["id"] for u in units]
    billed = set(await Bill.filter(unit_id__in=unit_ids, period=period).values_list("unit_id", flat=True))
    todo = [u for u in units if u["id"] not in billed]
    if not todo:
        return 0
    facts = await _chunk_facts(project_id, period, [u["id"] for u in todo], items, rates)
    drafts = [(unit, lines) for unit in todo if (lines := lines_for(unit, facts))]
    if not drafts:
        return 0
    last = await Sequence.take(project_id, "fees.bill", len(drafts))
    due = due_date_for(period, due_day)
    rows = []
    for serial, (unit, lines) in enumerate(drafts, start=last - len(drafts) + 1):
        total = sum((line.amount for line in lines), ZERO)
        bill = await Bill.create(
            project_id=project_id, number=bill_number(period, serial), unit_id=unit["id"],
            customer_id=bill_to(unit["id"], facts), period=period, due_date=due, total=total,
            status=BillStatus.OPEN if total > 0 else BillStatus.PAID, issued_at=now,
        )
        rows.extend(
            BillLine(
                project_id=project_id, bill_id=bill.id, unit_id=unit["id"], item_id=line.item.id, period=period,
                description=line.description[:255], quantity=line.quantity, unit_price=line.unit_price,
                gross=line.gross, discount=line.discount, amount=line.amount,
            )
            for line in lines
        )
    await BillLine.bulk_create(rows)
    return len(drafts)
