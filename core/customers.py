"""Customers, units and buildings pages, and the customer 360 page.

Lists are `core.listing.ListView`s. Phone and ID-card numbers are masked for
users without `core.view_personal_data` (see `core.templating.may_see_personal_data`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from tortoise.expressions import Q, Subquery
from tortoise.functions import Count
from tortoise.query_utils import Prefetch

from core import i18n
from core.db import transaction
from core.i18n import gettext as _, lazy_gettext as _l, local_today
from core.kit import CustomerSection
from core.listing import Column, Filter, ListView
from core.models import Building, Channel, Customer, CustomerPhone, CustomerUnit, Relation, Unit, UnitUse
from core.people import PhoneError, create_customer, display_phone, mask_id_number, mask_phone, normalize_phone
from core.people import pinyin_keys, try_normalize_phone
from core.templating import base_context, may_see_personal_data, render
from core.web import ctx, plugin_url, redirect

log = logging.getLogger("courtyard.customers")

EDIT = "core.edit_customers"
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE_LIKE_RE = re.compile(r"[\d\s+()\-.]+")
PINYIN_RE = re.compile(r"[a-z]+")
BLANK_PHONE_INPUTS = 2


# Search --------------------------------------------------------------------------


def prefix_q(field: str, prefix: str, alphabet: str) -> Q:
    """`field` starts with `prefix`, as a range an ordinary index answers in any collation.

    `LIKE 'abc%'` uses a PostgreSQL index only under the "C" collation; the range
    [prefix, successor) does under any, as long as the column holds only
    characters of `alphabet` (given in sort order: digits, then lowercase letters).
    """
    stripped = prefix.rstrip(alphabet[-1])
    if not stripped:
        return Q(**{f"{field}__gte": prefix})
    successor = stripped[:-1] + alphabet[alphabet.index(stripped[-1]) + 1]
    return Q(**{f"{field}__gte": prefix, f"{field}__lt": successor})


DIGITS = "0123456789"
PINYIN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def phone_search_q(text: str) -> Q | None:
    """Customers with a phone matching `text` in any spelling, or ending with its 4+ digits."""
    if not PHONE_LIKE_RE.fullmatch(text):
        return None
    digits = re.sub(r"\D", "", text)
    if len(digits) < 4:
        return None
    # "Ends with these digits" is "the reversed digits start with them reversed": an index range, not a scan.
    match = prefix_q("number_reversed", digits[::-1], DIGITS)
    normalized = try_normalize_phone(text)
    if normalized:
        match = match | Q(number=normalized)
    # A subquery, not a join: a customer with two matching numbers is still one row.
    return Q(id__in=Subquery(CustomerPhone.filter(match).values("customer_id")))


def pinyin_search_q(text: str) -> Q | None:
    """Full pinyin (`zhangsan`, `zhang san`) or initials (`zs`) starting with the letters typed."""
    letters = re.sub(r"\s+", "", text.lower())
    if not PINYIN_RE.fullmatch(letters):
        return None
    return prefix_q("name_pinyin", letters, PINYIN_ALPHABET) | prefix_q("name_initials", letters, PINYIN_ALPHABET)


def customer_search_q(text: str) -> Q:
    """Name (any part), full pinyin (`zhangsan`), initials (`zs`) or phone number."""
    phone = phone_search_q(text)
    if phone is not None:
        return phone  # digits are a number, not part of a name: only indexed conditions remain
    conditions = [Q(name__icontains=text)]
    pinyin = pinyin_search_q(text)
    if pinyin is not None:
        conditions.append(pinyin)
    return Q(*conditions, join_type="OR")


def customer_lookup_q(text: str) -> Q:
    """Like `customer_search_q`, but names match from their start: every condition is answered by an index.

    For the global search, which looks through every estate of a head-office
    user (a million customers): a name part in the middle ("三" of 张三) would
    mean reading them all. Lists within one estate keep `customer_search_q`.
    """
    phone = phone_search_q(text)
    if phone is not None:
        return phone
    conditions = [Q(name__startswith=text)]
    pinyin = pinyin_search_q(text)
    if pinyin is not None:
        conditions.append(pinyin)
    return Q(*conditions, join_type="OR")


# Personal data ---------------------------------------------------------------------


def shown_phone(request: Request, number: str) -> str:
    return display_phone(number) if may_see_personal_data(request) else mask_phone(number)


def shown_id_number(request: Request, value: str) -> str:
    return value if may_see_personal_data(request) else mask_id_number(value)


def _today(request: Request) -> date:
    return local_today(ctx(request).project.timezone)


def _current(link: CustomerUnit, today: date) -> bool:
    return (link.start_date is None or link.start_date <= today) and (link.end_date is None or link.end_date >= today)


# Lists -----------------------------------------------------------------------------


async def building_choices(request: Request) -> list[tuple[int, str]]:
    return [(b.id, f"{b.code} · {b.name}") for b in await Building.all().order_by("code")]


def _customer_units(customer: Customer, request: Request) -> list[str]:
    today = _today(request)
    return [
        f"{link.unit.code} ({Relation.CHOICES.get(link.relation, link.relation)})"
        for link in customer.unit_links
        if _current(link, today)
    ]


def _customers_in_building(queryset, building_id):
    return queryset.filter(id__in=Subquery(CustomerUnit.filter(unit__building_id=building_id).values("customer_id")))


def _customers_with_relation(queryset, relation, request):
    current = Q(end_date__isnull=True) | Q(end_date__gte=_today(request))
    return queryset.filter(id__in=Subquery(CustomerUnit.filter(current, relation=relation).values("customer_id")))


customers_list = ListView(
    "customers",
    _l("Customers"),
    model=Customer,
    columns=[
        Column("name", _l("Name"), sort=True, link=lambda c, r: plugin_url(r, "core", f"customers/{c.id}")),
        Column("phones", _l("Phone"), value=lambda c, r: [shown_phone(r, p.number) for p in c.phones]),
        Column("units", _l("Units"), value=_customer_units, wrap=True),
        Column("email", _l("Email"), sort=True),
        Column("preferred_channel", _l("Preferred channel"), format="choice", choices=Channel.CHOICES),
        Column("created_at", _l("Created"), format="date", sort=True),
    ],
    filters=[
        Filter.choice("relation", _l("Relation"), Relation.CHOICES, apply=_customers_with_relation),
        Filter.choice("building", _l("Building"), building_choices, apply=_customers_in_building),
        Filter.choice("channel", _l("Preferred channel"), Channel.CHOICES, field="preferred_channel"),
        Filter.date_range("created", _l("Created"), field="created_at"),
    ],
    search_q=customer_search_q,
    search_placeholder=_l("Name, pinyin or phone…"),
    # Each customer's unit links come with their units in one statement (a join), not two.
    prefetch_related=["phones", lambda: Prefetch("unit_links", queryset=CustomerUnit.all().select_related("unit"))],
    default_sort="name",
)


def _owners(unit: Unit, request: Request) -> list[str]:
    today = _today(request)
    return [link.customer.name for link in unit.customer_links if link.relation == Relation.OWNER and _current(link, today)]


def _units_search_q(text: str) -> Q:
    owners = CustomerUnit.filter(relation=Relation.OWNER, customer__name__icontains=text).values("unit_id")
    return Q(id__in=Subquery(owners))


def _units_with_owner(queryset, has_owner: bool):
    owned = Q(id__in=Subquery(CustomerUnit.filter(relation=Relation.OWNER, end_date=None).values("unit_id")))
    return queryset.filter(owned) if has_owner else queryset.filter(~owned)


units_list = ListView(
    "units",
    _l("Units"),
    model=Unit,
    columns=[
        Column("code", _l("Unit"), sort=True, link=lambda u, r: plugin_url(r, "core", f"units/{u.id}")),
        Column("building", _l("Building"), field="building.name", sort="building__code"),
        Column("floor", _l("Floor"), format="number", sort=True),
        Column("area", _l("Area (m²)"), format="number", digits=2, sort=True),
        Column("use", _l("Use"), format="choice", choices=UnitUse.CHOICES, sort=True),
        Column("layout", _l("Layout")),
        Column("owners", _l("Owner"), value=_owners, wrap=True),
    ],
    filters=[
        Filter.choice("building", _l("Building"), building_choices, field="building_id"),
        Filter.choice("use", _l("Use"), UnitUse.CHOICES),
        Filter.boolean("owned", _l("Has an owner"), apply=_units_with_owner),
    ],
    search=["code"],
    search_q=_units_search_q,
    search_placeholder=_l("Unit code or owner…"),
    select_related=["building"],
    prefetch_related=[lambda: Prefetch("customer_links", queryset=CustomerUnit.all().select_related("customer"))],
    default_sort="code",
)

buildings_list = ListView(
    "buildings",
    _l("Buildings"),
    query=lambda request: Building.annotate(unit_count=Count("units")),
    columns=[
        Column("code", _l("Code"), sort=True, link=lambda b, r: plugin_url(r, "core", f"units?building={b.id}")),
        Column("name", _l("Name"), sort=True),
        Column("floors", _l("Floors"), format="number", sort=True),
        Column("unit_count", _l("Units"), format="number", sort=True),
    ],
    search=["code", "name"],
    default_sort="code",
)


async def customer_list(request: Request) -> Response:
    project = ctx(request).project
    actions = []
    if ctx(request).principal.can(EDIT, project.id):
        actions.append((_("New customer"), plugin_url(request, "core", "customers/new")))
    return await customers_list.response(request, actions=actions)


async def unit_list(request: Request) -> Response:
    return await units_list.response(request)


async def building_list(request: Request) -> Response:
    return await buildings_list.response(request)


# Customer form ------------------------------------------------------------------------


@dataclass
class PhoneInput:
    name: str
    value: str


@dataclass
class CustomerForm:
    """The customer form's values, parsed and checked."""

    values: dict[str, Any]
    phones: list[PhoneInput]
    numbers: list[str]
    errors: dict[str, str]


def _phone_inputs(raw: dict[str, str]) -> list[PhoneInput]:
    keys = sorted((k for k in raw if re.fullmatch(r"phone_\d+", k)), key=lambda k: int(k[6:]))
    return [PhoneInput(k, raw[k].strip()) for k in keys]


def _blank_phone_inputs(existing: list[str]) -> list[PhoneInput]:
    inputs = [PhoneInput(f"phone_{i}", v) for i, v in enumerate(existing)]
    start = len(inputs)
    return inputs + [PhoneInput(f"phone_{start + i}", "") for i in range(BLANK_PHONE_INPUTS)]


def parse_customer_form(raw: dict[str, str], *, personal_data: bool) -> CustomerForm:
    values = {
        "name": raw.get("name", "").strip(),
        "email": raw.get("email", "").strip(),
        "preferred_channel": raw.get("preferred_channel", Channel.PHONE),
        "locale": raw.get("locale", i18n.DEFAULT_LOCALE),
        "note": raw.get("note", "").strip(),
    }
    if personal_data:
        values["id_number"] = re.sub(r"\s+", "", raw.get("id_number", "")).upper()
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = _("Enter the customer's name.")
    elif len(values["name"]) > 64:
        errors["name"] = _("At most %(n)s characters.", n=64)
    if values["email"] and (len(values["email"]) > 255 or not EMAIL_RE.fullmatch(values["email"])):
        errors["email"] = _("Enter an email address such as name@example.com.")
    if values["preferred_channel"] not in Channel.CHOICES:
        errors["preferred_channel"] = _("Choose one of the listed options.")
    if values["locale"] not in i18n.LOCALES:
        errors["locale"] = _("Choose one of the listed options.")
    if personal_data and values["id_number"] and not re.fullmatch(r"[0-9A-Z()\-]{4,32}", values["id_number"]):
        errors["id_number"] = _("Enter the ID number as printed: letters and digits, at most 32.")
    phones = _phone_inputs(raw)
    numbers: list[str] = []
    for phone in phones:
        if not phone.value:
            continue
        try:
            number = normalize_phone(phone.value)
        except PhoneError:
            errors[phone.name] = _("“%(value)s” is not a valid phone number.", value=phone.value)
            continue
        if number not in numbers:
            numbers.append(number)
    return CustomerForm(values, phones, numbers, errors)


async def _duplicates(numbers: list[str], customer: Customer | None) -> list[CustomerPhone]:
    """Other customers of this estate with one of these numbers (scoped to the page's project)."""
    if not numbers:
        return []
    query = CustomerPhone.filter(number__in=numbers).select_related("customer")
    if customer is not None:
        query = query.exclude(customer_id=customer.id)
    return await query.order_by("customer_id")


async def _render_form(
    request: Request,
    customer: Customer | None,
    values: dict[str, Any],
    phones: list[PhoneInput],
    *,
    errors: dict[str, str] | None = None,
    duplicates: list[CustomerPhone] = (),
    kept: list[dict[str, Any]] = (),
    status_code: int = 200,
) -> Response:
    return await render(
        request,
        "core/customers/form.html",
        {
            "customer": customer,
            "values": values,
            "phones": phones,
            "errors": errors or {},
            "duplicates": [
                {"name": d.customer.name, "phone": shown_phone(request, d.number),
                 "url": plugin_url(request, "core", f"customers/{d.customer_id}")}
                for d in duplicates
            ],
            "kept": kept,
            "channels": list(Channel.CHOICES.items()),
            "languages": list(i18n.LOCALE_NAMES.items()),
            "personal_data": may_see_personal_data(request),
        },
        block="form",
        status_code=status_code,
    )


async def customer_new(request: Request) -> Response:
    values = {"preferred_channel": Channel.PHONE, "locale": i18n.DEFAULT_LOCALE}
    return await _render_form(request, None, values, _blank_phone_inputs([]))


def _kept(request: Request, phones: list[CustomerPhone], keep: set[str] | None) -> list[dict[str, Any]]:
    """Existing numbers as masked "keep" boxes, for editors who may not see them in full."""
    return [
        {"id": p.id, "shown": mask_phone(p.number), "checked": keep is None or str(p.id) in keep} for p in phones
    ]


async def customer_edit(request: Request) -> Response:
    customer: Customer = request.state.record
    phones = await customer.phones.all().order_by("id")
    values = {
        "name": customer.name, "email": customer.email, "preferred_channel": customer.preferred_channel,
        "locale": customer.locale, "note": customer.note, "id_number": customer.id_number,
    }
    if may_see_personal_data(request):
        return await _render_form(request, customer, values, _blank_phone_inputs([display_phone(p.number) for p in phones]))
    return await _render_form(request, customer, values, _blank_phone_inputs([]), kept=_kept(request, phones, None))


async def customer_save(request: Request) -> Response:
    """Create (no record) or update (the route's record) a customer."""
    customer: Customer | None = getattr(request.state, "record", None)
    submitted = await request.form()
    raw = {k: v for k, v in submitted.multi_items() if k not in ("csrftoken", "keep")}
    personal = may_see_personal_data(request)
    form = parse_customer_form(raw, personal_data=personal)
    phones = form.phones + [PhoneInput(f"phone_{len(form.phones)}", "")]
    kept: list[dict[str, Any]] = []
    if customer is not None and not personal:
        # Numbers this editor cannot read come back as ticked "keep" boxes, not as text.
        existing = await customer.phones.all().order_by("id")
        keep = set(submitted.getlist("keep"))
        kept = _kept(request, existing, keep)
        kept_numbers = [p.number for p in existing if str(p.id) in keep]
        form.numbers = kept_numbers + [n for n in form.numbers if n not in kept_numbers]
    if form.errors:
        return await _render_form(
            request, customer, form.values, phones, errors=form.errors, kept=kept, status_code=422
        )
    duplicates = await _duplicates(form.numbers, customer)
    if duplicates and not raw.get("confirm_duplicates"):
        errors = {"duplicates": _("This phone number already belongs to another customer of the estate.")}
        return await _render_form(
            request, customer, form.values, phones, errors=errors, duplicates=duplicates, kept=kept, status_code=422
        )
    project = ctx(request).project
    async with transaction():
        if customer is None:
            customer = await create_customer(project, form.values.pop("name"), form.numbers, **form.values)
            message = _("Customer created.")
        else:
            await _update_customer(customer, form)
            message = _("Customer saved.")
    return redirect(request, plugin_url(request, "core", f"customers/{customer.id}"), message)


async def _update_customer(customer: Customer, form: CustomerForm) -> None:
    for key, value in form.values.items():
        setattr(customer, key, value)
    customer.name_pinyin, customer.name_initials = pinyin_keys(customer.name)
    await customer.save()
    existing = {p.number: p for p in await customer.phones.all()}
    for number, phone in existing.items():
        if number not in form.numbers:
            await phone.delete()
    for number in form.numbers:
        if number not in existing:
            await CustomerPhone.create(project_id=customer.project_id, customer=customer, number=number)


# Customer 360 ---------------------------------------------------------------------------


@dataclass
class SectionView:
    plugin: str
    title: Any
    html: Markup | None
    order: int = 100

    @property
    def unavailable(self) -> bool:
        return self.html is None


async def customer_sections(request: Request, customer: Customer) -> list[SectionView]:
    """Every enabled plugin's sections; a failing hook or template shows "unavailable" in its place only."""
    context = ctx(request)
    host = request.app.state.host
    results = await host.call("customer_sections", enabled=context.modules, request=request, customer=customer)
    templates = request.app.state.templates
    theme = context.project.theme
    base = None
    sections: list[SectionView] = []
    for result in results:
        if result.error is not None:  # already logged by host.call
            sections.append(SectionView(result.plugin, None, None, 1000))
            continue
        for section in result.value or []:
            section: CustomerSection
            if section.permission and not context.principal.can(section.permission, context.project.id):
                continue
            if base is None:
                base = await base_context(request)
            try:
                html = templates.env(theme).get_template(section.template).render(
                    {**base, **section.context, "customer": customer, "section": section}
                )
            except Exception:
                log.exception("plugin %s: customer section %s failed to render", result.plugin, section.template)
                sections.append(SectionView(result.plugin, section.title, None, section.order))
                continue
            sections.append(SectionView(result.plugin, section.title, Markup(html), section.order))
    sections.sort(key=lambda s: s.order)
    return sections


async def _unit_links(customer: Customer) -> list[CustomerUnit]:
    return await CustomerUnit.filter(customer_id=customer.id).select_related("unit__building").order_by(
        "end_date", "unit__code"
    )


async def _render_customer(
    request: Request, customer: Customer, *, link_values=None, errors=None, status_code: int = 200
) -> Response:
    project = ctx(request).project
    phones = await customer.phones.all().order_by("id")
    today = _today(request)
    links = await _unit_links(customer)
    return await render(
        request,
        "core/customers/detail.html",
        {
            "customer": customer,
            "phones": [shown_phone(request, p.number) for p in phones],
            "id_number": shown_id_number(request, customer.id_number),
            "links": [(link, _current(link, today)) for link in links],
            "relations": list(Relation.CHOICES.items()),
            "relation_labels": Relation.CHOICES,
            "base": plugin_url(request, "core", f"customers/{customer.id}"),
            "channel": Channel.CHOICES.get(customer.preferred_channel, customer.preferred_channel),
            "language": i18n.LOCALE_NAMES.get(customer.locale, customer.locale),
            "can_edit": ctx(request).principal.can(EDIT, project.id),
            "sections": await customer_sections(request, customer),
            "link_values": link_values or {"relation": Relation.OWNER},
            "errors": errors or {},
            "today": today.isoformat(),
        },
        block="units",
        status_code=status_code,
    )


async def customer_detail(request: Request) -> Response:
    return await _render_customer(request, request.state.record)


def _date_field(raw: dict[str, str], key: str, errors: dict[str, str]) -> date | None:
    text = raw.get(key, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[key] = _("Enter a date as YYYY-MM-DD.")
        return None


async def customer_link_unit(request: Request) -> Response:
    """Link the customer to a unit as owner, tenant or family member, with dates."""
    customer: Customer = request.state.record
    raw = {k: v for k, v in (await request.form()).multi_items() if k != "csrftoken"}
    values = {key: raw.get(key, "").strip() for key in ("unit", "relation", "start_date", "end_date")}
    errors: dict[str, str] = {}
    unit = None
    if not values["unit"]:
        errors["unit"] = _("Enter the unit code, e.g. 3-2-1502.")
    else:
        unit = await Unit.get_or_none(code=values["unit"])
        if unit is None:
            errors["unit"] = _("No unit %(code)s in this estate.", code=values["unit"])
    if values["relation"] not in Relation.CHOICES:
        errors["relation"] = _("Choose one of the listed options.")
    start = _date_field(values, "start_date", errors)
    end = _date_field(values, "end_date", errors)
    if start and end and end < start:
        errors["end_date"] = _("The end date is before the start date.")
    if unit is not None and "relation" not in errors:
        if await CustomerUnit.exists(customer_id=customer.id, unit_id=unit.id, relation=values["relation"]):
            errors["unit"] = _("The customer is already linked to this unit in this role.")
    if errors:
        return await _render_customer(request, customer, link_values=values, errors=errors, status_code=422)
    await CustomerUnit.create(
        project_id=customer.project_id, customer=customer, unit=unit, relation=values["relation"],
        start_date=start, end_date=end,
    )
    return redirect(request, plugin_url(request, "core", f"customers/{customer.id}"), _("Unit linked."))


async def customer_end_link(request: Request) -> Response:
    """End a customer's relation to a unit on a date (kept as history, not deleted)."""
    customer: Customer = request.state.record
    link = await CustomerUnit.get_or_none(id=request.path_params["link"], customer_id=customer.id)
    if link is None:
        raise HTTPException(404)
    raw = {k: v for k, v in (await request.form()).multi_items() if k != "csrftoken"}
    errors: dict[str, str] = {}
    end = _date_field(raw, "end_date", errors) or (None if errors else _today(request))
    if end and link.start_date and end < link.start_date:
        errors["end_date"] = _("The end date is before the start date.")
    if errors:
        return await _render_customer(request, customer, errors={f"end_{link.id}": errors["end_date"]}, status_code=422)
    link.end_date = end
    await link.save()
    return redirect(request, plugin_url(request, "core", f"customers/{customer.id}"), _("Relation ended."))


# Unit page -------------------------------------------------------------------------------


async def unit_detail(request: Request) -> Response:
    unit: Unit = request.state.record
    await unit.fetch_related("building")
    links = await CustomerUnit.filter(unit_id=unit.id).select_related("customer").order_by("end_date", "relation")
    today = _today(request)
    return await render(
        request,
        "core/units/detail.html",
        {
            "unit": unit,
            "use": UnitUse.CHOICES.get(unit.use, unit.use),
            "links": [(link, _current(link, today)) for link in links],
            "relation_labels": Relation.CHOICES,
        },
    )
