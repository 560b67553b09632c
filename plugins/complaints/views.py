"""Pages of the complaints: case list and detail with the step forms, categories, analysis, defects, survey."""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from tortoise.expressions import Q

from core.api import (
    Column, Customer, CustomerUnit, Department, Filter, ListView, Unit, User, attachments, ctx, customer_search_q,
    form_data, gettext, lazy_gettext as _, links, redirect, render, route, timeline,
)
from core import i18n
from plugins.complaints import analysis, cases as svc
from plugins.complaints.models import (
    Case, Category, Channel, Classification, DefectType, Escalation, Party, RootCause, Severity, Step, Survey,
)

CASE = "complaints.Case"


def project_routes():
    view, handle = "complaints.view", "complaints.handle"
    manage, analyse = "complaints.manage", "complaints.analyse"
    return [
        route("/", case_list, name="complaints_cases", permission=view),
        route("/new", new_case, name="complaints_new", permission="complaints.create"),
        route("/new", create_case, methods=["POST"], permission="complaints.create"),
        route("/new/customers", customer_lookup, permission="complaints.create"),
        route("/cases/{id:int}", case_detail, name="complaints_case", permission=view, model=CASE),
        route("/cases/{id:int}/steps/{step}", step_submit, methods=["POST"], permission=handle, model=CASE),
        route("/cases/{id:int}/assign", assign_submit, methods=["POST"], permission="complaints.assign", model=CASE),
        route("/cases/{id:int}/review", review_submit, methods=["POST"], permission="complaints.close", model=CASE),
        route("/categories", category_list, name="complaints_categories", permission=manage),
        route("/categories/new", category_form, permission=manage),
        route("/categories/new", category_save, methods=["POST"], permission=manage),
        route("/categories/{id:int}", category_form, permission=manage, model="complaints.Category"),
        route("/categories/{id:int}", category_save, methods=["POST"], permission=manage, model="complaints.Category"),
        route("/analysis", analysis_page, name="complaints_analysis", permission=analyse),
        route("/analysis.xlsx", analysis_export, permission=analyse),
    ]


def global_routes():
    return [
        route("/defects", defects_page, name="complaints_defects", permission="complaints.analyse"),
        route("/defects.xlsx", defects_export, permission="complaints.analyse"),
        route("/survey/{token}", survey_page, name="complaints_survey", public=True),
        route("/survey/{token}", survey_submit, methods=["POST"], public=True),
    ]


def _base(request: Request) -> str:
    return f"/p/{ctx(request).project.code}/complaints/"


def _can(request: Request) -> dict[str, bool]:
    context = ctx(request)
    project_id = context.project.id if context.project else None
    return {p: context.principal.can(f"complaints.{p}", project_id)
            for p in ("view", "create", "handle", "assign", "close", "analyse", "manage")}


# Case list -------------------------------------------------------------------------------


def _state_filter(queryset, value):
    at = svc.now()
    if value == "open":
        return queryset.filter(step__in=list(Step.OPEN))
    if value == "overdue":
        return queryset.filter(step__in=list(Step.OPEN), step_due_at__lt=at)
    if value == "review":
        return queryset.filter(needs_review=True)
    if value == "repeat":
        return queryset.filter(is_repeat=True)
    return queryset.filter(step=Step.CLOSED)


async def _category_choices(request: Request):
    return [(c.id, c.name) for c in await Category.all().order_by("name")]


cases_list = ListView(
    "complaints", _("Complaints"), model=Case,
    columns=[
        Column("number", _("Number"), sort=True, link=lambda c: f"complaints/cases/{c.id}"),
        Column("received_at", _("Received"), format="datetime", sort=True),
        Column("customer", _("Customer"), field="customer.name"),
        Column("unit", _("Unit"), field="unit.code", sort="unit__code"),
        Column("subject", _("Subject"), wrap=True),
        Column("category", _("Category"), field="category.name"),
        Column("severity", _("Severity"), format="choice", choices=Severity.CHOICES, sort=True),
        Column("step", _("Stage"), format="choice", choices=Step.CHOICES, sort=True),
        Column("step_due_at", _("Step due"), format="datetime", sort=True),
        Column("department", _("Department"), field="department.name"),
        Column("is_repeat", _("Repeat"), format="boolean"),
    ],
    filters=[
        Filter.choice("state", _("State"), {
            "open": _("Open"), "overdue": _("Overdue"), "review": _("Waiting for review"), "repeat": _("Repeats"),
            "closed": _("Closed"),
        }, apply=_state_filter),
        Filter.choice("severity", _("Severity"), Severity.CHOICES),
        Filter.choice("category", _("Category"), _category_choices, field="category_id"),
        Filter.choice("step", _("Stage"), Step.CHOICES),
        Filter.date_range("received", _("Received"), field="received_at"),
    ],
    search=["number", "subject", "customer__name", "unit__code"],
    search_placeholder=_("Number, subject, customer or unit"),
    select_related=["customer", "unit", "category", "department"],
    default_sort="-received_at",
)


async def case_list(request: Request) -> Response:
    actions = [(gettext("New complaint"), _base(request) + "new")] if _can(request)["create"] else []
    return await cases_list.response(request, actions=actions)


# Opening a case --------------------------------------------------------------------------


async def _matches(query: str) -> list[Customer]:
    query = query.strip()
    if len(query) < 2:
        return []
    q = customer_search_q(query)
    unit_ids = await Unit.filter(code__icontains=query).values_list("id", flat=True)
    if unit_ids:
        owners = await CustomerUnit.filter(unit_id__in=list(unit_ids)).values_list("customer_id", flat=True)
        q = q | Q(id__in=list(owners))
    found = await Customer.filter(q).order_by("name").limit(10)
    await Customer.fetch_for_list(found, "phones", "unit_links__unit")
    return found


async def customer_lookup(request: Request) -> Response:
    """The live customer search of the new-complaint form (htmx fragment)."""
    query = request.query_params.get("lookup", "")
    return await render(request, "complaints/_customer_matches.html",
                        {"matches": await _matches(query), "q": query, "chosen": ""})


async def _render_new(request: Request, values: dict, errors: dict | None = None, status_code: int = 200) -> Response:
    matches = await _matches(values.get("lookup", "")) if values.get("lookup") else []
    if values.get("customer_id", "").isdigit():
        chosen = await Customer.get_or_none(id=int(values["customer_id"]))
        if chosen and chosen not in matches:
            matches = [chosen, *matches]
            await Customer.fetch_for_list(matches, "phones", "unit_links__unit")
    return await render(request, "complaints/new.html", {
        "values": values, "errors": errors or {}, "matches": matches, "chosen": values.get("customer_id", ""),
        "Channel": Channel, "Severity": Severity, "categories": await _category_choices(request), "base": _base(request),
    }, status_code=status_code)


async def new_case(request: Request) -> Response:
    values = {"channel": Channel.PHONE, "severity": Severity.NORMAL,
              "customer_id": request.query_params.get("customer", ""), "unit": request.query_params.get("unit", "")}
    return await _render_new(request, values)


async def create_case(request: Request) -> Response:
    form = await form_data(request)
    project = ctx(request).project
    errors: dict[str, str] = {}
    customer = None
    if (form.get("customer_id") or "").isdigit():
        customer = await Customer.get_or_none(id=int(form["customer_id"]))
    unit = None
    code = (form.get("unit") or "").strip()
    if code:
        unit = await Unit.get_or_none(code=code)
        if unit is None:
            errors["unit"] = gettext("No unit %(code)s in this estate.", code=code)
    category = None
    if (form.get("category") or "").isdigit():
        category = await Category.get_or_none(id=int(form["category"]), is_active=True)
    intake = svc.Intake(customer=customer, unit=unit, channel=form.get("channel", ""), subject=form.get("subject", ""),
                        description=form.get("description", ""), category=category,
                        severity=form.get("severity") or Severity.NORMAL)
    errors = {**svc.check_intake(intake, project.id), **errors}
    if form.get("category") and category is None:
        errors["category"] = gettext("Choose a category of this estate.")
    if errors:
        return await _render_new(request, form, errors, status_code=422)
    case = await svc.open_case(project, intake, author=ctx(request).principal)
    message = gettext("Complaint %(number)s received.", number=case.number)
    if case.is_repeat:
        message += " " + gettext("It repeats an earlier complaint.")
    return redirect(request, f"{_base(request)}cases/{case.id}", message)


# The case --------------------------------------------------------------------------------


async def _staff(project_id: int) -> list[tuple[int, str]]:
    ids = await svc.staff_ids(project_id)
    users = await User.filter(id__in=list(ids), is_active=True).order_by("display_name")
    return [(u.id, str(u)) for u in users]


async def _detail(request: Request, case: Case, *, values: dict | None = None, errors: dict | None = None,
                  status_code: int = 200) -> Response:
    await case.fetch_related("customer", "unit", "category", "department", "assignee", "received_by", "closed_by")
    project = ctx(request).project
    step = svc.next_step(case)
    can = _can(request)
    may_do_step = step is not None and ctx(request).principal.can(svc.step_permission(step), project.id)
    related = await svc.related_cases(case)
    surveys = await Survey.filter(case_id=case.id).order_by("-id")
    data = {
        "case": case, "next": step, "may_do_step": may_do_step, "can": can, "base": _base(request),
        "values": values or _step_defaults(case, step, project), "errors": errors or {},
        "related": related, "surveys": surveys, "overdue": case.is_open and case.step_due_at and case.step_due_at < svc.now(),
        "departments": [(d.id, d.name) for d in await Department.filter(project_id=project.id)],
        "staff": await _staff(project.id), "categories": await _category_choices(request),
        "progress": [(s, Step.ACTIONS[s], Step.ORDER.index(s) <= Step.ORDER.index(case.step)) for s in Step.ORDER],
        "Step": Step, "Severity": Severity, "Channel": Channel, "RootCause": RootCause, "Party": Party,
        "Escalation": Escalation,
        **await timeline.context(request, case), **await attachments.context(request, case),
    }
    return await render(request, "complaints/case.html", data, status_code=status_code)


def _step_defaults(case: Case, step: str | None, project) -> dict:
    """Pre-filled values of the next step's form (what is known already)."""
    values: dict[str, str] = {}
    if step == Step.RECORDED:
        values = {"category": str(case.category_id or ""), "description": case.description, "contact": case.contact}
    elif step == Step.ASSESSED:
        values = {"severity": case.severity, "department": str(case.department_id or ""),
                  "assignee": str(case.assignee_id or "")}
    elif step == Step.PROPOSED and case.solution:
        values = {"solution": case.solution, "compensation": str(case.compensation or "")}
    return values


async def case_detail(request: Request) -> Response:
    return await _detail(request, request.state.record)


async def step_submit(request: Request) -> Response:
    case: Case = request.state.record
    step = request.path_params["step"]
    if step in Step.ORDER and not ctx(request).principal.can(svc.step_permission(step), ctx(request).project.id):
        raise HTTPException(403)
    form = await form_data(request)
    try:
        case = await svc.complete_step(case, step, form, author=ctx(request).principal)
    except svc.CaseError as exc:
        status = 409 if "__all__" in exc.errors else 422
        return await _detail(request, await Case.get(id=case.id), values=form, errors=exc.errors, status_code=status)
    return redirect(request, f"{_base(request)}cases/{case.id}", gettext("%(step)s: done.", step=Step.ACTIONS[step]))


async def assign_submit(request: Request) -> Response:
    case: Case = request.state.record
    form = await form_data(request)
    try:
        await svc.assign(case, form, author=ctx(request).principal)
    except svc.CaseError as exc:
        return await _detail(request, case, values=form, errors=exc.errors, status_code=422)
    return redirect(request, f"{_base(request)}cases/{case.id}", gettext("Assignment changed."))


async def review_submit(request: Request) -> Response:
    case: Case = request.state.record
    form = await form_data(request)
    try:
        await svc.review(case, form, author=ctx(request).principal)
    except svc.CaseError as exc:
        return await _detail(request, case, values=form, errors=exc.errors, status_code=422)
    return redirect(request, f"{_base(request)}cases/{case.id}", gettext("Review recorded."))


# Categories ------------------------------------------------------------------------------


async def category_list(request: Request) -> Response:
    categories = await Category.all().order_by("name")
    by_parent: dict[int | None, list[Category]] = {}
    for category in categories:
        by_parent.setdefault(category.parent_id, []).append(category)
    tree: list[tuple[int, Category]] = []

    def walk(parent_id, depth):
        for category in by_parent.get(parent_id, []):
            tree.append((depth, category))
            walk(category.id, depth + 1)

    walk(None, 0)
    return await render(request, "complaints/categories.html", {
        "tree": tree, "base": _base(request), "Classification": Classification, "DefectType": DefectType,
    })


async def _render_category(request: Request, category: Category | None, values: dict, errors: dict | None = None,
                           status_code: int = 200) -> Response:
    parents = [(c.id, c.name) for c in await Category.all().order_by("name")
               if category is None or c.id != category.id]
    return await render(request, "complaints/category_form.html", {
        "category": category, "values": values, "errors": errors or {}, "parents": parents, "base": _base(request),
        "Classification": Classification, "DefectType": DefectType,
    }, status_code=status_code)


async def category_form(request: Request) -> Response:
    category = getattr(request.state, "record", None)
    values = {"classification": Classification.OTHER, "is_active": "1"}
    if category is not None:
        values = {"name": category.name, "parent": str(category.parent_id or ""), "classification": category.classification,
                  "defect": category.defect, "is_active": "1" if category.is_active else ""}
    return await _render_category(request, category, values)


async def _is_descendant(candidate_id: int, category_id: int) -> bool:
    """Whether `candidate_id` lies under `category_id` (making it the parent would close a loop)."""
    parents = dict(await Category.all().values_list("id", "parent_id"))
    seen = set()
    current = candidate_id
    while current is not None and current not in seen:
        if current == category_id:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


async def category_save(request: Request) -> Response:
    category = getattr(request.state, "record", None)
    project = ctx(request).project
    form = await form_data(request)
    errors: dict[str, str] = {}
    name = (form.get("name") or "").strip()
    if not name:
        errors["name"] = gettext("Give the category a name.")
    elif len(name) > 64:
        errors["name"] = gettext("At most %(n)s characters.", n=64)
    elif await Category.filter(project_id=project.id, name=name).exclude(id=category.id if category else 0).exists():
        errors["name"] = gettext("This estate already has a category of that name.")
    parent = None
    raw = (form.get("parent") or "").strip()
    if raw:
        parent = await Category.get_or_none(id=int(raw)) if raw.isdigit() else None
        if parent is None:
            errors["parent"] = gettext("Choose a category of this estate.")
        elif category is not None and await _is_descendant(parent.id, category.id):
            errors["parent"] = gettext("A category cannot be placed under itself.")
    classification = form.get("classification", "")
    if classification not in Classification.CHOICES:
        errors["classification"] = gettext("Choose a classification.")
    defect = form.get("defect", "")
    if defect and defect not in DefectType.CHOICES:
        errors["defect"] = gettext("Choose a defect type, or none.")
    if errors:
        return await _render_category(request, category, form, errors, status_code=422)
    values = {"name": name, "parent": parent, "classification": classification, "defect": defect,
              "is_active": bool(form.get("is_active"))}
    if category is None:
        await Category.create(project_id=project.id, **values)
    else:
        await category.update_from_dict(values).save()
    return redirect(request, _base(request) + "categories", gettext("Category saved."))


# Analysis --------------------------------------------------------------------------------


def _period(request: Request, tz: str) -> tuple[date, date, dict[str, str]]:
    """The report's local dates from the query string (default: the last 12 months), with errors."""
    today = svc.now().astimezone(ZoneInfo(tz)).date()
    errors: dict[str, str] = {}
    parsed = []
    for key, default in (("from", today.replace(day=1) - timedelta(days=334)), ("to", today)):
        raw = request.query_params.get(key, "").strip()
        try:
            parsed.append(date.fromisoformat(raw) if raw else default)
        except ValueError:
            errors[key] = gettext("Enter a date.")
            parsed.append(default)
    start, end = parsed
    if start > end:
        errors["to"] = gettext("The end lies before the start.")
    return start, end, errors


def _bounds(start: date, end: date, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    return datetime.combine(start, time(0), tzinfo=zone), datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone)


async def _project_report(request: Request):
    project = ctx(request).project
    start, end, errors = _period(request, project.timezone)
    report = await analysis.report([project.id], *_bounds(start, end, project.timezone), tz=project.timezone)
    return report, start, end, errors


async def analysis_page(request: Request) -> Response:
    report, start, end, errors = await _project_report(request)
    charts = {attr: report.chart(attr, "line" if attr == "by_month" else "bar") for attr, _h in report.tables}
    return await render(request, "complaints/analysis.html", {
        "report": report, "start": start, "end": end, "errors": errors, "charts": charts, "base": _base(request),
        "query": request.url.query,
    }, status_code=422 if errors else 200)


def _xlsx(filename: str, sheets: list[tuple[str, list[list]]]) -> Response:
    from openpyxl import Workbook  # here, not at import: it is a large part of a process's start-up

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title[:31])
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return Response(out.getvalue(), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _summary_rows(report) -> list[list]:
    return [
        [gettext("Received"), report.total], [gettext("Open"), report.open], [gettext("Closed"), report.closed],
        [gettext("Overdue"), report.overdue], [gettext("Repeats"), report.repeats],
        [gettext("Average time to close (hours)"), report.average_close_hours],
        [gettext("Average satisfaction score"), report.average_score],
    ]


async def analysis_export(request: Request) -> Response:
    report, start, end, errors = await _project_report(request)
    if errors:
        return await analysis_page(request)
    sheets = [(gettext("Summary"), [[gettext("From"), start.isoformat()], [gettext("To"), end.isoformat()],
                                    *_summary_rows(report)])]
    for attr, heading in report.tables:
        sheets.append((heading, [[heading, gettext("Complaints")], *[[label, n] for label, n in getattr(report, attr)]]))
    return _xlsx(f"complaints-{ctx(request).project.code}-{start}-{end}.xlsx", sheets)


async def _defects(request: Request):
    tz = request.app.state.settings["i18n"]["default_timezone"]
    start, end, errors = _period(request, tz)
    # Head office sees every estate; others the estates they belong to where they may analyse.
    principal = ctx(request).principal
    project_ids = [pid for pid in ctx(request).project_ids if principal.can("complaints.analyse", pid)]
    rows = await analysis.defect_feedback(project_ids, *_bounds(start, end, tz))
    return rows, start, end, errors


async def defects_page(request: Request) -> Response:
    rows, start, end, errors = await _defects(request)
    chart = {"type": "bar", "labels": [r.label for r in rows],
             "datasets": [{"label": gettext("Complaints"), "data": [r.total for r in rows]}]}
    return await render(request, "complaints/defects.html", {
        "rows": rows, "start": start, "end": end, "errors": errors, "chart": chart, "query": request.url.query,
    }, status_code=422 if errors else 200)


async def defects_export(request: Request) -> Response:
    rows, start, end, errors = await _defects(request)
    if errors:
        return await defects_page(request)

    def joined(pairs):
        return ", ".join(f"{label} {n}" for label, n in pairs)

    table = [[gettext("Defect"), gettext("Complaints"), gettext("Open"), gettext("Estates"), gettext("Root causes"),
              gettext("Responsible parties")]]
    table += [[r.label, r.total, r.open, joined(r.by_project), joined(r.root_causes), joined(r.parties)] for r in rows]
    return _xlsx(f"defect-feedback-{start}-{end}.xlsx", [(gettext("Defect feedback"), table)])


# The public survey -----------------------------------------------------------------------

REFUSALS = {
    "invalid": _("This link is not valid. Please use the link from your email exactly as it was sent."),
    "expired": _("This survey link has expired. Thank you all the same; you can always call us."),
    "used": _("This survey has already been answered. Thank you for your feedback!"),
}


async def _refused(request: Request, reason: str) -> Response:
    return await render(request, "complaints/survey.html", {"refusal": REFUSALS[reason]},
                        status_code=410 if reason in ("expired", "used") else 404)


async def survey_page(request: Request) -> Response:
    try:
        page = await svc.survey_for(request.path_params["token"])
    except links.LinkError as exc:
        return await _refused(request, exc.reason)
    i18n.set_locale(page.customer.locale)
    return await render(request, "complaints/survey.html", {"page": page, "values": {}, "errors": {}})


async def survey_submit(request: Request) -> Response:
    form = await form_data(request)
    token = request.path_params["token"]
    try:
        page = await svc.answer_survey(token, form)
    except links.LinkError as exc:
        return await _refused(request, exc.reason)
    except svc.CaseError as exc:
        try:
            page = await svc.survey_for(token)
        except links.LinkError as refusal:
            return await _refused(request, refusal.reason)
        i18n.set_locale(page.customer.locale)
        return await render(request, "complaints/survey.html", {"page": page, "values": form, "errors": exc.errors},
                            status_code=422)
    i18n.set_locale(page.customer.locale)
    return await render(request, "complaints/survey.html", {"thanks": True, "page": page})
