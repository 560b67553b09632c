"""Pages of the work-order half of the hotline: intake, lists, detail with its actions, callbacks, categories."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from tortoise.expressions import Q

from core.api import (
    Column,
    Customer,
    CustomerPhone,
    Department,
    Filter,
    ListView,
    Project,
    Unit,
    User,
    attachments,
    create_customer,
    ctx,
    customer_search_q,
    errors_for,
    form_data,
    gettext,
    lazy_gettext as _,
    normalize_phone,
    PhoneError,
    plugin_url,
    redirect,
    render,
    timeline,
    transaction,
    try_normalize_phone,
    unscoped,
)
from plugins.hotline import workorders as wo
from plugins.hotline.models import (
    Assignment,
    CallbackTask,
    Category,
    ContactChannel,
    Escalation,
    Kind,
    Level,
    Outcome,
    Status,
    TaskStatus,
    Urgency,
    WorkOrder,
)

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _base(request: Request) -> str:
    return plugin_url(request, "hotline")


def _order_link(order, request) -> str:
    return f"{_base(request)}orders/{order.id}"


def _overdue_badge(order, request) -> str:
    return gettext("Overdue") if wo.overdue(order, wo.now()) else ""


def _apply_overdue(queryset, value: bool):
    at = wo.now()
    late = Q(Q(responded_at__isnull=True, response_due__lt=at), Q(resolution_due__lt=at), join_type="OR")
    return queryset.filter(late, status__in=Status.OPEN) if value else queryset.filter(~late | ~Q(status__in=Status.OPEN))


async def _category_choices(request: Request) -> list[tuple[int, str]]:
    return [(c.id, label) for c, label in await category_tree()]


ORDER_COLUMNS = [
    Column("number", _("Number"), sort=True, link=_order_link),
    Column("received_at", _("Received"), format="datetime", sort=True),
    Column("kind", _("Type"), format="choice", choices=Kind.CHOICES, sort=True),
    Column("category", _("Category"), field="category.name", sort="category__name"),
    Column("subject", _("Subject"), wrap=True),
    Column("customer", _("Customer"), field="customer.name", sort="customer__name"),
    Column("unit", _("Unit"), field="unit.code", sort="unit__code"),
    Column("urgency", _("Urgency"), format="choice", choices=Urgency.CHOICES, sort=True),
    Column("status", _("Status"), format="choice", choices=Status.CHOICES, sort=True),
    Column("resolution_due", _("Resolution due"), format="datetime", sort=True),
    Column("overdue", _("SLA"), value=_overdue_badge, export=False),
]
ORDER_FILTERS = [
    Filter.choice("status", _("Status"), Status.CHOICES),
    Filter.choice("kind", _("Type"), Kind.CHOICES),
    Filter.choice("category", _("Category"), _category_choices, field="category_id"),
    Filter.choice("urgency", _("Urgency"), Urgency.CHOICES),
    Filter.boolean("overdue", _("Overdue"), apply=_apply_overdue),
    Filter.date_range("received", _("Received"), field="received_at"),
]

orders_list = ListView(
    "work-orders", _("Work orders"), model=WorkOrder, columns=ORDER_COLUMNS, filters=ORDER_FILTERS,
    search=["number", "subject", "customer__name", "unit__code"], select_related=["category", "customer", "unit"],
    default_sort="-received_at", search_placeholder=_("Number, subject, customer or unit"),
)


def _my_orders(request: Request):
    return WorkOrder.filter(request.state.hotline_mine)


my_orders_list = ListView(
    "my-work-orders", _("My work orders"), query=_my_orders, columns=ORDER_COLUMNS, filters=ORDER_FILTERS[1:],
    search=["number", "subject", "unit__code"], select_related=["category", "customer", "unit"],
    default_sort="resolution_due",
)


def _task_link(task, request) -> str:
    return f"{_base(request)}callbacks/{task.id}"


def _callbacks(request: Request):
    # The queue shows what is still to call unless a status is asked for.
    if request.query_params.get("status"):
        return CallbackTask.all()
    return CallbackTask.filter(status=TaskStatus.OPEN)


callbacks_list = ListView(
    "callbacks", _("Callback queue"), query=_callbacks,
    columns=[
        Column("due_at", _("Due"), format="datetime", sort=True, link=_task_link),
        Column("reason", _("Reason"), wrap=True, link=_task_link),
        Column("customer", _("Customer"), field="customer.name", sort="customer__name"),
        Column("unit", _("Unit"), field="unit.code"),
        Column("assignee", _("Agent"), field="assignee.display_name"),
        Column("attempts", _("Attempts"), format="number", sort=True),
        Column("status", _("Status"), format="choice", choices=TaskStatus.CHOICES, sort=True),
        Column("outcome", _("Outcome"), format="choice", choices={"": "", **Outcome.CHOICES}),
    ],
    filters=[Filter.choice("status", _("Status"), TaskStatus.CHOICES)],
    search=["reason", "customer__name", "phone"], select_related=["customer", "unit", "assignee"],
    default_sort="due_at",
)


# Lists --------------------------------------------------------------------------


async def order_list(request: Request) -> Response:
    actions = []
    if ctx(request).principal.can("hotline.intake", ctx(request).project.id):
        actions.append((gettext("Record a contact"), _base(request) + "intake"))
    return await orders_list.response(request, actions=actions)


async def my_order_list(request: Request) -> Response:
    request.state.hotline_mine = await wo.mine_q(ctx(request).principal.id)
    return await my_orders_list.response(request)


async def callback_queue(request: Request) -> Response:
    return await callbacks_list.response(request)


# Intake ------------------------------------------------------------------------------


async def category_tree() -> list[tuple[Category, str]]:
    """Active categories in tree order, labelled with their path ("报修 › 水电")."""
    categories = await Category.filter(is_active=True).order_by("name", "id")
    children: dict[int | None, list[Category]] = {}
    for category in categories:
        children.setdefault(category.parent_id, []).append(category)
    result: list[tuple[Category, str]] = []

    def walk(parent_id, prefix):
        for category in children.get(parent_id, []):
            label = f"{prefix} › {category.name}" if prefix else category.name
            result.append((category, label))
            walk(category.id, label)

    walk(None, "")
    return result


async def _customer_matches(query: str) -> list[Customer]:
    """Customers by phone (any spelling), name, pinyin or initials, or a unit code they are linked to."""
    query = query.strip()
    if len(query) < 2:
        return []
    condition = customer_search_q(query)
    units = await Unit.filter(code__iexact=query).values_list("id", flat=True)
    if units:
        condition |= Q(unit_links__unit_id__in=list(units))
    return await Customer.filter(condition).distinct().order_by("name", "id").limit(10).prefetch_related(
        "phones", "unit_links__unit"
    )


async def customer_lookup(request: Request) -> Response:
    """The intake's live customer search (htmx fragment)."""
    query = request.query_params.get("lookup", request.query_params.get("q", ""))
    matches = await _customer_matches(query)
    return await render(request, "hotline/_customer_matches.html", {"matches": matches, "q": query, "chosen": ""})


def _intake_defaults(request: Request) -> dict[str, str]:
    phone = request.query_params.get("phone", "")
    return {"channel": ContactChannel.PHONE, "kind": Kind.REPAIR, "urgency": Urgency.NORMAL, "caller_phone": phone,
            "lookup": phone, "customer_id": request.query_params.get("customer", "")}


async def _render_intake(request: Request, values: dict, errors: dict | None = None, status_code: int = 200,
                         matches: list | None = None) -> Response:
    context = ctx(request)
    head_office_estates = []
    if context.principal.is_head_office:
        with unscoped():
            head_office_estates = await Project.filter(is_active=True, modules__module="hotline",
                                                       modules__enabled=True).order_by("code")
    if matches is None:
        matches = await _customer_matches(values.get("lookup", "")) if values.get("lookup") else []
    chosen = None
    if values.get("customer_id", "").isdigit():
        chosen = await Customer.get_or_none(id=int(values["customer_id"]))
        if chosen and chosen not in matches:
            matches = [chosen, *matches]
            await Customer.fetch_for_list(matches, "phones", "unit_links__unit")
    return await render(request, "hotline/intake.html", {
        "values": values, "errors": errors or {}, "matches": matches, "chosen": values.get("customer_id", ""),
        "categories": [(c.id, label) for c, label in await category_tree()],
        "kinds": list(Kind.CHOICES.items()), "urgencies": list(Urgency.CHOICES.items()),
        "channels": list(ContactChannel.CHOICES.items()), "estates": head_office_estates,
        "base": _base(request),
    }, status_code=status_code)


async def intake_page(request: Request) -> Response:
    return await _render_intake(request, _intake_defaults(request))


async def _intake_customer(values: dict, project_id: int, errors: dict) -> Customer | None:
    """The chosen customer, or a new one from the form's name and phone (created by the caller's transaction)."""
    if values.get("customer_id", "").isdigit():
        customer = await Customer.get_or_none(id=int(values["customer_id"]))
        if customer is None:
            errors["customer"] = gettext("Find the customer or create one.")
        return customer
    name, phone, email = values.get("new_name", "").strip(), values.get("new_phone", "").strip(), values.get("new_email", "").strip()
    if not name:
        errors["customer"] = gettext("Find the customer or create one.")
        errors["new_name"] = gettext("Enter the customer's name.")
        return None
    if len(name) > 64:
        errors["new_name"] = gettext("At most %(n)s characters.", n=64)
    if not phone:
        errors["new_phone"] = gettext("Enter a phone number, e.g. 138 0013 8000.")
    else:
        try:
            normalize_phone(phone)
        except PhoneError:
            errors["new_phone"] = gettext("“%(value)s” is not a valid phone number.", value=phone)
    if email and not EMAIL_RE.match(email):
        errors["new_email"] = gettext("Enter an email address such as name@example.com.")
    return None


async def intake_submit(request: Request) -> Response:
    context = ctx(request)
    project = context.project
    values = await form_data(request)
    errors: dict[str, str] = {}
    customer = await _intake_customer(values, project.id, errors)
    category = None
    if values.get("category", "").isdigit():
        category = await Category.get_or_none(id=int(values["category"]), is_active=True)
    unit = None
    unit_code = values.get("unit", "").strip()
    if unit_code:
        unit = await Unit.get_or_none(code=unit_code)
        if unit is None:
            errors["unit"] = gettext("There is no unit %(code)s in this estate.", code=unit_code)
    caller = values.get("caller_phone", "").strip()
    caller_number = ""
    if caller:
        caller_number = try_normalize_phone(caller) or ""
        if not caller_number:
            errors["caller_phone"] = gettext("“%(value)s” is not a valid phone number.", value=caller)
    resolution = values.get("resolution", "").strip()
    data = wo.Intake(
        customer=customer or Customer(project_id=project.id), category=category, kind=values.get("kind", ""),
        urgency=values.get("urgency", ""), channel=values.get("channel", ""), subject=values.get("subject", ""),
        description=values.get("description", ""), unit=unit, caller_phone=caller_number,
    )
    intake_errors = wo.check_intake(data, project.id)
    intake_errors.pop("customer", None)  # a customer to create is checked above
    errors = {**intake_errors, **errors}
    if errors:
        return await _render_intake(request, values, errors, 422)
    try:
        async with transaction():
            if customer is None:
                data.customer = await create_customer(
                    project, values["new_name"].strip(), [values["new_phone"]], email=values.get("new_email", "").strip(),
                    preferred_channel="email" if values.get("new_email", "").strip() and values.get("prefers_email") else "phone",
                )
            order = await wo.create_order(project, data, author=context.principal)
            if resolution:
                order = await wo.resolve_on_spot(order, resolution, customer_confirmed=bool(values.get("confirmed")),
                                                 author=context.principal)
    except wo.WorkOrderError as exc:
        return await _render_intake(request, values, exc.errors, 422)
    return redirect(request, _order_link(order, request), gettext("Work order %(number)s recorded.", number=order.number))


async def head_office_intake(request: Request) -> Response:
    """Head-office hotline agents first choose the estate the caller lives in."""
    principal = ctx(request).principal
    with unscoped():
        estates = await Project.filter(id__in=ctx(request).project_ids, modules__module="hotline",
                                       modules__enabled=True).order_by("code")
    estates = [e for e in estates if principal.can("hotline.intake", e.id)]
    if not estates:
        raise HTTPException(404)
    return await render(request, "hotline/choose_estate.html", {"estates": estates})


# Detail and actions ---------------------------------------------------------------


async def _detail_context(request: Request, order: WorkOrder) -> dict:
    context = ctx(request)
    principal, project = context.principal, context.project
    # Joined: one statement for the order and what it points to, one per list below (not one per relation).
    order = await WorkOrder.filter(id=order.id).select_related(
        "category", "customer", "unit", "supervisor", "created_by").get()
    parts = await Assignment.filter(order_id=order.id).select_related("department", "assignee", "done_by")
    mine = {a.id for a in await wo.open_assignments_for(order, principal.id)}
    can = {code: principal.can(f"hotline.{code}", project.id) for code in
           ("intake", "dispatch", "work", "callback", "supervise", "manage")}
    phones = await CustomerPhone.filter(customer_id=order.customer_id).values_list("number", flat=True)
    open_task = await CallbackTask.filter(order_id=order.id, status=TaskStatus.OPEN).first()
    return {
        "order": order, "parts": parts, "mine": mine, "can": can, "phones": phones, "open_task": open_task,
        "on_page": forms_on_page(order, parts, mine, can),
        "materials": await order.materials.all().select_related("recorded_by"),
        "callbacks": await CallbackTask.filter(order_id=order.id).order_by("-id").select_related("done_by"),
        "Status": Status, "Level": Level, "Escalation": Escalation, "Kind": Kind, "Urgency": Urgency,
        "Outcome": Outcome, "ContactChannel": ContactChannel,
        "departments": [(d.id, d.name) for d in await Department.all()],
        "staff": await _staff_choices(project.id, "hotline.work"),
        "supervisors": await _staff_choices(project.id, "hotline.supervise"),
        "overdue": wo.overdue(order, wo.now()),
        "base": _base(request),
        **await timeline.context(request, order),
        **await attachments.context(request, order),
    }


def forms_on_page(order: WorkOrder, parts: list[Assignment], mine: set[int], can: dict[str, bool]) -> set[str]:
    """The forms the order's page offers in its state (order_detail.html shows exactly these);
    `done-<assignment id>` for each part the user may mark done."""
    shown: set[str] = set()
    works = bool(mine) or can["dispatch"] or can["supervise"]
    if order.status in (Status.DISPATCHED, Status.IN_PROGRESS):
        shown |= {f"done-{part.id}" for part in parts if (part.id in mine or can["supervise"]) and not part.done_at}
    if order.status == Status.DISPATCHED and works:
        shown.add("start")
    if order.status in Status.OPEN and order.status != Status.NEW and works:
        shown.add("material")
    if order.status == Status.NEW:
        shown |= {name for name, may in (("dispatch", can["dispatch"]), ("resolve", can["intake"])) if may}
    if order.status == Status.CALLBACK and can["callback"]:
        shown.add("close")
    if order.status in (Status.CALLBACK, Status.CLOSED) and can["dispatch"]:
        shown.add("reopen")
    return shown


async def _staff_choices(project_id: int, permission: str) -> list[tuple[int, str]]:
    return [(u.id, str(u)) for u in await wo.users_with_permission(project_id, permission)]


async def order_detail(request: Request, errors: dict | None = None, values: dict | None = None,
                       status_code: int = 200, *, form: str = "") -> Response:
    """The order's page; after a refused `form` its errors and values show with that form only."""
    order = request.state.record
    data = await _detail_context(request, order)
    data.update(form=form, errors=errors_for(errors, form, data["on_page"]), values=values or {})
    return await render(request, "hotline/order_detail.html", data, status_code=status_code)


def _parse_local(value: str, tz: str) -> datetime | None:
    """A `datetime-local` input in the estate's time zone, as aware UTC; None when empty; ValueError if garbled."""
    value = (value or "").strip()
    if not value:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(tz))


async def _act(request: Request, form: str, action, values: dict | None = None, message: str = "") -> Response:
    """Run a transition; a refusal re-renders the page with the message next to the field of `form` (422)."""
    try:
        await action()
    except wo.WorkOrderError as exc:
        request.state.record = await WorkOrder.get(id=request.state.record.id)
        return await order_detail(request, exc.errors, values, 422, form=form)
    return redirect(request, _order_link(request.state.record, request), message)


async def dispatch_submit(request: Request) -> Response:
    context = ctx(request)
    values = await form_data(request)
    form = await request.form()
    errors: dict[str, str] = {}
    try:
        due = _parse_local(values.get("due_at", ""), context.project.timezone)
    except ValueError:
        due, errors["due_at"] = None, gettext("Enter a date and time, e.g. 2026-10-09 17:00.")
    level = Level.COORDINATED if values.get("level") == str(Level.COORDINATED) else Level.DISPATCHED
    department_ids = [int(v) for v in form.getlist("department") if str(v).isdigit()]
    departments = list(await Department.filter(id__in=department_ids)) if department_ids else []
    if len(departments) != len(set(department_ids)):
        errors["department"] = gettext("Choose departments of this estate.")
    assignee = None
    staff_ids = dict(await _staff_choices(context.project.id, "hotline.work"))
    if values.get("assignee", "").isdigit():
        if int(values["assignee"]) not in staff_ids:
            errors["assignee"] = gettext("Choose a member of staff of this estate.")
        else:
            assignee = await User.get(id=int(values["assignee"]))
    supervisor = None
    if values.get("supervisor", "").isdigit():
        if int(values["supervisor"]) not in dict(await _staff_choices(context.project.id, "hotline.supervise")):
            errors["supervisor"] = gettext("Choose a supervisor of this estate.")
        else:
            supervisor = await User.get(id=int(values["supervisor"]))
    if errors:
        return await order_detail(request, errors, values, 422, form="dispatch")
    instructions = values.get("instructions", "")
    if departments:
        plans = [wo.AssignmentPlan(d, assignee if len(departments) == 1 else None, due, instructions) for d in departments]
    else:
        plans = [wo.AssignmentPlan(None, assignee, due, instructions)] if assignee else []
    order = request.state.record
    return await _act(request, "dispatch", lambda: wo.dispatch(order, plans, level=level, supervisor=supervisor,
                                                               author=context.principal), values, gettext("Dispatched."))


async def start_submit(request: Request) -> Response:
    order, principal = request.state.record, ctx(request).principal
    if not await _may_work(request, order):
        raise HTTPException(403)
    return await _act(request, "start", lambda: wo.start(order, author=principal), message=gettext("Work started."))


async def _may_work(request: Request, order: WorkOrder) -> bool:
    """Department staff act on their own parts; dispatchers and supervisors on any."""
    context = ctx(request)
    if context.principal.can("hotline.dispatch", context.project.id) or context.principal.can("hotline.supervise", context.project.id):
        return True
    return bool(await wo.open_assignments_for(order, context.principal.id))


async def assignment_done_submit(request: Request) -> Response:
    order, principal = request.state.record, ctx(request).principal
    assignment = await Assignment.get_or_none(id=request.path_params["assignment"], order_id=order.id)
    if assignment is None:
        raise HTTPException(404)
    mine = {a.id for a in await wo.open_assignments_for(order, principal.id)}
    if assignment.id not in mine and not principal.can("hotline.supervise", ctx(request).project.id):
        raise HTTPException(403)
    values = await form_data(request)
    return await _act(request, f"done-{assignment.id}",
                      lambda: wo.complete_assignment(assignment, values.get("report", ""), author=principal),
                      values, gettext("Marked done."))


async def material_submit(request: Request) -> Response:
    order, principal = request.state.record, ctx(request).principal
    if not await _may_work(request, order):
        raise HTTPException(403)
    values = await form_data(request)
    return await _act(request, "material", lambda: wo.add_material(order, values.get("material", ""), values.get("quantity", ""),
                                                                   values.get("unit_of_measure", ""), author=principal),
                      values, gettext("Material recorded."))


async def resolve_submit(request: Request) -> Response:
    order, principal = request.state.record, ctx(request).principal
    values = await form_data(request)
    return await _act(request, "resolve", lambda: wo.resolve_on_spot(order, values.get("resolution", ""),
                                                                     customer_confirmed=bool(values.get("confirmed")),
                                                                     author=principal),
                      values, gettext("Answered on the spot."))


async def close_submit(request: Request) -> Response:
    order, principal = request.state.record, ctx(request).principal
    return await _act(request, "close", lambda: wo.close(order, author=principal), message=gettext("Closed."))


async def reopen_submit(request: Request) -> Response:
    order, principal = request.state.record, ctx(request).principal
    values = await form_data(request)
    return await _act(request, "reopen", lambda: wo.reopen(order, values.get("reason", ""), values.get("to", Status.DISPATCHED),
                                                           author=principal), values, gettext("Re-opened."))


# Callbacks ---------------------------------------------------------------------------


async def _render_task(request: Request, task: CallbackTask, errors=None, values=None, status_code=200) -> Response:
    await task.fetch_related("customer", "unit", "order", "assignee", "done_by")
    outcomes = Outcome.VERDICTS + (Outcome.NOT_REACHED,) if task.order_id else (Outcome.REACHED, Outcome.NOT_REACHED)
    return await render(request, "hotline/callback.html", {
        "task": task, "errors": errors or {}, "values": values or {}, "base": _base(request),
        "outcomes": [(o, Outcome.CHOICES[o]) for o in outcomes], "TaskStatus": TaskStatus, "Outcome": Outcome,
    }, status_code=status_code)


async def callback_page(request: Request) -> Response:
    return await _render_task(request, request.state.record)


async def callback_submit(request: Request) -> Response:
    task, principal = request.state.record, ctx(request).principal
    values = await form_data(request)
    try:
        await wo.record_callback(task, values.get("outcome", ""), values.get("comment", ""),
                                 close=bool(values.get("close")), author=principal)
    except wo.WorkOrderError as exc:
        return await _render_task(request, await CallbackTask.get(id=task.id), exc.errors, values, 422)
    target = f"{_base(request)}orders/{task.order_id}" if task.order_id else _base(request) + "callbacks"
    return redirect(request, target, gettext("Callback recorded."))


# Categories --------------------------------------------------------------------------


async def category_list(request: Request) -> Response:
    return await render(request, "hotline/categories.html", {
        "tree": await category_tree(), "inactive": await Category.filter(is_active=False).order_by("name"),
        "base": _base(request), "urgencies": list(Urgency.CHOICES.items()), "kinds": Kind.CHOICES,
        "sla_hours": wo.sla_hours,
    })


async def _render_category(request: Request, category: Category | None, values: dict, errors=None, status_code=200):
    parents = [(c.id, label) for c, label in await category_tree() if category is None or c.id != category.id]
    return await render(request, "hotline/category_form.html", {
        "category": category, "values": values, "errors": errors or {}, "parents": parents,
        "kinds": list(Kind.CHOICES.items()), "urgencies": list(Urgency.CHOICES.items()), "base": _base(request),
    }, status_code=status_code)


def _category_values(category: Category | None) -> dict:
    values = {"name": "", "parent": "", "kind": Kind.REPAIR, "is_active": "1"}
    if category is not None:
        values.update(name=category.name, parent=str(category.parent_id or ""), kind=category.kind,
                      is_active="1" if category.is_active else "")
    for urgency in Urgency.CHOICES:
        response, resolution = wo.sla_hours(category, urgency) if category else wo.DEFAULT_SLA[urgency]
        values[f"response_{urgency}"], values[f"resolution_{urgency}"] = f"{response:g}", f"{resolution:g}"
    return values


async def category_new(request: Request) -> Response:
    return await _render_category(request, None, _category_values(None))


async def category_edit(request: Request) -> Response:
    return await _render_category(request, request.state.record, _category_values(request.state.record))


async def category_save(request: Request) -> Response:
    category = getattr(request.state, "record", None)
    values = await form_data(request)
    errors: dict[str, str] = {}
    name = values.get("name", "").strip()
    if not name:
        errors["name"] = gettext("Enter the category's name.")
    elif len(name) > 64:
        errors["name"] = gettext("At most %(n)s characters.", n=64)
    parent = None
    if values.get("parent", "").isdigit():
        parent = await Category.get_or_none(id=int(values["parent"]))
        if parent is None or (category is not None and await _descends_from(parent, category)):
            errors["parent"] = gettext("Choose another parent: a category cannot sit under itself.")
    if values.get("kind") not in Kind.CHOICES:
        errors["kind"] = gettext("Choose a type from the list.")
    sla: dict[str, dict[str, float]] = {}
    for urgency in Urgency.CHOICES:
        hours = {}
        for part in ("response", "resolution"):
            key = f"{part}_{urgency}"
            try:
                hours[part] = float(values.get(key, "").replace(",", "."))
                if not 0 < hours[part] <= 8760:
                    raise ValueError
            except ValueError:
                errors[key] = gettext("Enter hours between 0 and 8760, e.g. 4 or 0.5.")
        if len(hours) == 2 and hours["response"] > hours["resolution"]:
            errors[f"response_{urgency}"] = gettext("The response cannot be due after the resolution.")
        sla[urgency] = hours
    if not errors:
        clash = Category.filter(name=name, parent_id=parent.id if parent else None)
        if category is not None:
            clash = clash.exclude(id=category.id)
        if await clash.exists():
            errors["name"] = gettext("There is already a category with this name here.")
    if errors:
        return await _render_category(request, category, values, errors, 422)
    fields = {"name": name, "parent": parent, "kind": values["kind"], "sla": sla, "is_active": bool(values.get("is_active"))}
    async with transaction():
        if category is None:
            await Category.create(project_id=ctx(request).project.id, **fields)
        else:
            category.update_from_dict(fields)
            await category.save()
    return redirect(request, _base(request) + "categories", gettext("Category saved."))


async def _descends_from(candidate: Category, category: Category) -> bool:
    """Whether `candidate` is `category` or sits somewhere below it."""
    seen = set()
    node = candidate
    while node is not None and node.id not in seen:
        if node.id == category.id:
            return True
        seen.add(node.id)
        node = await Category.get_or_none(id=node.parent_id) if node.parent_id else None
    return False
