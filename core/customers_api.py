"""Core's JSON API endpoints: the token's estates, customers looked up by phone, units by code.

Personal data: phone numbers are given in full (E.164: an integration that
looks customers up by phone knows them already); ID-card numbers never leave
through the API.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import Field

from core.customers import _current
from core.i18n import gettext as _, local_today
from core.models import Building, Customer, CustomerPhone, CustomerUnit, Project, Unit
from core.people import PhoneError, normalize_phone
from core.rest import ApiCall, ApiError, ApiModel, api_route
from core.web import enabled_modules


class ProjectOut(ApiModel):
    code: str = Field(description="Used in every project URL: /api/v1/projects/{code}/...")
    name: str
    timezone: str
    modules: list[str] = Field(description="Modules enabled in this estate (their endpoints answer 404 elsewhere).")


class ProjectList(ApiModel):
    items: list[ProjectOut]


class PhoneOut(ApiModel):
    number: str = Field(description="E.164, e.g. +8613800138000.")
    label: str


class UnitLinkOut(ApiModel):
    unit_id: int
    unit_code: str
    relation: str = Field(description="owner, tenant or family.")
    start_date: date | None
    end_date: date | None
    current: bool = Field(description="The relation holds today (estate's time zone).")


class CustomerOut(ApiModel):
    id: int
    name: str
    email: str
    preferred_channel: str = Field(description="phone, sms, email, wechat or visit.")
    locale: str
    phones: list[PhoneOut]
    units: list[UnitLinkOut]
    created_at: datetime


class CustomerList(ApiModel):
    items: list[CustomerOut]


class PhoneQuery(ApiModel):
    phone: str = Field(min_length=1, max_length=40, description="Any spelling: 138 0013 8000, +86 13800138000, 0086-138…")


class BuildingOut(ApiModel):
    id: int
    code: str
    name: str


class OccupantOut(ApiModel):
    customer_id: int
    name: str
    relation: str
    current: bool


class UnitOut(ApiModel):
    id: int
    code: str = Field(description="Building-entrance-room, e.g. 3-2-1502.")
    building: BuildingOut
    floor: int
    area: Decimal = Field(description="Square metres, as a decimal string.")
    use: str = Field(description="residential, commercial or parking.")
    layout: str
    occupants: list[OccupantOut]


class UnitList(ApiModel):
    items: list[UnitOut]


class UnitQuery(ApiModel):
    code: str = Field(min_length=1, max_length=32, description="The unit's code, e.g. 3-2-1502.")


# Handlers -------------------------------------------------------------------------


async def list_projects(call: ApiCall) -> dict:
    """The estates this token may use, with their modules."""
    host = call.request.app.state.host
    items = []
    for project in await Project.filter(id__in=list(call.token.project_ids), is_active=True).order_by("code"):
        modules = sorted(await enabled_modules(project, host))
        items.append({"code": project.code, "name": project.name, "timezone": project.timezone, "modules": modules})
    return {"items": items}


async def _customers_out(customers: list[Customer], project: Project) -> list[dict]:
    ids = [c.id for c in customers]
    phones: dict[int, list[CustomerPhone]] = {}
    for phone in await CustomerPhone.filter(customer_id__in=ids).order_by("id"):
        phones.setdefault(phone.customer_id, []).append(phone)
    links: dict[int, list[CustomerUnit]] = {}
    for link in await CustomerUnit.filter(customer_id__in=ids).select_related("unit").order_by("id"):
        links.setdefault(link.customer_id, []).append(link)
    today = local_today(project.timezone)
    return [
        {
            "id": c.id, "name": c.name, "email": c.email, "preferred_channel": c.preferred_channel, "locale": c.locale,
            "created_at": c.created_at,
            "phones": phones.get(c.id, []),
            "units": [
                {"unit_id": link.unit_id, "unit_code": link.unit.code, "relation": link.relation,
                 "start_date": link.start_date, "end_date": link.end_date, "current": _current(link, today)}
                for link in links.get(c.id, [])
            ],
        }
        for c in customers
    ]


async def find_customers(call: ApiCall) -> dict:
    """Customers of the estate with this phone number (any spelling)."""
    try:
        number = normalize_phone(call.query.phone)
    except PhoneError:
        raise ApiError.invalid({"phone": _("This is not a phone number.")}, location="query", kind="invalid_phone") from None
    ids = await CustomerPhone.filter(number=number).values_list("customer_id", flat=True)
    customers = await Customer.filter(id__in=list(ids)).order_by("id")
    return {"items": await _customers_out(list(customers), call.project)}


async def get_customer(call: ApiCall) -> dict:
    return (await _customers_out([call.record], call.project))[0]


async def _units_out(units: list[Unit], project: Project) -> list[dict]:
    buildings = {b.id: b for b in await Building.filter(id__in=list({u.building_id for u in units}))}
    links: dict[int, list[CustomerUnit]] = {}
    for link in await CustomerUnit.filter(unit_id__in=[u.id for u in units]).select_related("customer").order_by("id"):
        links.setdefault(link.unit_id, []).append(link)
    today = local_today(project.timezone)
    return [
        {
            "id": u.id, "code": u.code, "building": buildings[u.building_id], "floor": u.floor, "area": u.area,
            "use": u.use, "layout": u.layout,
            "occupants": [
                {"customer_id": link.customer_id, "name": link.customer.name, "relation": link.relation,
                 "current": _current(link, today)}
                for link in links.get(u.id, [])
            ],
        }
        for u in units
    ]


async def find_units(call: ApiCall) -> dict:
    """The unit with this code (a list of at most one, so "none" is not an error)."""
    units = await Unit.filter(code=call.query.code.strip())
    return {"items": await _units_out(list(units), call.project)}


async def get_unit(call: ApiCall) -> dict:
    return (await _units_out([call.record], call.project))[0]


def routes():
    read = "core:read"
    return [
        api_route("GET", "/projects", list_projects, scope=read, in_project=False, response=ProjectList,
                  summary="Estates this token may use"),
        api_route("GET", "/customers", find_customers, scope=read, query=PhoneQuery, response=CustomerList,
                  summary="Find customers by phone number",
                  description="Any spelling of the number; answers every customer of the estate with it (usually one)."),
        api_route("GET", "/customers/{id:int}", get_customer, scope=read, response=CustomerOut, model="core.Customer",
                  summary="A customer"),
        api_route("GET", "/units", find_units, scope=read, query=UnitQuery, response=UnitList,
                  summary="Find a unit by its code"),
        api_route("GET", "/units/{id:int}", get_unit, scope=read, response=UnitOut, model="core.Unit",
                  summary="A unit and its occupants"),
    ]
