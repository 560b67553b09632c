"""Return visits (定期回访): call lists generated per plan and period, and recording a call.

A call list holds one row per household (a unit with a current owner, or
else a tenant or family member) and is spread round-robin over the estate's
staff who make return-visit calls. The database allows one list per plan and
period and one row per unit in a list, so a job retried or run twice makes
no second list.

What the customer said is appended to their note and posted on their
timeline, and the domain event `activities.return_visit_recorded` is sent:
the hotline (work order) or complaints module opens a record from it when the
caller asked for one (see `domain_event` in core/hookspecs.py).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from tortoise.exceptions import IntegrityError

from core.api import (
    Channel, Customer, CustomerUnit, Relation, Unit, emit, gettext as _, timeline, transaction,
    users_with_permission,
)
from plugins.activities import timeutil
from plugins.activities.models import FollowUp, Visit, VisitOutcome, VisitPlan, VisitRound, VisitStatus

MAX_ATTEMPTS = 3  # unanswered calls before a household counts as not reached this round
RELATION_ORDER = {Relation.OWNER: 0, Relation.TENANT: 1, Relation.FAMILY: 2}


class VisitError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


async def callers(project_id: int) -> list:
    """Staff of the estate who make return-visit calls; head office only when the estate has none."""
    return await users_with_permission(project_id, "activities.visit", members_first=True)


async def households(plan: VisitPlan, day: date) -> list[tuple[int, int]]:
    """(unit id, customer id to call) for every unit of the plan with a current resident, by unit code.

    The plan's estate is named explicitly: jobs, the CLI and the demo loader may call this unscoped.
    """
    units = Unit.filter(project_id=plan.project_id)
    if plan.buildings:
        units = units.filter(building_id__in=[int(b) for b in plan.buildings])
    unit_ids = {u.id: u.code for u in await units.only("id", "code")}
    best: dict[int, tuple[int, int]] = {}
    links = CustomerUnit.filter(project_id=plan.project_id, unit_id__in=list(unit_ids))
    for link in await links.order_by("id"):
        if (link.start_date and link.start_date > day) or (link.end_date and link.end_date < day):
            continue
        rank = (RELATION_ORDER.get(link.relation, 9), link.id)
        if link.unit_id not in best or rank < best[link.unit_id][0]:
            best[link.unit_id] = (rank, link.customer_id)
    return [(unit_id, best[unit_id][1]) for unit_id in sorted(best, key=lambda u: unit_ids[u])]


async def generate_round(plan: VisitPlan, *, at: datetime | None = None) -> VisitRound | None:
    """Make the plan's call list for its due date and move the plan to its next date.

    Returns None (nothing made) when the list of that date already exists.
    """
    at = at or timeutil.now()
    from core.api import Project

    project = await Project.get(id=plan.project_id)
    today = timeutil.today(project.timezone, at)
    starts_on = plan.next_run_on if plan.next_run_on <= today else today
    following = timeutil.add_months(starts_on, plan.interval_months)
    while following <= today:  # after long downtime: one list now, the next one in the future
        following = timeutil.add_months(following, plan.interval_months)
    rows = await households(plan, today)
    agents = await callers(plan.project_id)
    try:
        async with transaction():
            visit_round = await VisitRound.create(
                project_id=plan.project_id, plan_id=plan.id, starts_on=starts_on,
                due_on=starts_on + timedelta(days=plan.days_to_complete), generated_at=at, total=len(rows),
            )
            await Visit.bulk_create([
                Visit(project_id=plan.project_id, round_id=visit_round.id, unit_id=unit_id, customer_id=customer_id,
                      agent_id=agents[i % len(agents)].id if agents else None)
                for i, (unit_id, customer_id) in enumerate(rows)
            ])
            await VisitPlan.filter(id=plan.id).update(next_run_on=following)
    except IntegrityError:
        await VisitPlan.filter(id=plan.id, next_run_on__lte=starts_on).update(next_run_on=following)
        return None
    plan.next_run_on = following
    return visit_round


async def record_visit(
    visit: Visit, *, outcome: str, said: str, channel: str = "", follow_up: str = "", enabled: set[str] = frozenset(),
    by=None, at: datetime | None = None,
) -> Visit:
    """Record a call: outcome and what the customer said, onto the customer's record.

    Raises VisitError (field -> message, nothing changed) for bad input or a visit already recorded.
    """
    at = at or timeutil.now()
    said = (said or "").strip()
    errors: dict[str, str] = {}
    if outcome not in VisitOutcome.CHOICES:
        errors["outcome"] = _("Choose the outcome of the call.")
    reached = outcome not in (VisitOutcome.NO_ANSWER, VisitOutcome.DECLINED)
    if reached and outcome in VisitOutcome.CHOICES and not said:
        errors["said"] = _("Write down what the customer said.")
    if len(said) > 4000:
        errors["said"] = _("At most %(max)s characters.", max=4000)
    if channel and channel not in Channel.CHOICES:
        errors["channel"] = _("Choose from the listed options.")
    if follow_up and (follow_up not in FollowUp.MODULES or FollowUp.MODULES[follow_up] not in enabled):
        errors["follow_up"] = _("Choose from the listed options.")
    if follow_up and not reached:
        errors["follow_up"] = _("A follow-up needs a call in which the customer was reached.")
    if visit.status != VisitStatus.PENDING:
        errors["outcome"] = _("This call has already been recorded.")
    if errors:
        raise VisitError(errors)
    author_id = getattr(by, "id", by)
    async with transaction():
        customer = await Customer.get(id=visit.customer_id)
        if outcome == VisitOutcome.NO_ANSWER:
            attempts = visit.attempts + 1
            status = VisitStatus.UNREACHABLE if attempts >= MAX_ATTEMPTS else VisitStatus.PENDING
        else:
            attempts, status = visit.attempts + 1, VisitStatus.DONE
        finished = status != VisitStatus.PENDING
        # Only the caller who finds it still pending with the same attempt count records it.
        changed = await Visit.filter(id=visit.id, status=VisitStatus.PENDING, attempts=visit.attempts).update(
            status=status, attempts=attempts, outcome=outcome, said=said, follow_up=follow_up,
            done_at=at if finished else None, done_by_id=author_id if finished else None,
        )
        if not changed:
            raise VisitError({"outcome": _("This call has already been recorded.")})
        label = str(VisitOutcome.CHOICES[outcome])
        body = _("Return visit: %(outcome)s.", outcome=label) + (f" {said}" if said else "")
        if outcome == VisitOutcome.NO_ANSWER:
            body = _("Return visit: no answer (attempt %(n)s of %(max)s).", n=attempts, max=MAX_ATTEMPTS)
        fields = []
        if said:
            local_day = timeutil.today(await _zone(visit.project_id), at)
            line = f"[{local_day.isoformat()} {_('Return visit')}] {said}"
            customer.note = f"{customer.note.rstrip()}\n{line}".strip()
            fields.append("note")
        if channel and channel != customer.preferred_channel:
            body += " " + _("Preferred channel: %(channel)s.", channel=str(Channel.CHOICES[channel]))
            customer.preferred_channel = channel
            fields.append("preferred_channel")
        if fields:
            await customer.save(update_fields=fields)
        await timeline.post(customer, "call", body, author=author_id,
                            data={"visit": visit.id, "outcome": outcome, "follow_up": follow_up})
        if finished:
            await emit(
                "activities.return_visit_recorded", visit.project_id, actor_id=author_id,
                visit_id=visit.id, customer_id=customer.id, unit_id=visit.unit_id, outcome=outcome, said=said,
                follow_up=follow_up, channel=customer.preferred_channel, recorded_at=at.isoformat(),
            )
    await visit.refresh_from_db()
    return visit


async def _zone(project_id: int) -> str:
    from core.api import Project

    return (await Project.get(id=project_id)).timezone


async def coverage(project_id: int, since: date) -> tuple[int, int]:
    """(households reached since `since`, households in call lists since then) in the estate."""
    rounds = await VisitRound.filter(project_id=project_id, starts_on__gte=since).values_list("id", flat=True)
    if not rounds:
        return 0, 0
    visits = Visit.filter(round_id__in=list(rounds))
    total = len(set(await visits.values_list("unit_id", flat=True)))
    reached = len(set(await visits.filter(status=VisitStatus.DONE).values_list("unit_id", flat=True)))
    return reached, total
