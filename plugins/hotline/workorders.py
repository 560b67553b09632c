"""Work-order domain logic: intake, the state machine, deadlines, callbacks (no HTTP here).

States and who moves them:

    new ──dispatch──▶ dispatched ──start──▶ in_progress ──all assignments done──▶ done
     │                    └──────────(an assignment marked done also starts)───────▲
     └──resolve on the spot (level 1)────────────────────────────────────────────┘
    done ──callback "satisfied"──▶ callback ──close──▶ closed
    done ──callback "not satisfied"──▶ dispatched / in_progress (re-opened with the reason)
    callback / closed ──re-open with a reason──▶ dispatched / in_progress

Nothing is closed before the customer was called back and was satisfied: the
only way into `callback` is a satisfied verdict. Level 1 ("answered on the
spot"): when the customer confirms on the same call that the answer settles
it, the agent records that confirmation as the callback itself (outcome
satisfied, comment "confirmed on the call") and the order closes at once;
otherwise the order waits for a callback like any other.

Every transition runs in one transaction, locks the order row and re-checks
its state there, posts a timeline entry with who and when, and refuses an
invalid move with `WorkOrderError` (messages by form field) changing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from tortoise.expressions import Q, Subquery

from core.api import (
    Customer,
    Department,
    Membership,
    Project,
    Sequence,
    Unit,
    User,
    deadline,
    emit,
    gettext as _,
    project_calendar,
    queue_email,
    timeline,
    transaction,
    unscoped,
    now,
    users_with_permission,
)
from plugins.hotline.models import (
    Assignment,
    CallbackTask,
    Category,
    ContactChannel,
    Escalation,
    Kind,
    Level,
    Material,
    Outcome,
    Status,
    TaskStatus,
    Urgency,
    WorkOrder,
)

# Hours (response, resolution) when a category does not set its own.
DEFAULT_SLA: dict[str, tuple[float, float]] = {
    Urgency.LOW: (8, 72),
    Urgency.NORMAL: (4, 24),
    Urgency.HIGH: (2, 8),
    Urgency.EMERGENCY: (0.5, 4),
}
# The customer hears back within this many hours after the work is done (反馈时限).
CALLBACK_WITHIN_HOURS = 24
# A callback that did not reach the customer is tried again this much later.
RETRY_CALLBACK_AFTER = timedelta(hours=2)
# How long before a deadline the SLA job warns (working hours).
WARN_BEFORE_HOURS = 1
# Overdue orders go to the supervisor at the breach and to the manager this many working hours later.
MANAGER_AFTER_HOURS = 4


# Core's clock, so the test kit's frozen time reaches these pages too.
clock = now


def now() -> datetime:
    return clock()


class WorkOrderError(ValueError):
    """Refused input or transition; `errors` maps form fields to messages for the user."""

    def __init__(self, errors: dict[str, str] | str):
        self.errors = errors if isinstance(errors, dict) else {"__all__": errors}
        super().__init__("; ".join(str(v) for v in self.errors.values()))


# SLA --------------------------------------------------------------------------


def sla_hours(category: Category, urgency: str) -> tuple[float, float]:
    """(response, resolution) hours of `category` for `urgency`, falling back to DEFAULT_SLA."""
    default = DEFAULT_SLA.get(urgency, DEFAULT_SLA[Urgency.NORMAL])
    own = (category.sla or {}).get(urgency) or {}
    return float(own.get("response", default[0])), float(own.get("resolution", default[1]))


async def _project(project_id: int) -> Project:
    with unscoped():
        return await Project.get(id=project_id)


def _deadline(project: Project, start: datetime, hours: float, working_hours_only: bool) -> datetime:
    return deadline(start, hours=hours, calendar=project_calendar(project), working_hours_only=working_hours_only)


# Intake -----------------------------------------------------------------------


@dataclass
class Intake:
    """What the agent recorded; validated by `create_order`."""

    customer: Customer
    category: Category
    kind: str
    urgency: str
    channel: str
    subject: str
    description: str = ""
    unit: Unit | None = None
    caller_phone: str = ""


async def next_number(project: Project, received_at: datetime) -> str:
    """GD-<local year>-<000123>, gapless per estate and year (call inside the order's transaction)."""
    year = received_at.astimezone(project_calendar(project)._zone()).year
    value = await Sequence.take(project.id, f"hotline.work_order.{year}")
    return f"GD-{year}-{value:06d}"


def check_intake(data: Intake, project_id: int) -> dict[str, str]:
    errors: dict[str, str] = {}
    if data.kind not in Kind.CHOICES:
        errors["kind"] = _("Choose what the request is about.")
    if data.urgency not in Urgency.CHOICES:
        errors["urgency"] = _("Choose an urgency from the list.")
    if data.channel not in ContactChannel.CHOICES:
        errors["channel"] = _("Choose the channel the customer used.")
    if not data.subject.strip():
        errors["subject"] = _("Write a short summary of the request.")
    elif len(data.subject) > 200:
        errors["subject"] = _("At most %(n)s characters.", n=200)
    if data.category is None or data.category.project_id != project_id or not data.category.is_active:
        errors["category"] = _("Choose a category of this estate.")
    if data.customer is None or data.customer.project_id != project_id:
        errors["customer"] = _("Find the customer or create one.")
    if data.unit is not None and data.unit.project_id != project_id:
        errors["unit"] = _("That unit is not in this estate.")
    return errors


async def create_order(project: Project, data: Intake, *, author: Any = None, at: datetime | None = None) -> WorkOrder:
    """Record a request as a numbered work order with its SLA deadlines."""
    errors = check_intake(data, project.id)
    if errors:
        raise WorkOrderError(errors)
    at = at or now()
    response_hours, resolution_hours = sla_hours(data.category, data.urgency)
    working_hours_only = data.urgency not in Urgency.AROUND_THE_CLOCK
    async with transaction():
        order = await WorkOrder.create(
            project_id=project.id,
            number=await next_number(project, at),
            channel=data.channel,
            kind=data.kind,
            category=data.category,
            urgency=data.urgency,
            customer=data.customer,
            unit=data.unit,
            caller_phone=data.caller_phone,
            subject=data.subject.strip(),
            description=data.description.strip(),
            created_by_id=_user_id(author),
            received_at=at,
            working_hours_only=working_hours_only,
            response_due=_deadline(project, at, response_hours, working_hours_only),
            resolution_due=_deadline(project, at, resolution_hours, working_hours_only),
        )
        await timeline.post(
            order, "status", _("Request received by %(channel)s.", channel=ContactChannel.CHOICES[data.channel]),
            author=author, data={"to": Status.NEW},
        )
        if data.kind == Kind.COMPLAINT:
            await emit(
                "hotline.complaint_received", project.id, actor_id=_user_id(author),
                work_order_id=order.id, number=order.number, customer_id=data.customer.id,
                unit_id=data.unit.id if data.unit else None, category=data.category.name,
                subject=order.subject, description=order.description, channel=order.channel,
                urgency=order.urgency, received_at=at.isoformat(),
            )
        await _email_customer(order, data.customer, "received")
    return order


def _user_id(author: Any) -> int | None:
    if author is None or isinstance(author, int):
        return author
    return author.id


async def _email_customer(order: WorkOrder, customer: Customer, template: str) -> None:
    """Acknowledgement and closure emails, for customers who asked to be contacted by email."""
    if customer.preferred_channel != "email" or not customer.email:
        return
    project = await _project(order.project_id)
    await queue_email(
        to=customer.email, template=f"hotline/{template}", locale=customer.locale, project_id=order.project_id,
        related=f"hotline.WorkOrder:{order.id}",
        context={"order": order, "customer": customer, "project": project, "tz": project.timezone,
                 "status": str(Status.CHOICES[order.status])},
    )


# Transitions --------------------------------------------------------------------


async def _locked(order: WorkOrder) -> WorkOrder:
    """The order's row, locked until the transaction ends (concurrent moves wait, then re-check)."""
    return await WorkOrder.filter(id=order.id).select_for_update().get()


def _refuse(order: WorkOrder, action: str) -> WorkOrderError:
    return WorkOrderError(
        _("A work order that is “%(status)s” cannot be %(action)s.", status=Status.CHOICES[order.status], action=action)
    )


@dataclass
class AssignmentPlan:
    department: Department | None
    assignee: User | None
    due_at: datetime | None
    instructions: str = ""


async def dispatch(
    order: WorkOrder,
    plans: list[AssignmentPlan],
    *,
    level: int = Level.DISPATCHED,
    supervisor: User | None = None,
    author: Any = None,
    at: datetime | None = None,
) -> WorkOrder:
    """Give a new order to a department or person (level 2) or to several under a supervisor (level 3)."""
    at = at or now()
    errors: dict[str, str] = {}
    if level not in (Level.DISPATCHED, Level.COORDINATED):
        errors["level"] = _("Dispatch at level 2 (one department) or level 3 (coordinated).")
    if not plans:
        errors["department"] = _("Choose a department or a person.")
    if level == Level.DISPATCHED and len(plans) > 1:
        errors["department"] = _("Several departments need a supervisor to coordinate them (level 3).")
    if level == Level.COORDINATED and supervisor is None:
        errors["supervisor"] = _("Choose the supervisor who coordinates the departments.")
    for plan in plans:
        if plan.department is None and plan.assignee is None:
            errors["department"] = _("Choose a department or a person.")
        if plan.due_at is not None and plan.due_at <= at:
            errors["due_at"] = _("The deadline must be in the future.")
    if errors:
        raise WorkOrderError(errors)
    async with transaction():
        order = await _locked(order)
        if order.status != Status.NEW:
            raise _refuse(order, _("dispatched"))
        order.status, order.level = Status.DISPATCHED, level
        order.supervisor_id = supervisor.id if supervisor else None
        await order.save(update_fields=["status", "level", "supervisor_id"])
        names = []
        for plan in plans:
            await Assignment.create(
                project_id=order.project_id, order=order, department=plan.department, assignee=plan.assignee,
                due_at=plan.due_at or order.resolution_due, instructions=plan.instructions.strip(),
            )
            names.append(" / ".join(str(x) for x in (plan.department, plan.assignee) if x))
        body = _("Dispatched to %(whom)s.", whom=", ".join(names))
        if supervisor:
            body += " " + _("Coordinated by %(name)s.", name=supervisor)
        await timeline.post(order, "assign", body, author=author,
                            data={"from": Status.NEW, "to": Status.DISPATCHED, "level": level})
    return order


async def start(order: WorkOrder, *, author: Any = None, at: datetime | None = None) -> WorkOrder:
    """The department has taken the order up: this is the first response."""
    at = at or now()
    async with transaction():
        order = await _locked(order)
        if order.status != Status.DISPATCHED:
            raise _refuse(order, _("started"))
        order.status = Status.IN_PROGRESS
        order.responded_at = order.responded_at or at
        await order.save(update_fields=["status", "responded_at"])
        await timeline.post(order, "status", _("Work started."), author=author,
                            data={"from": Status.DISPATCHED, "to": Status.IN_PROGRESS})
    return order


async def complete_assignment(
    assignment: Assignment, report: str, *, author: Any = None, at: datetime | None = None
) -> WorkOrder:
    """A department reports its part done; when every part is done the order is done."""
    at = at or now()
    async with transaction():
        order = await _locked(await assignment.order)
        assignment = await Assignment.get(id=assignment.id)
        # The state first: on a page left open the form is gone, and "already done" is the message to read.
        if order.status not in (Status.DISPATCHED, Status.IN_PROGRESS):
            raise _refuse(order, _("marked done"))
        if assignment.done_at is not None:
            raise WorkOrderError(_("This part of the work order is already done."))
        if not report.strip():
            raise WorkOrderError({"report": _("Write what was done.")})
        assignment.report, assignment.done_at, assignment.done_by_id = report.strip(), at, _user_id(author)
        await assignment.save(update_fields=["report", "done_at", "done_by_id"])
        await timeline.post(order, "work", report.strip(), author=author, data={"assignment": assignment.id})
        if order.responded_at is None:
            order.responded_at = at
            await order.save(update_fields=["responded_at"])
        if not await Assignment.filter(order_id=order.id, done_at__isnull=True).exists():
            await _mark_done(order, report.strip(), author, at)
    return order


async def resolve_on_spot(
    order: WorkOrder, resolution: str, *, customer_confirmed: bool, author: Any = None, at: datetime | None = None
) -> WorkOrder:
    """Level 1: the agent answered the request during the contact itself."""
    at = at or now()
    async with transaction():
        order = await _locked(order)
        if order.status != Status.NEW:  # the state first, as in complete_assignment
            raise _refuse(order, _("resolved on the spot"))
        if not resolution.strip():
            raise WorkOrderError({"resolution": _("Write the answer given to the customer.")})
        order.level = Level.ON_THE_SPOT
        order.responded_at = at
        await order.save(update_fields=["level", "responded_at"])
        task = await _mark_done(order, resolution.strip(), author, at)
        if customer_confirmed:
            order.first_contact_resolved = True
            await order.save(update_fields=["first_contact_resolved"])
            await record_callback(task, Outcome.SATISFIED, _("Confirmed by the customer on the call."),
                                  close=True, author=author, at=at)
            order = await WorkOrder.get(id=order.id)
    return order


async def _mark_done(order: WorkOrder, resolution: str, author: Any, at: datetime) -> CallbackTask:
    previous = order.status
    order.status, order.resolved_at, order.resolution = Status.DONE, at, resolution
    await order.save(update_fields=["status", "resolved_at", "resolution"])
    await timeline.post(order, "status", _("Work done: %(resolution)s", resolution=resolution), author=author,
                        data={"from": previous, "to": Status.DONE})
    return await _schedule_callback(order, at)


async def _schedule_callback(order: WorkOrder, at: datetime) -> CallbackTask:
    """The callback that closes the loop: due within CALLBACK_WITHIN_HOURS, in working time."""
    project = await _project(order.project_id)
    due = project_calendar(project).next_working_moment(at + timedelta(hours=CALLBACK_WITHIN_HOURS))
    customer = await order.customer
    phone = order.caller_phone or await _first_phone(customer.id)
    return await CallbackTask.create(
        project_id=order.project_id, order=order, customer=customer, unit_id=order.unit_id, phone=phone,
        reason=_("Callback on work order %(number)s: %(subject)s", number=order.number, subject=order.subject),
        source=f"hotline.WorkOrder:{order.id}", due_at=due, assignee_id=order.created_by_id,
    )


async def _first_phone(customer_id: int | None) -> str:
    from core.api import CustomerPhone

    if customer_id is None:
        return ""
    phone = await CustomerPhone.filter(customer_id=customer_id).order_by("id").first()
    return phone.number if phone else ""


async def record_callback(
    task: CallbackTask,
    outcome: str,
    comment: str = "",
    *,
    close: bool = True,
    reopen_to: str = Status.DISPATCHED,
    author: Any = None,
    at: datetime | None = None,
) -> CallbackTask:
    """Record a call of the queue.

    Work-order callbacks take the customer's verdict: satisfied moves the order to
    `callback` (and closes it when `close`), not satisfied re-opens it with the
    comment as the reason. "Not reached" keeps the task open and retries later.
    """
    at = at or now()
    comment = comment.strip()
    allowed = (*Outcome.VERDICTS, Outcome.NOT_REACHED) if task.order_id else (Outcome.REACHED, Outcome.NOT_REACHED)
    async with transaction():
        task = await CallbackTask.filter(id=task.id).select_for_update().get()
        if task.status != TaskStatus.OPEN:  # the state first, as in complete_assignment
            raise WorkOrderError(_("This callback has already been recorded."))
        if outcome not in allowed:
            raise WorkOrderError({"outcome": _("Choose the outcome of the call.")})
        if outcome == Outcome.UNSATISFIED and not comment:
            raise WorkOrderError({"comment": _("Write why the customer is not satisfied.")})
        task.attempts += 1
        if outcome == Outcome.NOT_REACHED:
            task.due_at = max(task.due_at, at) + RETRY_CALLBACK_AFTER
            task.comment = comment
            await task.save(update_fields=["attempts", "due_at", "comment"])
            if task.order_id:
                order = await WorkOrder.get(id=task.order_id)
                await timeline.post(order, "call", _("Callback: customer not reached.") + (f" {comment}" if comment else ""),
                                    author=author, data={"outcome": outcome})
            return task
        task.status, task.outcome, task.comment = TaskStatus.DONE, outcome, comment
        task.done_at, task.done_by_id = at, _user_id(author)
        await task.save(update_fields=["status", "outcome", "comment", "attempts", "done_at", "done_by_id"])
        if task.order_id:
            order = await _locked(await task.order)
            if order.status != Status.DONE:
                raise _refuse(order, _("called back"))
            await timeline.post(
                order, "call", _("Callback: %(verdict)s.", verdict=Outcome.CHOICES[outcome]) + (f" {comment}" if comment else ""),
                author=author, data={"outcome": outcome},
            )
            if outcome == Outcome.SATISFIED:
                order.status = Status.CALLBACK
                await order.save(update_fields=["status"])
                await timeline.post(order, "status", _("Customer satisfied."), author=author,
                                    data={"from": Status.DONE, "to": Status.CALLBACK})
                if close:
                    await _close(order, author, at)
            else:
                await _reopen(order, comment, reopen_to, author, at)
    return task


async def close(order: WorkOrder, *, author: Any = None, at: datetime | None = None) -> WorkOrder:
    """Close an order whose callback found the customer satisfied."""
    at = at or now()
    async with transaction():
        order = await _locked(order)
        if order.status != Status.CALLBACK:
            raise WorkOrderError(
                _("A work order is closed only after a callback found the customer satisfied.")
            )
        await _close(order, author, at)
    return order


async def _close(order: WorkOrder, author: Any, at: datetime) -> None:
    order.status, order.closed_at = Status.CLOSED, at
    await order.save(update_fields=["status", "closed_at"])
    await timeline.post(order, "status", _("Closed."), author=author, data={"from": Status.CALLBACK, "to": Status.CLOSED})
    await emit("hotline.work_order_closed", order.project_id, actor_id=_user_id(author), work_order_id=order.id,
               number=order.number, customer_id=order.customer_id, unit_id=order.unit_id, kind=order.kind)
    await _email_customer(order, await order.customer, "closed")


async def reopen(order: WorkOrder, reason: str, to: str = Status.DISPATCHED, *, author: Any = None,
                 at: datetime | None = None) -> WorkOrder:
    """Take a called-back or closed order up again (the customer calls: it is not fixed)."""
    at = at or now()
    if not reason.strip():
        raise WorkOrderError({"reason": _("Write why the work order is re-opened.")})
    if to not in (Status.DISPATCHED, Status.IN_PROGRESS):
        raise WorkOrderError({"to": _("Re-open to “dispatched” or “in progress”.")})
    async with transaction():
        order = await _locked(order)
        if order.status not in (Status.CALLBACK, Status.CLOSED):
            raise _refuse(order, _("re-opened"))
        await _reopen(order, reason.strip(), to, author, at)
    return order


async def _reopen(order: WorkOrder, reason: str, to: str, author: Any, at: datetime) -> None:
    """Back to work with a fresh resolution deadline; the parts of the work are open again."""
    previous = order.status
    project = await _project(order.project_id)
    _response, resolution_hours = sla_hours(await order.category, order.urgency)
    assignments = await Assignment.filter(order_id=order.id)
    if not assignments:  # answered on the spot before: now it needs a department, so it waits for dispatch
        to = Status.NEW
    order.status = to
    order.resolved_at = order.closed_at = None
    order.resolution_due = _deadline(project, at, resolution_hours, order.working_hours_only)
    order.resolution_warned_at = None
    order.escalation_level, order.escalated_at = Escalation.NONE, None
    order.reopen_count += 1
    order.first_contact_resolved = False
    await order.save(update_fields=[
        "status", "resolved_at", "closed_at", "resolution_due", "resolution_warned_at", "escalation_level",
        "escalated_at", "reopen_count", "first_contact_resolved",
    ])
    if assignments:
        await Assignment.filter(order_id=order.id).update(done_at=None, due_at=order.resolution_due)
    await CallbackTask.filter(order_id=order.id, status=TaskStatus.OPEN).update(status=TaskStatus.CANCELLED)
    await timeline.post(order, "status", _("Re-opened: %(reason)s", reason=reason), author=author,
                        data={"from": previous, "to": to, "reason": reason})
    await emit("hotline.work_order_reopened", order.project_id, actor_id=_user_id(author), work_order_id=order.id,
               number=order.number, reason=reason)


# Work records -------------------------------------------------------------------


async def add_material(order: WorkOrder, name: str, quantity: str, unit_of_measure: str = "", *,
                       author: Any = None) -> Material:
    errors: dict[str, str] = {}
    if not name.strip():
        errors["material"] = _("Name the material.")
    try:
        amount = Decimal(str(quantity).strip().replace(",", "."))
        if not amount.is_finite() or amount <= 0 or amount >= Decimal("100000000"):
            raise InvalidOperation
    except InvalidOperation:
        errors["quantity"] = _("Enter a positive quantity, e.g. 2 or 1.5.")
    if order.status not in Status.OPEN:
        errors["__all__"] = _("Material is recorded while the work is open.")
    if errors:
        raise WorkOrderError(errors)
    async with transaction():
        material = await Material.create(
            project_id=order.project_id, order=order, name=name.strip()[:100], quantity=amount.quantize(Decimal("0.01")),
            unit_of_measure=unit_of_measure.strip()[:16], recorded_by_id=_user_id(author),
        )
        await timeline.post(order, "material", f"{material.name} × {material.quantity} {material.unit_of_measure}".strip(),
                            author=author, data={"material": material.id})
    return material


# Callback tasks asked for by others ----------------------------------------------------


async def request_callback(project_id: int, *, customer_id: int | None, unit_id: int | None, reason: str,
                           due_at: datetime, source: str, phone: str = "") -> CallbackTask:
    """A call task for the queue (missed calls, dunning calls): no work order behind it."""
    if due_at.tzinfo is None:
        raise ValueError("due_at must be an aware datetime")
    if customer_id is not None and not await Customer.filter(id=customer_id, project_id=project_id).exists():
        raise ValueError(f"customer {customer_id} is not in project {project_id}")
    return await CallbackTask.create(
        project_id=project_id, customer_id=customer_id, unit_id=unit_id, reason=reason, source=source[:64],
        due_at=due_at, phone=phone or await _first_phone(customer_id),
    )


# Work orders asked for by others -------------------------------------------------------


async def open_from_return_visit(event) -> WorkOrder | None:
    """A return visit (activities) whose customer asked for a work order opens one, once per visit.

    Runs in the transaction that recorded the visit. Without an active request category
    the customer's timeline says so instead: failing would lose the recorded call.
    """
    data = event.data
    visit_id = data["visit_id"]
    customer = await Customer.get_or_none(id=data["customer_id"], project_id=event.project_id)
    if customer is None:
        return None
    for order in await WorkOrder.filter(project_id=event.project_id, customer_id=customer.id):
        if any(e.kind == "return_visit" and e.data.get("visit_id") == visit_id for e in await timeline.history(order)):
            return None
    kind = Kind.SUGGESTION if data.get("outcome") == "suggestion" else Kind.REPAIR
    categories = Category.filter(project_id=event.project_id, is_active=True).order_by("id")
    category = await categories.filter(kind=kind).first() or await categories.first()
    if category is None:
        await timeline.post(customer, "note", _(
            "No work order was opened for return visit #%(id)s: the estate has no active request category.",
            id=visit_id), author=event.actor_id, data={"visit_id": visit_id})
        return None
    unit = await Unit.get_or_none(id=data["unit_id"], project_id=event.project_id) if data.get("unit_id") else None
    said = (data.get("said") or "").strip()
    recorded = data.get("recorded_at")
    intake = Intake(
        customer=customer, category=category, kind=kind, urgency=Urgency.NORMAL, channel=ContactChannel.PHONE,
        subject=(_("Return visit #%(id)s", id=visit_id) + (f": {said}" if said else ""))[:200],
        description=_("Asked for during return visit #%(id)s. The customer said: “%(said)s”", id=visit_id, said=said),
        unit=unit,
    )
    order = await create_order(await _project(event.project_id), intake, author=event.actor_id,
                               at=datetime.fromisoformat(recorded) if recorded else None)
    await timeline.post(order, "return_visit", _("Opened from return visit #%(id)s.", id=visit_id),
                        author=event.actor_id, data={"visit_id": visit_id})
    return order


# Who sees what -------------------------------------------------------------------


async def department_ids_of(user_id: int) -> list[int]:
    """Departments the user works in (their memberships' departments)."""
    return [d for d in await Membership.filter(user_id=user_id, department_id__not_isnull=True)
            .values_list("department_id", flat=True)]


async def mine_q(user_id: int) -> Q:
    """Work orders with an open part assigned to the user or to one of their departments."""
    departments = await department_ids_of(user_id)
    condition = Q(assignee_id=user_id)
    if departments:
        condition |= Q(department_id__in=departments)
    # A subquery rather than the ids read first: one statement fewer for the list that filters with it.
    ids = Subquery(Assignment.filter(condition, done_at__isnull=True).values("order_id"))
    return Q(id__in=ids, status__in=(Status.DISPATCHED, Status.IN_PROGRESS))


async def open_assignments_for(order: WorkOrder, user_id: int) -> list[Assignment]:
    departments = await department_ids_of(user_id)
    condition = Q(assignee_id=user_id)
    if departments:
        condition |= Q(department_id__in=departments)
    return await Assignment.filter(condition, order_id=order.id, done_at__isnull=True)


def overdue(order: WorkOrder, at: datetime) -> bool:
    if order.status not in Status.OPEN:
        return False
    return (order.responded_at is None and at > order.response_due) or at > order.resolution_due
