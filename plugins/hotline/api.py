"""The hotline's JSON API: record work orders from other systems (WeChat mini-program, call centre) and sync them.

Work orders are created through `workorders.create_order`, exactly as the
intake page does (numbering, SLA deadlines, timeline, events, email).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from core.api import (
    MAX_ID, ApiCall, ApiError, ApiModel, Customer, ListQuery, Page, Unit, api_route, gettext as _, paginate, try_normalize_phone,
)
from plugins.hotline import workorders as wo
from plugins.hotline.models import Category, ContactChannel, Kind, Status, Urgency, WorkOrder


KindName = Literal[tuple(Kind.CHOICES)]  # type: ignore[valid-type]
UrgencyName = Literal[tuple(Urgency.CHOICES)]  # type: ignore[valid-type]
ChannelName = Literal[tuple(ContactChannel.CHOICES)]  # type: ignore[valid-type]
StatusName = Literal[tuple(Status.CHOICES)]  # type: ignore[valid-type]


class CategoryOut(ApiModel):
    id: int
    name: str
    parent_id: int | None
    kind: str
    is_active: bool


class CategoryList(ApiModel):
    items: list[CategoryOut]


class CategoryRef(ApiModel):
    id: int
    name: str


class WorkOrderIn(ApiModel):
    """A request to record, as an agent would at intake."""

    customer_id: int = Field(ge=1, le=MAX_ID, description="From GET /customers?phone=...")
    category_id: int = Field(ge=1, le=MAX_ID, description="An active category of the estate (GET .../hotline/categories).")
    unit_id: int | None = Field(None, ge=1, le=MAX_ID)
    kind: KindName = Field(description="What the request is about.")
    urgency: UrgencyName = "normal"
    channel: ChannelName = Field("online", description="Where it came in; online covers WeChat.")
    subject: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10000)
    caller_phone: str = Field("", max_length=40, description="The number the customer used, any spelling.")


class WorkOrderOut(ApiModel):
    id: int
    number: str = Field(description="GD-<year>-<nnnnnn>, per estate.")
    status: StatusName
    kind: str
    urgency: str
    channel: str
    level: int = Field(description="1 on the spot, 2 dispatched, 3 coordinated by a supervisor.")
    category: CategoryRef
    customer_id: int
    unit_id: int | None
    caller_phone: str
    subject: str
    description: str
    resolution: str
    received_at: datetime
    response_due: datetime
    resolution_due: datetime
    responded_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    escalation_level: int
    reopen_count: int
    updated_at: datetime | None
    web_path: str = Field(description="The order's page in Courtyard, relative to the server.")


class WorkOrderQuery(ListQuery):
    status: StatusName | None = Field(None, description="Only orders in this state.")
    customer_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only this customer's orders.")


async def _out(call: ApiCall, orders: list[WorkOrder]) -> list[dict]:
    categories = {c.id: c for c in await Category.filter(id__in=list({o.category_id for o in orders}))}
    base = f"/p/{call.project.code}/hotline/orders/"
    return [
        {**{name: getattr(o, name) for name in WorkOrderOut.model_fields if hasattr(o, name) and name != "category"},
         "category": categories[o.category_id], "web_path": f"{base}{o.id}"}
        for o in orders
    ]


async def list_categories(call: ApiCall) -> dict:
    return {"items": await Category.all().order_by("name", "id")}


async def list_work_orders(call: ApiCall) -> dict:
    query: WorkOrderQuery = call.query
    orders = WorkOrder.filter(**query.sent("status", "customer_id"))
    return await paginate(call, orders, convert=lambda rows: _out(call, rows))


async def get_work_order(call: ApiCall) -> dict:
    return (await _out(call, [call.record]))[0]


async def create_work_order(call: ApiCall) -> dict:
    body: WorkOrderIn = call.body
    customer = await Customer.get_or_none(id=body.customer_id)
    category = await Category.get_or_none(id=body.category_id)
    unit = await Unit.get_or_none(id=body.unit_id) if body.unit_id else None
    errors: dict[str, str] = {}
    if customer is None:
        errors["customer_id"] = _("There is no such customer in this estate.")
    if category is None:
        errors["category_id"] = _("Choose a category of this estate.")
    if body.unit_id and unit is None:
        errors["unit_id"] = _("That unit is not in this estate.")
    caller = ""
    if body.caller_phone.strip():
        caller = try_normalize_phone(body.caller_phone) or ""
        if not caller:
            errors["caller_phone"] = _("“%(value)s” is not a valid phone number.", value=body.caller_phone)
    if errors:
        raise ApiError.invalid(errors)
    intake = wo.Intake(
        customer=customer, category=category, kind=body.kind, urgency=body.urgency, channel=body.channel,
        subject=body.subject, description=body.description, unit=unit, caller_phone=caller,
    )
    try:
        order = await wo.create_order(call.project, intake, author=None)
    except wo.WorkOrderError as exc:
        raise ApiError.invalid(exc.errors) from None
    return (await _out(call, [order]))[0]


def routes():
    read, write = "hotline:read", "hotline:write"
    return [
        api_route("GET", "/categories", list_categories, scope=read, response=CategoryList,
                  summary="Request categories of the estate"),
        api_route("GET", "/work-orders", list_work_orders, scope=read, query=WorkOrderQuery, response=Page[WorkOrderOut],
                  summary="Work orders, in order of change",
                  description="Keep the `updated_at` of the last item (or the cursor) and pass it as `updated_since` "
                              "next time to get only what changed."),
        api_route("GET", "/work-orders/{id:int}", get_work_order, scope=read, response=WorkOrderOut,
                  model="hotline.WorkOrder", summary="A work order"),
        api_route("POST", "/work-orders", create_work_order, scope=write, body=WorkOrderIn, response=WorkOrderOut,
                  creates=True, summary="Record a work order",
                  description="Numbered, given SLA deadlines and acknowledged to the customer exactly like an order "
                              "recorded at intake. Send an Idempotency-Key so a retry cannot record it twice."),
    ]
