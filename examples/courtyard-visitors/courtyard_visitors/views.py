"""Pages of the visitor log, the dashboard tile and the customer-360 data."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from tortoise.expressions import Q

from core.api import (
    Column,
    CustomerUnit,
    DashboardTile,
    Filter,
    ListView,
    PhoneError,
    Unit,
    ctx,
    form_data,
    gettext,
    lazy_gettext as _,
    normalize_phone,
    now,
    plugin_url,
    redirect,
    render,
    toast,
    try_normalize_phone,
)
from courtyard_visitors.models import Visitor


def _phone_q(text):
    number = try_normalize_phone(text)
    return Q(phone=number) if number else None


visitors = ListView(
    "visitors", _("Visitors"), model=Visitor,
    columns=[
        Column("arrived_at", _("Arrived"), format="datetime", sort=True),
        Column("name", _("Visitor"), sort=True),
        Column("phone", _("Phone"), template="visitors/_phone.html"),
        Column("unit", _("Unit"), field="unit.code", sort="unit__code"),
        Column("purpose", _("Purpose"), wrap=True),
        Column("left_at", _("Left"), format="datetime", sort=True, template="visitors/_left.html"),
    ],
    filters=[
        Filter.boolean("inside", _("Still inside"), apply=lambda query, inside: query.filter(left_at__isnull=inside)),
        Filter.date_range("arrived", _("Arrived"), field="arrived_at"),
    ],
    search=["name", "purpose", "unit__code"],
    search_q=_phone_q,
    search_placeholder=_("Name, unit, purpose or phone…"),
    select_related=["unit"],
    default_sort="-arrived_at",
)


async def visitor_list(request):
    actions = []
    if ctx(request).principal.can("visitors.register", ctx(request).project.id):
        actions.append((gettext("Register a visitor"), plugin_url(request, "visitors", "new")))
    return await visitors.response(request, actions=actions)


async def register_form(request, values=None, errors=None):
    return await render(
        request, "visitors/register.html",
        {"values": values or {}, "errors": errors or {}},
        status_code=422 if errors else 200,
    )


async def register_submit(request):
    values = await form_data(request)
    errors = {}
    name = values.get("name", "").strip()
    if not name:
        errors["name"] = gettext("Enter the visitor's name.")
    phone = ""
    if values.get("phone", "").strip():
        try:
            phone = normalize_phone(values["phone"])
        except PhoneError:
            errors["phone"] = gettext("Enter a phone number like 138 0013 8000.")
    unit = await Unit.get_or_none(code=values.get("unit", "").strip())  # scoped: this estate's units only
    if unit is None:
        errors["unit"] = gettext("There is no unit with this code in this estate.")
    if errors:
        return await register_form(request, values, errors)
    visitor = await Visitor.create(
        project=ctx(request).project, name=name, phone=phone, unit=unit,
        purpose=values.get("purpose", "").strip()[:200], arrived_at=now(),
    )
    message = gettext("%(name)s registered for %(unit)s.", name=visitor.name, unit=unit.code)
    return redirect(request, plugin_url(request, "visitors"), message)


async def mark_left(request):
    visitor = request.state.record  # loaded by core within this estate (404 otherwise)
    if visitor.left_at is None:
        visitor.left_at = now()
        await visitor.save(update_fields=["left_at"])
    if not request.headers.get("hx-request"):
        return redirect(request, plugin_url(request, "visitors"), gettext("%(name)s has left.", name=visitor.name))
    response = await render(request, "visitors/_left.html", {"row": visitor, "value": visitor.left_at})
    return toast(response, gettext("%(name)s has left.", name=visitor.name))


def local_day_bounds(project, at):
    """The estate's local calendar day around `at`, as UTC start and end."""
    zone = ZoneInfo(project.timezone)
    start = datetime.combine(at.astimezone(zone).date(), time(), zone)
    return start, start + timedelta(days=1)


async def today_tile(project):
    start, end = local_day_bounds(project, now())
    arrivals = await Visitor.filter(arrived_at__gte=start, arrived_at__lt=end).values_list(
        "arrived_at", flat=True
    )
    inside = await Visitor.filter(left_at__isnull=True).count()  # queries see this estate only
    zone = ZoneInfo(project.timezone)
    by_hour = [0] * 24
    for arrived in arrivals:
        by_hour[arrived.astimezone(zone).hour] += 1
    return DashboardTile(
        _("Visitors today"), value=len(arrivals),
        hint=gettext("%(n)s still inside", n=inside),
        url=f"/p/{project.code}/visitors/",
        chart={
            "type": "bar",
            "labels": [f"{hour:02d}" for hour in range(24)],
            "datasets": [{"label": gettext("Arrivals by hour"), "data": by_hour}],
        },
        order=40, width=2, permission="visitors.view",
    )


async def recent_visitors_of(customer, limit=10):
    """The latest visits to the units the customer currently owns or lives in."""
    today = now().date()
    unit_ids = await CustomerUnit.filter(
        Q(end_date__isnull=True) | Q(end_date__gte=today), customer_id=customer.id
    ).values_list("unit_id", flat=True)
    if not unit_ids:
        return []
    return await Visitor.filter(unit_id__in=list(unit_ids)).select_related("unit").limit(limit)
