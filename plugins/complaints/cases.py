"""The complaint procedure: opening a case, its eleven steps, assignment, deadlines, repeats, surveys.

Pure domain functions (no HTTP): views and jobs call them, tests call them
directly. A step is completed with `complete_step(case, step, form, ...)`,
which refuses any step but the next one, validates the form values (strings,
as a browser posts them) and writes the step's facts, a timeline entry and the
next step's deadline in one transaction. Invalid input raises `CaseError`
with a message per field and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable
from zoneinfo import ZoneInfo

from tortoise.expressions import Q

from core.api import (
    Customer, Department, Membership, Project, Sequence, Unit, User, gettext as _, links, project_calendar,
    queue_email, timeline, transaction, unscoped,
)
from core.api import deadline as sla_deadline
from core.api import now as core_now
from plugins.complaints.models import (
    Case, CaseLink, Category, Channel, Escalation, Party, RootCause, Severity, Step, Survey,
)


def utcnow() -> datetime:
    return core_now()


# Tests replace this with a frozen clock; jobs pass their own `ctx.now()`.
clock: Callable[[], datetime] = utcnow


def now() -> datetime:
    return clock()


DEFAULTS = {
    # Days after closing before the satisfaction survey is emailed.
    "survey_delay_days": 3,
    # Days a survey link stays valid.
    "survey_valid_days": 30,
    # A score at or below this re-opens the case for a manager's review.
    "low_score": 2,
    # A complaint from the same unit or in the same defect category within this many days is a repeat.
    "repeat_window_days": 90,
    # Working hours before a step's deadline when the handler is warned.
    "warn_before_hours": 2,
    # Working hours overdue before the next escalation level is told.
    "escalate_every_hours": 8,
}


def conf() -> dict[str, Any]:
    """The `[complaints]` settings over their defaults."""
    from core.settings import current

    return {**DEFAULTS, **(current().get("complaints") or {})}


# Working hours a case may take to be settled, by severity: the case's overall deadline.
SEVERITY_HOURS = {Severity.CRITICAL: 16, Severity.SERIOUS: 40, Severity.NORMAL: 72, Severity.MINOR: 120}
# Working hours allowed for each step once the previous one is done. Recording and telling the
# customer when to expect a reply are quick by design (敏捷响应); investigation and repairs take longer.
STEP_HOURS = {
    Step.RECORDED: 1,
    Step.ASSESSED: 2,
    Step.INFORMED: 2,
    Step.INVESTIGATED: 16,
    Step.ANALYSED: 8,
    Step.PROPOSED: 8,
    Step.AGREED: 16,
    Step.IMPLEMENTED: 40,
    Step.FOLLOWED_UP: 16,
    Step.CLOSED: 8,
}
# Who may complete a step (complaints.handle for the others).
STEP_PERMISSIONS = {Step.ASSESSED: "complaints.assign", Step.CLOSED: "complaints.close"}
SURVEY_LINK = "complaints.survey"
TEXT_MAX = 4000


class CaseError(ValueError):
    """Bad input or a refused transition: `errors` maps form fields ("__all__" for the case) to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def next_step(case: Case) -> str | None:
    if case.step == Step.CLOSED:
        return None
    return Step.ORDER[Step.ORDER.index(case.step) + 1]


def step_permission(step: str) -> str:
    return STEP_PERMISSIONS.get(step, "complaints.handle")


def user_id(author: Any) -> int | None:
    if author is None or isinstance(author, int):
        return author
    return author.id


async def project_of(project_id: int) -> Project:
    with unscoped():
        return await Project.get(id=project_id)


def _step_deadline(project: Project, start: datetime, step: str, case_due: datetime | None) -> datetime:
    due = sla_deadline(start, hours=STEP_HOURS[step], calendar=project_calendar(project))
    # Until the solution is agreed, no step may run past the case's own deadline.
    if case_due is not None and Step.ORDER.index(step) <= Step.ORDER.index(Step.AGREED):
        return min(due, case_due)
    return due


def parse_local(value: str, tz: str) -> datetime:
    """A `datetime-local` input ("2026-03-02T15:00") in the project's zone, as aware UTC."""
    local = datetime.fromisoformat(value.strip())
    if local.tzinfo is None:
        local = local.replace(tzinfo=ZoneInfo(tz))
    return local.astimezone(timezone.utc)


def _text(form: dict, name: str, errors: dict, *, required: bool = True, message: str | None = None,
          limit: int = TEXT_MAX) -> str:
    value = (form.get(name) or "").strip()
    if required and not value:
        errors[name] = message or _("Fill this in.")
    elif len(value) > limit:
        errors[name] = _("At most %(n)s characters.", n=limit)
    return value


def _choice(form: dict, name: str, choices: dict, errors: dict, message: str) -> str:
    value = (form.get(name) or "").strip()
    if value not in choices:
        errors[name] = message
    return value


# Opening a case ---------------------------------------------------------------------------


@dataclass
class Intake:
    """What the customer told us when the complaint was received."""

    customer: Customer | None
    unit: Unit | None
    channel: str
    subject: str
    description: str = ""
    category: Category | None = None
    severity: str = Severity.NORMAL


def check_intake(data: Intake, project_id: int) -> dict[str, str]:
    errors: dict[str, str] = {}
    if data.customer is None or data.customer.project_id != project_id:
        errors["customer"] = _("Find the customer who complains.")
    if data.unit is not None and data.unit.project_id != project_id:
        errors["unit"] = _("That unit is not in this estate.")
    if data.channel not in Channel.CHOICES:
        errors["channel"] = _("Choose how the complaint came in.")
    if data.severity not in Severity.CHOICES:
        errors["severity"] = _("Choose a severity.")
    if not data.subject.strip():
        errors["subject"] = _("Write a short summary of the complaint.")
    elif len(data.subject.strip()) > 200:
        errors["subject"] = _("At most %(n)s characters.", n=200)
    if len(data.description) > TEXT_MAX:
        errors["description"] = _("At most %(n)s characters.", n=TEXT_MAX)
    if data.category is not None and (data.category.project_id != project_id or not data.category.is_active):
        errors["category"] = _("Choose a category of this estate.")
    return errors


async def next_number(project_id: int, at: datetime) -> str:
    year = at.astimezone(ZoneInfo((await project_of(project_id)).timezone)).year
    value = await Sequence.take(project_id, f"complaints.case.{year}")
    return f"TS-{year}-{value:06d}"


async def open_case(
    project: Project, data: Intake, *, author: Any = None, at: datetime | None = None,
    work_order: tuple[int, str] | None = None,
) -> Case:
    """Receive a complaint (step 1): a numbered case with the deadline to record it, flagged when it repeats."""
    errors = check_intake(data, project.id)
    if errors:
        raise CaseError(errors)
    at = at or now()
    async with transaction():
        case = await Case.create(
            project_id=project.id,
            number=await next_number(project.id, at),
            customer=data.customer,
            unit=data.unit,
            channel=data.channel,
            category=data.category,
            severity=data.severity,
            subject=data.subject.strip(),
            description=data.description.strip(),
            received_at=at,
            received_by_id=user_id(author),
            step=Step.RECEIVED,
            step_at=at,
            step_due_at=_step_deadline(project, at, Step.RECORDED, None),
            work_order_id=work_order[0] if work_order else None,
            work_order_number=work_order[1] if work_order else "",
        )
        source = _("from work order %(number)s", number=work_order[1]) if work_order else str(Channel.CHOICES[data.channel])
        await timeline.post(case, "status", _("Complaint received (%(source)s).", source=source), author=author,
                            data={"to": Step.RECEIVED})
        await flag_repeats(case, at)
    return case


async def open_from_hotline(event) -> Case | None:
    """A hotline contact classified as a complaint becomes a case (once per work order)."""
    data = event.data
    if await Case.filter(project_id=event.project_id, work_order_id=data["work_order_id"]).exists():
        return None
    project = await project_of(event.project_id)
    customer = await Customer.get_or_none(id=data["customer_id"], project_id=project.id)
    unit = await Unit.get_or_none(id=data["unit_id"], project_id=project.id) if data.get("unit_id") else None
    # The hotline's category names often match ours ("物业服务"); otherwise the case is classified when recorded.
    category = await Category.get_or_none(project_id=project.id, name=data.get("category") or "", is_active=True)
    channel = data.get("channel") if data.get("channel") in Channel.CHOICES else Channel.PHONE
    severity = {"high": Severity.SERIOUS, "emergency": Severity.CRITICAL, "low": Severity.MINOR}.get(
        data.get("urgency"), Severity.NORMAL
    )
    received = data.get("received_at")
    at = datetime.fromisoformat(received) if received else now()
    intake = Intake(customer=customer, unit=unit, channel=channel, subject=(data.get("subject") or "")[:200],
                    description=data.get("description") or "", category=category, severity=severity)
    return await open_case(project, intake, author=event.actor_id, at=at,
                           work_order=(data["work_order_id"], data.get("number") or ""))


async def open_from_return_visit(event) -> Case | None:
    """A return visit (activities) in which the customer complained opens a case, once per visit."""
    data = event.data
    visit_id = data["visit_id"]
    customer = await Customer.get_or_none(id=data["customer_id"], project_id=event.project_id)
    if customer is None:
        return None
    # No column names the visit: the case's own timeline entry does.
    for case in await Case.filter(project_id=event.project_id, customer_id=customer.id):
        if any(e.kind == "return_visit" and e.data.get("visit_id") == visit_id for e in await timeline.history(case)):
            return None
    project = await project_of(event.project_id)
    unit = await Unit.get_or_none(id=data["unit_id"], project_id=project.id) if data.get("unit_id") else None
    said = (data.get("said") or "").strip()
    received = data.get("recorded_at")
    intake = Intake(
        customer=customer, unit=unit, channel=Channel.PHONE,
        subject=(_("Return visit #%(id)s", id=visit_id) + (f": {said}" if said else ""))[:200],
        description=_("Raised during return visit #%(id)s. The customer said: “%(said)s”", id=visit_id, said=said),
    )
    case = await open_case(project, intake, author=event.actor_id,
                           at=datetime.fromisoformat(received) if received else now())
    await timeline.post(case, "return_visit", _("Opened from return visit #%(id)s.", id=visit_id),
                        author=event.actor_id, data={"visit_id": visit_id})
    return case


# Repeats ----------------------------------------------------------------------------------


async def flag_repeats(case: Case, at: datetime) -> list[Case]:
    """Link `case` to earlier cases of the same unit or defect category within the window; flag it a repeat."""
    since = at - timedelta(days=int(conf()["repeat_window_days"]))
    conditions = []
    if case.unit_id:
        conditions.append(Q(unit_id=case.unit_id))
    defect_category = None
    if case.category_id:
        category = await Category.get(id=case.category_id)
        if category.defect:
            defect_category = category
            conditions.append(Q(category_id=category.id))
    if not conditions:
        return []
    query = Q(*conditions, join_type="OR")
    earlier = await Case.filter(query, project_id=case.project_id, received_at__gte=since).exclude(id=case.id).order_by("received_at")
    known = set(await CaseLink.filter(case_id=case.id).values_list("earlier_id", flat=True))
    added = []
    for other in earlier:
        if other.id in known:
            continue
        await CaseLink.create(
            project_id=case.project_id, case=case, earlier=other,
            same_unit=bool(case.unit_id and other.unit_id == case.unit_id),
            same_defect=bool(defect_category and other.category_id == defect_category.id),
        )
        added.append(other)
    if added:
        if not case.is_repeat:
            case.is_repeat = True
            await case.save(update_fields=["is_repeat"])
        await timeline.post(case, "repeat", _("Repeat complaint: earlier %(numbers)s.",
                                                numbers=", ".join(o.number for o in added)),
                            data={"earlier": [o.id for o in added]})
    return added


async def related_cases(case: Case) -> list[tuple[Case, CaseLink]]:
    """Earlier and later cases linked to this one, oldest first, with why they are linked."""
    links_ = await CaseLink.filter(Q(case_id=case.id) | Q(earlier_id=case.id)).prefetch_related("case", "earlier")
    pairs = [((l.earlier if l.case_id == case.id else l.case), l) for l in links_]
    return sorted(pairs, key=lambda p: p[0].received_at)


# Steps ------------------------------------------------------------------------------------


async def _locked(case: Case) -> Case:
    """The case row, locked until the transaction ends (a concurrent step waits, then re-checks)."""
    return await Case.filter(id=case.id).select_for_update().get()


async def _department(form: dict, project_id: int, errors: dict, *, required: bool) -> Department | None:
    raw = (form.get("department") or "").strip()
    if not raw:
        if required:
            errors["department"] = _("Choose the responsible department.")
        return None
    department = await Department.get_or_none(id=int(raw), project_id=project_id) if raw.isdigit() else None
    if department is None:
        errors["department"] = _("Choose a department of this estate.")
    return department


async def _assignee(form: dict, project_id: int, errors: dict) -> User | None:
    raw = (form.get("assignee") or "").strip()
    if not raw:
        return None
    ids = await staff_ids(project_id)
    if not raw.isdigit() or int(raw) not in ids:
        errors["assignee"] = _("Choose a member of this estate's staff.")
        return None
    return await User.get(id=int(raw))


async def staff_ids(project_id: int) -> set[int]:
    with unscoped():
        return set(await Membership.filter(Q(project_id=project_id) | Q(project_id__isnull=True))
                   .values_list("user_id", flat=True))


async def _apply(case: Case, step: str, form: dict, project: Project, at: datetime) -> tuple[list[str], str, str]:
    """Validate and set the step's facts on `case`: (changed fields, timeline body, resulting step)."""
    errors: dict[str, str] = {}
    fields: list[str] = []
    result = step
    body = str(Step.CHOICES[step])

    if step == Step.RECORDED:
        category = None
        raw = (form.get("category") or "").strip()
        if raw.isdigit():
            category = await Category.get_or_none(id=int(raw), project_id=case.project_id, is_active=True)
        if category is None:
            errors["category"] = _("Choose the category of the complaint.")
        description = _text(form, "description", errors, message=_("Describe what the customer complains about."))
        contact = _text(form, "contact", errors, required=False, limit=120)
        occurred = (form.get("occurred_at") or "").strip()
        occurred_at = None
        if occurred:
            try:
                occurred_at = parse_local(occurred, project.timezone)
            except ValueError:
                errors["occurred_at"] = _("Enter a date and time.")
            else:
                if occurred_at > at:
                    errors["occurred_at"] = _("This lies in the future.")
        if not errors:
            recategorised = category.id != case.category_id
            case.category, case.description, case.contact, case.occurred_at = category, description, contact, occurred_at
            fields += ["category_id", "description", "contact", "occurred_at"]
            body = _("Details recorded; category: %(category)s.", category=category.name)
            if recategorised:
                await flag_repeats(case, case.received_at)
    elif step == Step.ASSESSED:
        severity = _choice(form, "severity", Severity.CHOICES, errors, _("Choose a severity."))
        department = await _department(form, case.project_id, errors, required=True)
        assignee = await _assignee(form, case.project_id, errors)
        if not errors:
            case.severity, case.department, case.assignee = severity, department, assignee
            case.due_at = sla_deadline(case.received_at, hours=SEVERITY_HOURS[severity], calendar=project_calendar(project))
            fields += ["severity", "department_id", "assignee_id", "due_at"]
            body = _("Assessed as %(severity)s; assigned to %(who)s; to be settled by %(due)s.",
                     severity=Severity.CHOICES[severity], who=_assigned_to(department, assignee),
                     due=_local(case.due_at, project))
    elif step == Step.INFORMED:
        raw = (form.get("promised_reply_at") or "").strip()
        promised = None
        if not raw:
            errors["promised_reply_at"] = _("Enter the reply time promised to the customer.")
        else:
            try:
                promised = parse_local(raw, project.timezone)
            except ValueError:
                errors["promised_reply_at"] = _("Enter a date and time.")
            else:
                if promised <= at:
                    errors["promised_reply_at"] = _("The promised time must lie in the future.")
        note = _text(form, "note", errors, required=False)
        if not errors:
            case.promised_reply_at = promised
            fields.append("promised_reply_at")
            body = _("Customer told to expect a reply by %(when)s.", when=_local(promised, project))
            if note:
                body += " " + note
    elif step == Step.INVESTIGATED:
        facts = _text(form, "facts", errors, message=_("Write down the facts found."))
        interviews = _text(form, "interviews", errors, required=False)
        if not errors:
            case.facts, case.interviews = facts, interviews
            fields += ["facts", "interviews"]
            body = _("Investigation: %(facts)s", facts=facts)
    elif step == Step.ANALYSED:
        cause = _choice(form, "root_cause", RootCause.CHOICES, errors, _("Choose the root cause."))
        party = _choice(form, "responsible_party", Party.CHOICES, errors, _("Choose the responsible party."))
        name = _text(form, "responsible_name", errors, required=False, limit=120)
        detail = _text(form, "cause_detail", errors, message=_("Explain the cause."))
        if not errors:
            case.root_cause, case.responsible_party, case.responsible_name, case.cause_detail = cause, party, name, detail
            fields += ["root_cause", "responsible_party", "responsible_name", "cause_detail"]
            body = _("Root cause: %(cause)s; responsible: %(party)s. %(detail)s", cause=RootCause.CHOICES[cause],
                     party=f"{Party.CHOICES[party]} {name}".strip(), detail=detail)
    elif step == Step.PROPOSED:
        solution = _text(form, "solution", errors, message=_("Describe the proposed solution."))
        raw = (form.get("compensation") or "").strip()
        compensation = None
        if raw:
            try:
                compensation = Decimal(raw).quantize(Decimal("0.01"))
            except InvalidOperation:
                errors["compensation"] = _("Enter an amount in yuan, e.g. 500.00.")
            else:
                if compensation < 0 or compensation >= Decimal("1e12"):
                    errors["compensation"] = _("Enter an amount in yuan, e.g. 500.00.")
        if not errors:
            case.solution, case.compensation = solution, compensation
            case.solution_rounds += 1
            fields += ["solution", "compensation", "solution_rounds"]
            body = _("Solution proposed: %(solution)s", solution=solution)
    elif step == Step.AGREED:
        verdict = (form.get("opinion") or "").strip()
        note = _text(form, "customer_opinion", errors, required=verdict == "changes",
                     message=_("Write down what the customer wants changed."))
        if verdict not in ("accepts", "changes"):
            errors["opinion"] = _("Choose what the customer said.")
        if not errors:
            case.customer_opinion = note
            fields.append("customer_opinion")
            if verdict == "accepts":
                body = _("The customer accepts the solution.") + (f" {note}" if note else "")
            else:
                # Asking for changes sends the case back to proposing a solution.
                result = Step.ANALYSED
                body = _("The customer asks for changes: %(note)s", note=note)
    elif step == Step.IMPLEMENTED:
        done = _text(form, "implementation", errors, message=_("Describe what was done."))
        if not errors:
            case.implementation = done
            fields.append("implementation")
            body = _("Solution implemented: %(done)s", done=done)
    elif step == Step.FOLLOWED_UP:
        note = _text(form, "follow_up", errors, message=_("Write down what the customer said."))
        if not errors:
            case.follow_up = note
            fields.append("follow_up")
            body = _("Followed up: %(note)s", note=note)
    elif step == Step.CLOSED:
        summary = _text(form, "summary", errors, message=_("Summarise the case and the lessons learned."))
        if not errors:
            case.summary, case.closed_at = summary, at
            fields += ["summary", "closed_at", "needs_review"]
            case.needs_review = False
            body = _("Closed: %(summary)s", summary=summary)
    if errors:
        raise CaseError(errors)
    return fields, body, result


def _assigned_to(department: Department | None, assignee: User | None) -> str:
    names = [str(x) for x in (department, assignee) if x is not None]
    return " / ".join(names) or _("nobody")


def _local(value: datetime | None, project: Project) -> str:
    from core.i18n import format_datetime

    return format_datetime(value, project.timezone)


async def complete_step(case: Case, step: str, form: dict, *, author: Any = None, at: datetime | None = None) -> Case:
    """Complete `step` of the case with the posted `form`; refuses any step but the next one."""
    if step not in Step.ORDER or step == Step.RECEIVED:
        raise CaseError({"__all__": _("Unknown step.")})
    at = at or now()
    project = await project_of(case.project_id)
    async with transaction():
        case = await _locked(case)
        expected = next_step(case)
        if expected is None:
            raise CaseError({"__all__": _("The case is closed.")})
        if step != expected:
            raise CaseError({"__all__": _("This case cannot skip a step: next is “%(step)s”.",
                                          step=Step.ACTIONS[expected])})
        if case.needs_review and step == Step.CLOSED:
            raise CaseError({"__all__": _("The case waits for a manager's review.")})
        fields, body, result = await _apply(case, step, form, project, at)
        previous = case.step
        case.step, case.step_at = result, at
        if step == Step.CLOSED:
            case.closed_by_id = user_id(author)
            case.step_due_at = None
        else:
            case.step_due_at = _step_deadline(project, at, next_step(case), case.due_at)
        # A new step starts a fresh clock: warnings and escalations count from its deadline.
        case.warned_at, case.escalation_level, case.escalated_at = None, Escalation.HANDLER, None
        await case.save(update_fields=[*fields, "step", "step_at", "step_due_at", "warned_at", "escalation_level",
                                       "escalated_at", "closed_by_id"])
        await timeline.post(case, "step", body, author=author, data={"step": step, "from": previous, "to": result})
    return case


async def assign(case: Case, form: dict, *, author: Any = None, at: datetime | None = None) -> Case:
    """Hand an open case to another department or person (the deadlines stay)."""
    errors: dict[str, str] = {}
    if not case.is_open:
        raise CaseError({"__all__": _("The case is closed.")})
    department = await _department(form, case.project_id, errors, required=True)
    assignee = await _assignee(form, case.project_id, errors)
    if errors:
        raise CaseError(errors)
    async with transaction():
        case = await _locked(case)
        case.department, case.assignee = department, assignee
        await case.save(update_fields=["department_id", "assignee_id"])
        await timeline.post(case, "assign", _("Assigned to %(who)s.", who=_assigned_to(department, assignee)),
                            author=author, data={"department": department.id, "assignee": user_id(assignee)})
    return case


async def review(case: Case, form: dict, *, author: Any = None, at: datetime | None = None) -> Case:
    """A manager's review of a case re-opened by a low survey score: close it again or investigate anew."""
    at = at or now()
    if not case.needs_review:
        raise CaseError({"__all__": _("The case does not wait for a review.")})
    errors: dict[str, str] = {}
    decision = (form.get("decision") or "").strip()
    note = _text(form, "review", errors, message=_("Write down the outcome of the review."))
    if decision not in ("close", "reinvestigate"):
        errors["decision"] = _("Choose how the case goes on.")
    if errors:
        raise CaseError(errors)
    project = await project_of(case.project_id)
    async with transaction():
        case = await _locked(case)
        case.needs_review = False
        if decision == "close":
            case.step, case.summary, case.closed_at, case.closed_by_id = Step.CLOSED, note, at, user_id(author)
            case.step_due_at = None
            body = _("Reviewed and closed again: %(note)s", note=note)
        else:
            # Back to the investigation: every later step is done again.
            case.step = Step.INFORMED
            case.step_due_at = _step_deadline(project, at, Step.INVESTIGATED, None)
            body = _("Reviewed; the case is investigated again: %(note)s", note=note)
        case.step_at, case.warned_at, case.escalation_level, case.escalated_at = at, None, Escalation.HANDLER, None
        await case.save()
        await timeline.post(case, "review", body, author=author, data={"decision": decision})
    return case


# Open cases for other plugins -------------------------------------------------------------


async def units_with_open_cases(project_id: int, unit_ids: list[int]) -> set[int]:
    """Units among `unit_ids` with an open complaint (the fees plugin pauses their dunning)."""
    if not unit_ids:
        return set()
    return set(await Case.filter(project_id=project_id, unit_id__in=list(unit_ids), step__in=list(Step.OPEN))
               .values_list("unit_id", flat=True))


# Surveys ----------------------------------------------------------------------------------


async def send_survey(case: Case, at: datetime) -> Survey:
    """Email the customer a signed single-use link to rate the handling of the case."""
    customer = await Customer.get(id=case.customer_id)
    settings = conf()
    survey = await Survey.create(project_id=case.project_id, case=case, email=customer.email, sent_at=at,
                                 expires_at=at + timedelta(days=int(settings["survey_valid_days"])))
    if not customer.email:
        await timeline.post(case, "survey", _("No email address on file: no survey sent; call the customer instead."))
        return survey
    project = await project_of(case.project_id)
    token = links.make(SURVEY_LINK, {"survey": survey.id}, expires_in=survey.expires_at - at, now=at)
    await queue_email(
        to=customer.email, template="complaints/survey", locale=customer.locale, project_id=case.project_id,
        related=f"complaints.Case:{case.id}",
        context={"case": case, "customer": customer, "project": project, "tz": project.timezone,
                 "path": f"/complaints/survey/{token}", "expires_at": survey.expires_at},
    )
    await timeline.post(case, "survey", _("Satisfaction survey emailed to %(email)s.", email=customer.email),
                        data={"survey": survey.id})
    return survey


@dataclass
class SurveyPage:
    """A survey as its public page shows it."""

    survey: Survey
    case: Case
    customer: Customer
    project: Project


async def survey_for(token: str, at: datetime | None = None) -> SurveyPage:
    """The survey a link is for, if the link is genuine, unexpired and unused (raises `links.LinkError`)."""
    link = await links.check(SURVEY_LINK, token, now=at or now())
    return await _survey_page(link.data.get("survey"))


async def _survey_page(survey_id: Any) -> SurveyPage:
    with unscoped():  # the link's signature vouches for the survey
        survey = await Survey.get_or_none(id=survey_id)
        if survey is None:
            raise links.LinkError("invalid")
        if survey.answered_at is not None:
            raise links.LinkError("used")
        case = await Case.get(id=survey.case_id)
        return SurveyPage(survey, case, await Customer.get(id=case.customer_id), await project_of(case.project_id))


async def answer_survey(token: str, form: dict, at: datetime | None = None) -> SurveyPage:
    """Record the customer's rating; a low one re-opens the case for a manager's review."""
    at = at or now()
    raw = (form.get("score") or "").strip()
    errors: dict[str, str] = {}
    if raw not in {"1", "2", "3", "4", "5"}:
        errors["score"] = _("Choose from 1 to 5 stars.")
    comment = _text(form, "comment", errors, required=False, limit=2000)
    page = await survey_for(token, at)
    if errors:
        raise CaseError(errors)
    score = int(raw)
    with unscoped():
        async with transaction():
            link = await links.redeem(SURVEY_LINK, token, now=at)
            page = await _survey_page(link.data.get("survey"))
            survey, case = page.survey, page.case
            survey.score, survey.comment, survey.answered_at = score, comment, at
            await survey.save(update_fields=["score", "comment", "answered_at"])
            await timeline.post(case, "survey", _("Satisfaction survey answered: %(score)s/5. %(comment)s",
                                                  score=score, comment=comment),
                                data={"score": score, "survey": survey.id})
            if score <= int(conf()["low_score"]) and case.step == Step.CLOSED:
                await reopen_for_review(case, page.project, at)
    return page


async def reopen_for_review(case: Case, project: Project, at: datetime) -> None:
    case.needs_review, case.reopen_count = True, case.reopen_count + 1
    case.step, case.step_at, case.closed_at = Step.FOLLOWED_UP, at, None
    case.step_due_at = _step_deadline(project, at, Step.CLOSED, None)
    case.warned_at, case.escalation_level, case.escalated_at = None, Escalation.HANDLER, None
    await case.save()
    await timeline.post(case, "status", _("Re-opened for a manager's review after a low satisfaction score."),
                        data={"to": Step.FOLLOWED_UP, "review": True})
    for user in await users_with_permission(case.project_id, "complaints.close"):
        if user.email:
            await queue_email(to=user.email, template="complaints/reopened", locale=user.locale, project_id=project.id,
                              related=f"complaints.Case:{case.id}",
                              context={"case": case, "project": project, "tz": project.timezone})


async def users_with_permission(project_id: int, permission: str, *, where: str = "both") -> list[User]:
    """Active staff holding `permission`: members of the estate ("project"), head office ("head_office") or both."""
    with unscoped():
        if where == "project":
            query = Membership.filter(project_id=project_id)
        elif where == "head_office":
            query = Membership.filter(project_id__isnull=True)
        else:
            query = Membership.filter(Q(project_id=project_id) | Q(project_id__isnull=True))
        memberships = await query.select_related("role", "user")
    found: dict[int, User] = {}
    for membership in memberships:
        if membership.user.is_active and permission in (membership.role.permissions or []):
            found[membership.user.id] = membership.user
    return sorted(found.values(), key=lambda u: u.id)
