"""Arrears ageing and dunning (催缴).

A bill is overdue the day after its due date. Dunning steps (reminder email
at 15 days, letter at 30, call at 60, manager review at 90, as the estate
configures them) are applied by a daily job: for each overdue open bill the
most advanced step that is due and not yet reached is applied once (the UNIQUE
(bill, step) constraint makes a second worker's attempt fail harmlessly) and
recorded on the bill's timeline. A bill first noticed at 95 days gets the
review, not four messages at once.

Dunning pauses for a unit while a promise to pay runs (until its date) and for
units another plugin holds through the `dunning_holds` hook (an open complaint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from tortoise.exceptions import IntegrityError

from core.api import Customer, Unit, gettext as _, queue_email, timeline, transaction
from plugins.fees.models import Bill, BillStatus, DunningAction, DunningRecord, DunningStep, PromiseToPay
from plugins.fees.money import InputError, ZERO, format_amount, parse_amount, utcnow

CHUNK = 500

BUCKETS = (("0-30", 1, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("90+", 91, None))
"""Ageing buckets: (key, first day overdue, last day overdue)."""

DEFAULT_STEPS = (
    (15, DunningAction.EMAIL, "Reminder email"),
    (30, DunningAction.LETTER, "Reminder letter"),
    (60, DunningAction.CALL, "Phone call"),
    (90, DunningAction.REVIEW, "Manager review"),
)


def days_overdue(due_date: date, today: date) -> int:
    return max(0, (today - due_date).days)


def bucket_of(days: int) -> str | None:
    for key, first, last in BUCKETS:
        if days >= first and (last is None or days <= last):
            return key
    return None


async def ageing(project_id: int, today: date) -> dict[str, Decimal]:
    """Overdue balance per bucket, read in chunks (tens of thousands of bills stay cheap)."""
    totals = {key: ZERO for key, _first, _last in BUCKETS}
    after = 0
    while True:
        rows = await Bill.filter(
            project_id=project_id, status=BillStatus.OPEN, due_date__lt=today, id__gt=after
        ).order_by("id").limit(5000).values("id", "total", "paid", "due_date")
        if not rows:
            return totals
        for row in rows:
            key = bucket_of(days_overdue(row["due_date"], today))
            if key:
                totals[key] += Decimal(row["total"]) - Decimal(row["paid"])
        after = rows[-1]["id"]


# Steps ------------------------------------------------------------------------------


async def create_step(project_id: int, name: str, days: str, action: str) -> DunningStep:
    errors = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = _("Enter a name, e.g. Reminder letter.")
    try:
        days_value = int(str(days).strip())
        if not 1 <= days_value <= 3650:
            raise ValueError
    except ValueError:
        errors["days_overdue"] = _("Enter whole days overdue, from 1 to 3650.")
        days_value = 0
    if action not in DunningAction.CHOICES:
        errors["action"] = _("Choose what the step does.")
    if not errors and await DunningStep.filter(project_id=project_id, days_overdue=days_value, action=action).exists():
        errors["days_overdue"] = _("There is already a step with this action on this day.")
    if errors:
        raise InputError(errors)
    return await DunningStep.create(project_id=project_id, name=name[:64], days_overdue=days_value, action=action)


async def ensure_default_steps(project_id: int) -> None:
    """The usual ladder for an estate that has none yet."""
    if await DunningStep.filter(project_id=project_id).exists():
        return
    for days, action, name in DEFAULT_STEPS:
        await DunningStep.create(project_id=project_id, name=_(name), days_overdue=days, action=action)


# Promises to pay -----------------------------------------------------------------


async def record_promise(unit: Unit, promised: date | None, amount_text: str, note: str, *, user_id: int, today: date,
                         now: datetime | None = None) -> PromiseToPay:
    errors = {}
    if promised is None:
        errors["promised_date"] = _("Enter the date the customer promised to pay by.")
    elif promised < today:
        errors["promised_date"] = _("The promised date is in the past.")
    amount = None
    if (amount_text or "").strip():
        try:
            amount = parse_amount(amount_text)
        except InputError as exc:
            errors.update(exc.errors)
    if errors:
        raise InputError(errors)
    async with transaction():
        promise = await PromiseToPay.create(
            project_id=unit.project_id, unit=unit, promised_date=promised, amount=amount, note=(note or "").strip()[:255],
            created_by_id=user_id, created_at=now or utcnow(),
        )
        for bill in await Bill.filter(unit_id=unit.id, status=BillStatus.OPEN):
            await timeline.post(
                bill, "promise", _("Promise to pay by %(date)s; dunning paused until then.", date=promised.isoformat()),
                author=user_id, data={"promise": promise.id},
            )
    return promise


async def promised_units(unit_ids: list[int], today: date) -> set[int]:
    return set(
        await PromiseToPay.filter(unit_id__in=unit_ids, promised_date__gte=today).values_list("unit_id", flat=True)
    )


# The daily run ----------------------------------------------------------------------


@dataclass
class DunningReport:
    applied: dict[str, int] = field(default_factory=dict)
    held: int = 0


async def _holds(host, project, enabled: set[str], unit_ids: list[int], today: date) -> set[int]:
    held = await promised_units(unit_ids, today)
    if host is not None:
        for result in await host.call("dunning_holds", enabled=enabled, project=project, unit_ids=unit_ids):
            if result.error is None and result.value:
                held |= {int(u) for u in result.value}
    return held


async def apply_dunning(project, today: date, *, now: datetime | None = None, host=None, enabled: set[str] | None = None) -> DunningReport:
    """Apply the due dunning step to every overdue open bill of `project` (once per bill and step)."""
    now = now or utcnow()
    report = DunningReport()
    steps = await DunningStep.filter(project_id=project.id, is_active=True).order_by("days_overdue", "id")
    if not steps:
        return report
    enabled = enabled or set()
    latest_due = today - timedelta(days=steps[0].days_overdue)
    after = 0
    while True:
        bills = await Bill.filter(
            project_id=project.id, status=BillStatus.OPEN, due_date__lte=latest_due, id__gt=after
        ).order_by("id").limit(CHUNK)
        if not bills:
            return report
        after = bills[-1].id
        held = await _holds(host, project, enabled, sorted({b.unit_id for b in bills}), today)
        done: dict[int, set[int]] = {}
        for bill_id, step_id in await DunningRecord.filter(bill_id__in=[b.id for b in bills]).values_list("bill_id", "step_id"):
            done.setdefault(bill_id, set()).add(step_id)
        days_of = {step.id: step.days_overdue for step in steps}
        for bill in bills:
            if bill.balance <= 0:
                continue
            if bill.unit_id in held:
                report.held += 1
                continue
            overdue = days_overdue(bill.due_date, today)
            due = [step for step in steps if step.days_overdue <= overdue]
            reached = max((days_of.get(s, 0) for s in done.get(bill.id, ())), default=0)
            if not due or due[-1].days_overdue <= reached:
                continue
            if await _apply(project, bill, due[-1], overdue, now, host, enabled):
                report.applied[due[-1].action] = report.applied.get(due[-1].action, 0) + 1


async def _apply(project, bill: Bill, step: DunningStep, overdue: int, now: datetime, host, enabled) -> bool:
    customer = await Customer.get_or_none(id=bill.customer_id) if bill.customer_id else None
    unit = await Unit.get(id=bill.unit_id)
    try:
        async with transaction():
            record = await DunningRecord.create(
                project_id=bill.project_id, bill=bill, step=step, action=step.action, balance=bill.balance,
                applied_at=now,
            )
            detail = await _act(project, bill, step, unit, customer, overdue, now, host, enabled)
            await DunningRecord.filter(id=record.id).update(detail=detail[:255])
            await timeline.post(
                bill, "dunning",
                _("Dunning step “%(step)s” at %(days)s days overdue, balance %(balance)s: %(detail)s",
                  step=step.name, days=overdue, balance=format_amount(bill.balance), detail=detail),
                data={"step": step.id, "action": step.action},
            )
    except IntegrityError:
        return False  # another worker applied this step to this bill first
    return True


async def _act(project, bill, step, unit, customer, overdue, now, host, enabled) -> str:
    if step.action == DunningAction.EMAIL:
        if customer is None or not customer.email:
            return _("no email address on file; reminder not sent")
        await queue_email(
            to=customer.email, template="fees/reminder", locale=customer.locale, project_id=bill.project_id,
            related=f"fees.Bill:{bill.id}",
            context={
                "customer": customer.name, "estate": project.name, "unit": unit.code, "bill": bill.number,
                "period": f"{bill.period.year}-{bill.period.month:02d}", "balance": bill.balance,
                "due_date": bill.due_date.isoformat(), "days": overdue,
            },
        )
        return _("reminder emailed to %(email)s", email=customer.email)
    if step.action == DunningAction.LETTER:
        return _("reminder letter ready to print")
    if step.action == DunningAction.CALL:
        if host is not None and customer is not None:
            results = await host.call(
                "callback_task_requested", enabled=enabled, contain=False, project=project, customer_id=customer.id,
                unit_id=unit.id, reason=_("Arrears of %(balance)s on bill %(bill)s, %(days)s days overdue",
                                          balance=format_amount(bill.balance), bill=bill.number, days=overdue),
                due_at=now, source=f"fees.Bill:{bill.id}",
            )
            if any(r.value is not None for r in results):
                return _("call task added to the hotline callback queue")
        return _("call the customer (listed under arrears to call)")
    return _("waiting for a manager's review")
