"""Fee items, rates and the monthly bill run.

The bill run goes through an estate's units in id order, in chunks (2,000 by
default), each chunk in its own transaction that also records the last unit
id done on the period's `BillRun` row. A crash loses at most the chunk in
flight, and the next run resumes after the last committed unit. A bill is
created only where none exists for the unit and period; should two runs race
anyway, the UNIQUE constraints on (unit, period) and (unit, item, period)
refuse the second bill and its chunk is redone.

A chunk costs a fixed handful of statements whatever its size: the facts of
its units are read by unit id range, and on PostgreSQL its bills are written
with one INSERT ... SELECT FROM unnest (ids returned) and its lines with COPY,
on the chunk's own transaction connection (the ORM's bulk inserts elsewhere).
Each new bill is announced (`fees.bill_issued`) inside its chunk's
transaction, so a chunk redone after a crash announces its bills once; the
run ends with `fees.bill_run_completed`. Memory holds one chunk.

Amounts: quantity × price per line, half-up to the fen, then the discount
(percent of that line, half-up to the fen) is taken off. The bill's total is
the sum of its lines. The rate used is the one valid on the period's first day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Awaitable, Callable

from tortoise import connections
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.expressions import Q
from tortoise.functions import Count, Sum

from core.api import (
    CustomerUnit, Relation, Sequence, Unit, UnitUse, emit, emit_many, gettext as _, timeline, transaction,
)
from plugins.fees.models import (
    Basis, Bill, BillLine, BillRun, BillRunState, BillStatus, BillTo, Discount, FeeItem, FeeRate, MeterCharge,
    UnitBilling, UnitItemExclusion,
)
from plugins.fees.money import FEN, InputError, ZERO, month_end, period_label, round_fen, utcnow

CHUNK_SIZE = 2000
DEFAULT_DUE_DAY = 15
HUNDRED = Decimal(100)
ONE = Decimal(1)

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


# A unit's chargeable items and whom its bills go to ---------------------------------


@dataclass
class UnitItem:
    """How one active fee item applies to a unit, for the unit's billing card."""

    item: FeeItem
    rate: FeeRate | None  # valid today for the unit's use (None for pass-through items)
    exclusion: UnitItemExclusion | None

    @property
    def charged(self) -> bool:
        return self.exclusion is None and (self.item.basis == Basis.METERED or self.rate is not None)


async def unit_items(unit: Unit, day: date) -> list[UnitItem]:
    items = await FeeItem.filter(project_id=unit.project_id, is_active=True).order_by("order", "id")
    rates = await rates_on(unit.project_id, day)
    exclusions = {
        e.item_id: e for e in await UnitItemExclusion.filter(unit_id=unit.id).prefetch_related("created_by")
    }
    return [UnitItem(item, rates.get((item.id, unit.use)), exclusions.get(item.id)) for item in items]


async def set_item_charged(unit: Unit, item: FeeItem, charged: bool, reason: str, *, user_id: int) -> bool:
    """Charge `item` to `unit` again, or stop charging it (a reason is required); False when nothing changed.

    Applies to bills issued from now on; the unit's history records who and why.
    """
    reason = (reason or "").strip()
    if not charged and not reason:
        raise InputError({"reason": _("Say why this unit is not charged, e.g. no parking space.")})
    async with transaction():
        existing = await UnitItemExclusion.filter(unit_id=unit.id, item_id=item.id).select_for_update().first()
        if charged:
            if existing is None:
                return False
            await UnitItemExclusion.filter(id=existing.id).delete()
            await timeline.post(unit, "fees_items", _("%(item)s is charged again (it was not because: %(reason)s).",
                                                      item=item.name, reason=existing.reason),
                                author=user_id, data={"item": item.id, "charged": True})
            return True
        if existing is not None:
            return False
        try:
            async with transaction():
                await UnitItemExclusion.create(project_id=unit.project_id, unit=unit, item=item, reason=reason[:255],
                                               created_by_id=user_id)
        except IntegrityError:
            return False  # a colleague did the same a moment ago
        await timeline.post(unit, "fees_items", _("%(item)s is no longer charged: %(reason)s", item=item.name,
                                                  reason=reason), author=user_id, data={"item": item.id, "charged": False})
    return True


async def billing_of(unit: Unit) -> UnitBilling | None:
    return await UnitBilling.get_or_none(unit_id=unit.id).prefetch_related("changed_by")


async def set_bill_to(unit: Unit, choice: str, *, user_id: int, now: datetime | None = None) -> bool:
    """Send the unit's future bills to its owner or to its current tenant; False when nothing changed."""
    if choice not in BillTo.CHOICES:
        raise InputError({"bill_to": _("Choose the owner or the tenant.")})
    async with transaction():
        current = await UnitBilling.filter(unit_id=unit.id).select_for_update().first()
        if (current.bill_to if current else BillTo.OWNER) == choice:
            return False
        values = {"bill_to": choice, "changed_by_id": user_id, "changed_at": now or utcnow()}
        if current is None:
            await UnitBilling.create(project_id=unit.project_id, unit=unit, **values)
        else:
            await UnitBilling.filter(id=current.id).update(**values)
        text = (_("Bills go to the tenant from the next bill run (to the owner while there is no tenant).")
                if choice == BillTo.TENANT else _("Bills go to the owner from the next bill run."))
        await timeline.post(unit, "fees_bill_to", text, author=user_id, data={"bill_to": choice})
    return True


async def billed_customer(unit: Unit, day: date) -> tuple[int | None, str]:
    """(customer id, relation) a bill for the month of `day` would go to now."""
    period = day.replace(day=1)
    facts = await _chunk_facts(period, unit.id, unit.id, {}, {})
    return bill_to(unit.id, facts)


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
    metered: dict[tuple[int, int], Decimal]
    bill_tenant: set[int]
    links: dict[int, list[tuple]]  # unit id -> [(relation, start_date, link id, customer id)]
    priced: dict[tuple, LineDraft] = field(default_factory=dict)

    def line(self, item: FeeItem, quantity: Decimal, unit_price: Decimal, percent: Decimal) -> LineDraft | None:
        """The priced line, worked out once per chunk for each item, quantity, price and discount
        (an estate's units share a handful of areas)."""
        key = (item.id, quantity, unit_price, percent)
        line = self.priced.get(key, False)
        if line is False:
            quantity = quantity.quantize(FEN)
            line = self.priced[key] = price_line(item, quantity, unit_price, percent) if quantity > 0 else None
        return line


async def _chunk_facts(period: date, first: int, last: int, items, rates) -> ChunkFacts:
    """The facts of the units with ids first..last (a chunk's units are the estate's ids in that span)."""
    span = {"unit_id__gte": first, "unit_id__lte": last}
    excluded = set(await UnitItemExclusion.filter(**span).values_list("unit_id", "item_id"))
    discounts: dict[int, list[Discount]] = {}
    for discount in await Discount.filter(
        Q(valid_to__isnull=True) | Q(valid_to__gte=period), valid_from__lte=period, **span
    ):
        discounts.setdefault(discount.unit_id, []).append(discount)
    metered = {
        (unit_id, item_id): Decimal(amount)
        for unit_id, item_id, amount in await MeterCharge.filter(period=period, **span).values_list(
            "unit_id", "item_id", "amount"
        )
    }
    bill_tenant = set(
        await UnitBilling.filter(bill_to=BillTo.TENANT, **span).values_list("unit_id", flat=True)
    )
    links: dict[int, list[tuple]] = {}
    for unit_id, relation, start, link_id, customer_id in await CustomerUnit.filter(
        Q(start_date__isnull=True) | Q(start_date__lte=month_end(period)),
        Q(end_date__isnull=True) | Q(end_date__gte=period),
        relation__in=[Relation.OWNER, Relation.TENANT], **span,
    ).values_list("unit_id", "relation", "start_date", "id", "customer_id"):
        links.setdefault(unit_id, []).append((relation, start or date.min, link_id, customer_id))
    return ChunkFacts(items, rates, excluded, discounts, metered, bill_tenant, links)


def _percent_off(discounts: list[Discount], item_id: int) -> Decimal:
    # Several discounts do not add up: the largest one for the item applies.
    applicable = [d.percent for d in discounts if d.item_id in (None, item_id)]
    return min(max(applicable), HUNDRED) if applicable else ZERO


def lines_for(unit: dict, facts: ChunkFacts) -> list[LineDraft]:
    lines = []
    unit_id = unit["id"]
    discounts = facts.discounts.get(unit_id)
    for item in facts.items.values():
        if (unit_id, item.id) in facts.excluded:
            continue
        percent = _percent_off(discounts, item.id) if discounts else ZERO
        if item.basis == Basis.METERED:
            amount = facts.metered.get((unit_id, item.id))
            if amount:  # an amount of 0 (nothing used) puts no line on the bill
                lines.append(price_line(item, ONE, amount, percent))
            continue
        rate = facts.rates.get((item.id, unit["use"]))
        if rate is None:
            continue
        line = facts.line(item, Decimal(unit["area"]) if item.basis == Basis.AREA else ONE, rate.price, percent)
        if line is not None:
            lines.append(line)
    return lines


def bill_to(unit_id: int, facts: ChunkFacts) -> tuple[int | None, str]:
    """(customer, relation) billed: the unit's owner for the period, or its tenant where configured
    and there is one; the latest link wins."""
    links = facts.links.get(unit_id, ())
    wanted = (Relation.TENANT, Relation.OWNER) if unit_id in facts.bill_tenant else (Relation.OWNER,)
    for relation in wanted:
        candidates = [link for link in links if link[0] == relation]
        if candidates:
            return max(candidates)[3], relation
    return None, ""


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
    actor = run.requested_by_id
    statistics = await TableStatistics.load()
    try:
        while True:
            units = await Unit.filter(project_id=project.id, id__gt=after).order_by("id").limit(chunk_size).values(
                "id", "area", "use"
            )
            if not units:
                break
            for attempt in (1, 2):
                try:
                    async with transaction() as client:
                        # First: amounts entered meanwhile (plugins.fees.metered) wait for this chunk, or it for them.
                        await BillRun.filter(id=run.id).select_for_update().first()
                        issued = await _bill_chunk(client, project.id, period, units, items, rates, due_day, now)
                        await apply_credit(units[0]["id"], units[-1]["id"], now=now)
                        await emit_many("fees.bill_issued", project.id, issued, actor_id=actor)
                        after, done = units[-1]["id"], done + len(units)
                        await BillRun.filter(id=run.id).update(
                            last_unit_id=after, units_done=done, bills_created=run.bills_created + len(issued)
                        )
                        if checkpoint is not None:
                            await checkpoint({"period": period.isoformat(), "after": after})
                        if progress is not None:
                            await progress(done, total)
                    run.bills_created += len(issued)
                    await statistics.grew(len(issued))
                    break
                except IntegrityError:
                    # Another run billed some of these units meanwhile: redo the chunk, skipping them.
                    if attempt == 2:
                        raise
    except Exception as exc:
        await BillRun.filter(id=run.id).update(state=BillRunState.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    async with transaction():
        await BillRun.filter(id=run.id).update(state=BillRunState.DONE, finished_at=now, units_done=total)
        await run.refresh_from_db()
        billed = await Bill.filter(project_id=project.id, period=period).exclude(status=BillStatus.VOID).annotate(
            n=Count("id"), amount=Sum("total")
        ).first().values("n", "amount")
        await emit(
            "fees.bill_run_completed", project.id, actor,
            run_id=run.id, period=period_label(period), bills_created=run.bills_created, units=total,
            bills=billed["n"] or 0, amount=str(Decimal(str(billed["amount"] or 0)).quantize(FEN)),
            finished_at=now.isoformat(),
        )
    return run


class TableStatistics:
    """Keeps PostgreSQL's statistics of the bill tables current while a run grows them.

    The database checks each new line's bill (a foreign key) with a plan made
    once per connection from the table's statistics. Planned while the bill
    table was nearly empty (an estate's first run), it reads the whole table
    for every line, and the run slows down as the table grows. ANALYZE each
    time the run has doubled the table gives the checks an index plan again.
    """

    TABLES = "fees_bill, fees_bill_line"

    def __init__(self, client, known: float):
        self.client = client
        self.known = max(known, 1000.0)
        self.added = 0

    @classmethod
    async def load(cls) -> "TableStatistics":
        client = connections.get("default")
        if client.capabilities.dialect != "postgres":
            return cls(None, 0)
        rows = await client.execute_query_dict("SELECT reltuples FROM pg_class WHERE relname = 'fees_bill'")
        return cls(client, float(rows[0]["reltuples"]) if rows else 0.0)

    async def grew(self, bills: int) -> None:
        self.added += bills
        if self.client is None or self.added < self.known:
            return
        try:
            await self.client.execute_script(f"ANALYZE {self.TABLES}")
        except OperationalError:  # e.g. not the tables' owner: slower, still correct
            self.client = None
        self.known += self.added
        self.added = 0


@dataclass
class NewBill:
    number: str
    unit_id: int
    customer_id: int | None
    relation: str
    total: Decimal
    lines: list[LineDraft]


async def _bill_chunk(client, project_id, period, units, items, rates, due_day, now) -> list[dict]:
    """Bill the chunk's units that have no bill for the period; returns the `fees.bill_issued` data of each."""
    first, last = units[0]["id"], units[-1]["id"]
    billed = set(await Bill.filter(unit_id__gte=first, unit_id__lte=last, period=period).values_list("unit_id", flat=True))
    todo = [u for u in units if u["id"] not in billed]
    if not todo:
        return []
    facts = await _chunk_facts(period, todo[0]["id"], todo[-1]["id"], items, rates)
    drafts = [(unit["id"], lines) for unit in todo if (lines := lines_for(unit, facts))]
    if not drafts:
        return []
    last = await Sequence.take(project_id, "fees.bill", len(drafts))
    due = due_date_for(period, due_day)
    bills = []
    for serial, (unit_id, lines) in enumerate(drafts, start=last - len(drafts) + 1):
        customer_id, relation = bill_to(unit_id, facts)
        total = sum((line.amount for line in lines), ZERO)
        bills.append(NewBill(bill_number(period, serial), unit_id, customer_id, relation, total, lines))
    insert = _insert_postgres if client.capabilities.dialect == "postgres" else _insert_orm
    ids = await insert(client, project_id, period, due, now, bills)
    label, due_text, issued_at = period_label(period), due.isoformat(), now.isoformat()
    return [
        {"bill_id": ids[b.unit_id], "number": b.number, "unit_id": b.unit_id, "customer_id": b.customer_id,
         "billed_as": b.relation, "period": label, "total": str(b.total), "due_date": due_text, "issued_at": issued_at}
        for b in bills
    ]


def _status(total: Decimal) -> str:
    return BillStatus.OPEN if total > 0 else BillStatus.PAID


LINE_COLUMNS = ("project_id", "bill_id", "unit_id", "item_id", "period", "description", "quantity", "unit_price",
                "gross", "discount", "amount")


def _line_rows(project_id, period, bills: list[NewBill], ids: dict[int, int]):
    for bill in bills:
        for line in bill.lines:
            yield (project_id, ids[bill.unit_id], bill.unit_id, line.item.id, period, line.description[:255],
                   line.quantity, line.unit_price, line.gross, line.discount, line.amount)


async def _insert_postgres(client, project_id, period, due, now, bills: list[NewBill]) -> dict[int, int]:
    """Bills with one INSERT ... SELECT FROM unnest (ids back), lines with COPY, on the transaction's connection.

    The UNIQUE constraints apply to both as to any insert: a unit billed by a
    racing run makes the chunk fail with IntegrityError and be redone.
    """
    import asyncpg

    try:
        async with client.acquire_connection() as conn:
            rows = await conn.fetch(
                """INSERT INTO fees_bill (project_id, number, unit_id, customer_id, customer_relation, period,
                       due_date, total, paid, status, void_reason, issued_at, updated_at)
                   SELECT $1, b.number, b.unit_id, b.customer_id, b.relation, $2, $3, b.total, 0,
                          CASE WHEN b.total > 0 THEN $4 ELSE $5 END, '', $6, $12
                   FROM unnest($7::varchar[], $8::int[], $9::int[], $10::varchar[], $11::numeric[])
                        AS b(number, unit_id, customer_id, relation, total)
                   RETURNING id, unit_id""",
                project_id, period, due, BillStatus.OPEN, BillStatus.PAID, now,
                [b.number for b in bills], [b.unit_id for b in bills], [b.customer_id for b in bills],
                [b.relation for b in bills], [b.total for b in bills], utcnow(),
            )
            ids = {row["unit_id"]: row["id"] for row in rows}
            await conn.copy_records_to_table(
                "fees_bill_line", records=_line_rows(project_id, period, bills, ids), columns=LINE_COLUMNS
            )
    except asyncpg.exceptions.IntegrityConstraintViolationError as exc:
        raise IntegrityError(str(exc)) from exc
    return ids


async def _insert_orm(client, project_id, period, due, now, bills: list[NewBill]) -> dict[int, int]:
    """The portable way (SQLite): bulk INSERTs through the ORM, then the new bills' ids by unit."""
    changed = utcnow()  # `updated_at` of the chunk's bills (API syncs): when written, not when the run began
    await Bill.bulk_create([
        Bill(project_id=project_id, number=b.number, unit_id=b.unit_id, customer_id=b.customer_id,
             customer_relation=b.relation, period=period, due_date=due, total=b.total, status=_status(b.total),
             issued_at=now, updated_at=changed)
        for b in bills
    ], using_db=client)
    ids = dict(await Bill.filter(unit_id__in=[b.unit_id for b in bills], period=period).using_db(client).values_list(
        "unit_id", "id"
    ))
    await BillLine.bulk_create(
        [BillLine(**dict(zip(LINE_COLUMNS, row))) for row in _line_rows(project_id, period, bills, ids)],
        using_db=client,
    )
    return ids
