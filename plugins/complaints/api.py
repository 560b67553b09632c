"""The complaints' JSON API: record complaints from other systems (WeChat mini-program, call centre) and sync cases.

Cases are opened through `cases.open_case`, exactly as the front desk's
receipt page does (numbering, the deadline to record it, timeline, repeat
detection).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from core.api import (
    MAX_ID, ApiCall, ApiError, ApiModel, Customer, ListQuery, Page, Unit, api_route, gettext as _, paginate,
)
from plugins.complaints import cases as svc
from plugins.complaints.models import Case, Category, Channel, Severity, Step


StepName = Literal[tuple(Step.ORDER)]  # type: ignore[valid-type]
SeverityName = Literal[tuple(Severity.CHOICES)]  # type: ignore[valid-type]
ChannelName = Literal[tuple(Channel.CHOICES)]  # type: ignore[valid-type]
StateName = Literal["open", "closed"]

# The service's form fields, as the API's body calls them.
FIELD_NAMES = {"customer": "customer_id", "unit": "unit_id", "category": "category_id"}


class CategoryOut(ApiModel):
    id: int
    name: str
    parent_id: int | None
    classification: str
    defect: str = Field(description="The product defect head office compares across estates; empty for service matters.")
    is_active: bool


class CategoryList(ApiModel):
    items: list[CategoryOut]


class CategoryRef(ApiModel):
    id: int
    name: str


class CaseIn(ApiModel):
    """A complaint to receive, as the front desk would."""

    customer_id: int = Field(ge=1, le=MAX_ID, description="The customer who complains (GET /customers?phone=...).")
    unit_id: int | None = Field(None, ge=1, le=MAX_ID)
    category_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="An active category of the estate (GET .../complaints/categories); "
                                           "otherwise it is classified when the details are recorded.",
    )
    channel: ChannelName = Field("online", description="How it came in; online covers WeChat.")
    severity: SeverityName = "normal"
    subject: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=svc.TEXT_MAX)


class CaseOut(ApiModel):
    id: int
    number: str = Field(description="TS-<year>-<nnnnnn>, per estate.")
    state: StateName = Field(description="open until the case is closed (a low survey score re-opens it).")
    step: StepName = Field(description="The last step of the procedure completed, from received to closed.")
    severity: str
    channel: str
    category: CategoryRef | None
    customer_id: int
    unit_id: int | None
    department_id: int | None = Field(description="The department handling the case, once assigned.")
    subject: str
    description: str
    received_at: datetime
    occurred_at: datetime | None
    step_due_at: datetime | None = Field(description="When the next step is due; null once closed.")
    due_at: datetime | None = Field(description="When the case must be settled, set when it is assessed.")
    promised_reply_at: datetime | None = Field(description="The reply time promised to the customer.")
    closed_at: datetime | None
    escalation_level: int = Field(description="0 handler, 1 supervisor, 2 manager, 3 head office (overdue step).")
    escalated_at: datetime | None
    is_repeat: bool = Field(description="An earlier complaint came from the same unit or about the same defect.")
    needs_review: bool = Field(description="Re-opened by a low satisfaction score; waits for a manager's review.")
    reopen_count: int
    work_order_id: int | None = Field(description="The hotline work order it came from, if any.")
    work_order_number: str
    updated_at: datetime | None
    web_path: str = Field(description="The case's page in Courtyard, relative to the server.")


class CaseQuery(ListQuery):
    state: StateName | None = Field(None, description="Only open or only closed cases.")
    step: StepName | None = Field(None, description="Only cases at this step.")
    customer_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only this customer's cases.")
    unit_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only cases about this unit.")


SIMPLE_FIELDS = [name for name in CaseOut.model_fields if name not in ("state", "category", "web_path")]


async def _out(call: ApiCall, cases: list[Case]) -> list[dict]:
    ids = list({c.category_id for c in cases if c.category_id})
    categories = {c.id: c for c in await Category.filter(id__in=ids)} if ids else {}
    base = f"/p/{call.project.code}/complaints/cases/"
    return [
        {**{name: getattr(c, name) for name in SIMPLE_FIELDS},
         "state": "open" if c.is_open else "closed", "category": categories.get(c.category_id),
         "web_path": f"{base}{c.id}"}
        for c in cases
    ]


async def list_categories(call: ApiCall) -> dict:
    return {"items": await Category.all().order_by("name", "id")}


async def list_cases(call: ApiCall) -> dict:
    query: CaseQuery = call.query
    cases = Case.filter(**query.sent("step", "customer_id", "unit_id"))
    if query.state == "open":
        cases = cases.filter(step__in=list(Step.OPEN))
    elif query.state == "closed":
        cases = cases.filter(step=Step.CLOSED)
    return await paginate(call, cases, convert=lambda rows: _out(call, rows))


async def get_case(call: ApiCall) -> dict:
    return (await _out(call, [call.record]))[0]


async def create_case(call: ApiCall) -> dict:
    body: CaseIn = call.body
    # Looked up within the token's estate: another estate's ids are not found.
    customer = await Customer.get_or_none(id=body.customer_id)
    unit = await Unit.get_or_none(id=body.unit_id) if body.unit_id else None
    category = await Category.get_or_none(id=body.category_id, is_active=True) if body.category_id else None
    errors: dict[str, str] = {}
    if body.unit_id and unit is None:
        errors["unit_id"] = _("That unit is not in this estate.")
    if body.category_id and category is None:
        errors["category_id"] = _("Choose a category of this estate.")
    intake = svc.Intake(
        customer=customer, unit=unit, channel=body.channel, subject=body.subject, description=body.description,
        category=category, severity=body.severity,
    )
    for name, message in svc.check_intake(intake, call.project.id).items():
        errors.setdefault(FIELD_NAMES.get(name, name), message)
    if errors:
        raise ApiError.invalid(errors)
    try:
        case = await svc.open_case(call.project, intake, author=None)
    except svc.CaseError as exc:
        raise ApiError.invalid({FIELD_NAMES.get(k, k): v for k, v in exc.errors.items()}) from None
    return (await _out(call, [case]))[0]


def routes():
    read, write = "complaints:read", "complaints:write"
    return [
        api_route("GET", "/categories", list_categories, scope=read, response=CategoryList,
                  summary="Complaint categories of the estate"),
        api_route("GET", "/cases", list_cases, scope=read, query=CaseQuery, response=Page[CaseOut],
                  summary="Complaint cases, in order of change",
                  description="Keep the `updated_at` of the last item (or the cursor) and pass it as `updated_since` "
                              "next time to get only what changed: every step, assignment, escalation and "
                              "re-opening changes it."),
        api_route("GET", "/cases/{id:int}", get_case, scope=read, response=CaseOut, model="complaints.Case",
                  summary="A complaint case"),
        api_route("POST", "/cases", create_case, scope=write, body=CaseIn, response=CaseOut, creates=True,
                  summary="Receive a complaint",
                  description="Numbered, given the deadline to record it and checked for repeats exactly like a "
                              "complaint received at the front desk. Send an Idempotency-Key so a retry cannot "
                              "open it twice."),
    ]
