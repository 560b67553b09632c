"""Pages of inspection checklists, on-site inspection (tablet), defects and contractors."""

from __future__ import annotations

from collections import defaultdict

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from core.api import (
    Column,
    Filter,
    ListView,
    attachments,
    ctx,
    errors_for,
    form_data,
    gettext,
    lazy_gettext as _,
    redirect,
    render,
    timeline,
    transaction,
)
from plugins.handover import forms, services
from plugins.handover.models import (
    ChecklistLine,
    ChecklistTemplate,
    Contractor,
    ContractorContact,
    Defect,
    DefectCategory,
    DefectState,
    Inspection,
    InspectionItem,
    ItemResult,
    Responsible,
    Severity,
    UnitHandover,
)
from plugins.handover.services import HandoverError
from plugins.handover.views import base, can, today

# Checklists ------------------------------------------------------------------------------


checklists_list = ListView(
    "handover-checklists", _("Inspection checklists"), model=ChecklistTemplate,
    columns=[
        Column("name", _("Checklist"), sort=True, link=lambda t, r: f"{base(r)}checklists/{t.id}"),
        Column("layout", _("Unit type"), value=lambda t: t.layout or gettext("All other unit types"), sort="layout"),
        Column("updated_at", _("Changed"), format="datetime", sort=True),
    ],
    default_sort="layout",
)


async def checklist_list(request: Request) -> Response:
    return await checklists_list.response(request, actions=[(gettext("New checklist"), f"{base(request)}checklists/new")])


def _checklist_text(lines: list[ChecklistLine]) -> str:
    return "\n".join(("*" if line.mandatory else "") + f"{line.room} | {line.item}" for line in lines)


async def _checklist_form(request: Request, template: ChecklistTemplate | None, values=None, errors=None, status=200):
    if values is None:
        values = {"name": template.name, "layout": template.layout,
                  "lines": _checklist_text(await ChecklistLine.filter(template_id=template.id))} if template else {}
    return await render(request, "handover/checklist_form.html", {
        "base": base(request), "template": template, "values": values, "errors": errors or {},
    }, status_code=status)


async def checklist_new(request: Request) -> Response:
    return await _checklist_form(request, None)


async def checklist_edit(request: Request) -> Response:
    return await _checklist_form(request, request.state.record)


async def checklist_save(request: Request) -> Response:
    template = getattr(request.state, "record", None)
    values = await form_data(request)
    try:
        name = forms.text(values, "name", 64, required=True, label_missing=gettext("Name the checklist."))
        layout = forms.text(values, "layout", 32)
        saved = await services.save_checklist(ctx(request).project, template, layout=layout, name=name,
                                              text=values.get("lines", ""))
    except HandoverError as exc:
        return await _checklist_form(request, template, values, {exc.field: exc.message}, 422)
    return redirect(request, f"{base(request)}checklists/{saved.id}", gettext("Checklist saved."))


# Inspection on site -------------------------------------------------------------------------


async def inspection_start(request: Request) -> Response:
    from plugins.handover.views import _handover_page

    handover = request.state.record
    try:
        inspection = await services.start_inspection(handover, by=ctx(request).principal)
    except HandoverError as exc:
        return await _handover_page(request, handover, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}inspections/{inspection.id}", gettext("Inspection started."))


async def _inspection_page(request: Request, inspection: Inspection, *, values=None, errors=None, status=200):
    handover = await UnitHandover.get(id=inspection.handover_id).prefetch_related("unit")
    rooms: dict[str, list[InspectionItem]] = defaultdict(list)
    items = await InspectionItem.filter(inspection_id=inspection.id).order_by("position", "id")
    for item in items:
        rooms[item.room].append(item)
    defects = await Defect.filter(handover_id=handover.id).order_by("id")
    by_item: dict[int, list[Defect]] = defaultdict(list)
    for defect in defects:
        if defect.item_id:
            by_item[defect.item_id].append(defect)
    contractors = await Contractor.filter(is_active=True)
    return await render(request, "handover/inspection.html", {
        "base": base(request), "inspection": inspection, "handover": handover, "unit": handover.unit,
        "rooms": dict(rooms), "by_item": by_item, "defects": defects,
        "item_choices": [(i.id, f"{i.room} · {i.item}") for i in items],
        "contractors": [(c.id, c.name + (f" · {c.trade}" if c.trade else "")) for c in contractors],
        "ItemResult": ItemResult, "DefectState": DefectState, "Severity": Severity, "Responsible": Responsible,
        "DefectCategory": DefectCategory, "can_inspect": can(request, "handover.inspect"),
        "values": values or {"deadline": "", "item": request.query_params.get("item", "")}, "errors": errors or {},
    }, status_code=status)


async def inspection_detail(request: Request) -> Response:
    return await _inspection_page(request, request.state.record)


async def item_ok(request: Request) -> Response:
    inspection = request.state.record
    item = await InspectionItem.get_or_none(id=request.path_params["item"], inspection_id=inspection.id)
    try:
        if item is None:
            raise HandoverError(gettext("Choose an item of this unit's inspection."))
        await services.mark_item_ok(item, by=ctx(request).principal)
    except HandoverError as exc:
        return await _inspection_page(request, inspection, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}inspections/{inspection.id}#item-{item.id}")


async def inspection_finish(request: Request) -> Response:
    inspection = request.state.record
    try:
        await services.finish_inspection(inspection, by=ctx(request).principal)
    except HandoverError as exc:
        return await _inspection_page(request, inspection, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}handovers/{inspection.handover_id}", gettext("Inspection finished."))


async def defect_create(request: Request) -> Response:
    """A defect found on site, with its photos (multipart: csrftoken first, then the fields and files)."""
    inspection = request.state.record
    handover = await UnitHandover.get(id=inspection.handover_id)
    project = ctx(request).project
    async with request.form(max_files=6, max_fields=30) as form:
        values = {k: v for k, v in form.multi_items() if k not in ("csrftoken", "photo") and isinstance(v, str)}
        photos = [f for f in form.getlist("photo") if isinstance(f, UploadFile) and f.filename]
        try:
            defect = await services.record_defect(
                handover, project, by=ctx(request).principal,
                location=forms.text(values, "location", 64), description=forms.text(values, "description", 2000),
                category=forms.choice(values, "category", DefectCategory.CHOICES),
                severity=forms.choice(values, "severity", Severity.CHOICES),
                responsible=forms.choice(values, "responsible", Responsible.CHOICES),
                contractor_id=forms.optional_id(values, "contractor"), deadline=forms.day(values, "deadline"),
                item_id=forms.optional_id(values, "item"), photos=photos,
            )
        except HandoverError as exc:
            return await _inspection_page(request, inspection, values=values, errors={exc.field: exc.message}, status=422)
    page = f"{base(request)}inspections/{inspection.id}"
    if defect.photo_problem:
        message = gettext("Defect %(number)s recorded without its photos. %(problem)s", number=defect.number,
                          problem=defect.photo_problem)
        return redirect(request, page, message, level="warning")
    return redirect(request, page, gettext("Defect %(number)s recorded.", number=defect.number))


# Defects ------------------------------------------------------------------------------------


async def _contractor_choices(request):
    return [(c.id, c.name) for c in await Contractor.all()]


def _apply_overdue(queryset, value: bool, request: Request):
    past = {"state__in": DefectState.UNRESOLVED, "deadline__lt": today(request)}
    return queryset.filter(**past) if value else queryset.exclude(**past)


def _age(defect: Defect, request: Request) -> int:
    return (today(request) - services.local_today(ctx(request).project, defect.created_at)).days


defects_list = ListView(
    "handover-defects", _("Defects"), model=Defect,
    columns=[
        Column("number", _("Number"), sort=True, link=lambda d, r: f"{base(r)}defects/{d.id}"),
        Column("unit", _("Unit"), field="unit.code", sort="unit__code"),
        Column("location", _("Location")),
        Column("description", _("Defect"), wrap=True),
        Column("category", _("Category"), format="choice", choices=DefectCategory.CHOICES, sort=True),
        Column("severity", _("Severity"), format="choice", choices=Severity.CHOICES, sort=True),
        Column("contractor", _("Contractor"), value=lambda d: d.contractor.name if d.contractor else gettext("In-house technicians"),
               sort="contractor__name"),
        Column("deadline", _("Deadline"), format="date", sort=True),
        Column("age", _("Age (days)"), value=_age, format="number", sort="created_at"),
        Column("state", _("Status"), format="choice", choices=DefectState.CHOICES, sort=True),
    ],
    filters=[
        Filter.choice("state", _("Status"), DefectState.CHOICES),
        Filter.choice("category", _("Category"), DefectCategory.CHOICES),
        Filter.choice("contractor", _("Contractor"), _contractor_choices, field="contractor_id"),
        Filter.choice("responsible", _("Repaired by"), Responsible.CHOICES),
        Filter.boolean("overdue", _("Past deadline"), apply=_apply_overdue),
    ],
    search=["number", "unit__code", "location", "description"], select_related=["unit", "contractor"],
    default_sort="-number", search_placeholder=_("Defect number, unit or text"),
)


async def defect_list(request: Request) -> Response:
    return await defects_list.response(request)


# The step the defect's page offers in each state (defect.html shows exactly this form).
DEFECT_STEPS = {DefectState.OPEN: "repair", DefectState.REPAIRED: "reinspect", DefectState.VERIFIED: "accept"}


async def _defect_page(request: Request, defect: Defect, *, form="", values=None, errors=None, status=200):
    await defect.fetch_related("unit", "contractor", "handover", "recorded_by", "item")
    on_page = {DEFECT_STEPS[defect.state]} if defect.state in DEFECT_STEPS and can(request, "handover.inspect") else set()
    return await render(request, "handover/defect.html", {
        "base": base(request), "defect": defect, "DefectState": DefectState, "Severity": Severity,
        "Responsible": Responsible, "DefectCategory": DefectCategory, "today": today(request),
        "can_inspect": can(request, "handover.inspect"), "form": form, "values": values or {},
        "errors": errors_for(errors, form, on_page),
        **await timeline.context(request, defect), **await attachments.context(request, defect),
    }, status_code=status)


async def defect_detail(request: Request) -> Response:
    return await _defect_page(request, request.state.record)


async def defect_step(request: Request) -> Response:
    """Repair record, re-inspection (pass / fail with a new deadline) or the owner's acceptance of a repair."""
    defect = request.state.record
    step = request.path_params["step"]
    values = await form_data(request)
    by = ctx(request).principal
    try:
        if step == "repair":
            await services.record_repair(defect, by=by, note=forms.text(values, "repair_note", 2000))
        elif step == "reinspect":
            passed = forms.choice(values, "result", ("pass", "fail")) == "pass"
            await services.reinspect(defect, ctx(request).project, by=by, passed=passed,
                                     note=forms.text(values, "reinspect_note", 2000),
                                     deadline=None if passed else forms.day(values, "deadline", required=False))
        elif step == "accept":
            await services.owner_accepts_defect(defect, by=by)
        else:
            return Response(status_code=404)
    except HandoverError as exc:
        return await _defect_page(request, defect, form=step, values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}defects/{defect.id}", gettext("Defect updated."))


# Contractors ----------------------------------------------------------------------------------


async def _open_counts(request: Request) -> None:
    rows = await Defect.filter(state__in=DefectState.UNRESOLVED, contractor_id__isnull=False).values_list("contractor_id", flat=True)
    counts: dict[int, int] = defaultdict(int)
    for contractor_id in rows:
        counts[contractor_id] += 1
    request.state.handover_open = counts


contractors_list = ListView(
    "handover-contractors", _("Contractors"), model=Contractor,
    columns=[
        Column("name", _("Contractor"), sort=True, link=lambda c, r: f"{base(r)}contractors/{c.id}"),
        Column("trade", _("Trade"), sort=True),
        Column("phone", _("Phone")),
        Column("email", _("Email")),
        Column("warranty_until", _("Warranty until"), format="date", sort=True),
        Column("open", _("Open defects"), value=lambda c, r: r.state.handover_open.get(c.id, 0), format="number"),
        Column("is_active", _("Active"), format="boolean"),
    ],
    filters=[Filter.boolean("is_active", _("Active"))],
    search=["name", "trade"], default_sort="name",
)


async def contractor_list(request: Request) -> Response:
    await _open_counts(request)
    actions = [(gettext("New contractor"), f"{base(request)}contractors/new")] if can(request, "handover.manage") else []
    return await contractors_list.response(request, actions=actions)


async def _contractor_form(request: Request, contractor, values=None, errors=None, status=200):
    if values is None:
        values = {"name": contractor.name, "trade": contractor.trade, "phone": contractor.phone, "email": contractor.email,
                  "warranty_until": contractor.warranty_until.isoformat() if contractor.warranty_until else "",
                  "is_active": contractor.is_active} if contractor else {"is_active": True}
    return await render(request, "handover/contractor_form.html", {
        "base": base(request), "contractor": contractor, "values": values, "errors": errors or {},
    }, status_code=status)


async def contractor_new(request: Request) -> Response:
    return await _contractor_form(request, None)


async def contractor_edit(request: Request) -> Response:
    return await _contractor_form(request, request.state.record)


def _email(values: dict, name: str) -> str:
    value = forms.text(values, name, 255)
    if value and ("@" not in value or " " in value):
        raise HandoverError(gettext("Enter a valid email address."), name)
    return value


async def contractor_save(request: Request) -> Response:
    from tortoise.exceptions import IntegrityError

    contractor = getattr(request.state, "record", None)
    values = await form_data(request)
    try:
        data = {
            "name": forms.text(values, "name", 96, required=True, label_missing=gettext("Name the contractor.")),
            "trade": forms.text(values, "trade", 64), "phone": forms.text(values, "phone", 32),
            "email": _email(values, "email"), "warranty_until": forms.day(values, "warranty_until", required=False),
            "is_active": forms.checked(values, "is_active"),
        }
        try:
            async with transaction():
                if contractor is None:
                    contractor = await Contractor.create(project_id=ctx(request).project.id, **data)
                else:
                    await Contractor.filter(id=contractor.id).update(**data)
        except IntegrityError:
            raise HandoverError(gettext("There is a contractor with this name already."), "name") from None
    except HandoverError as exc:
        return await _contractor_form(request, contractor if contractor and contractor.id else None, values,
                                      {exc.field: exc.message}, 422)
    return redirect(request, f"{base(request)}contractors/{contractor.id}", gettext("Contractor saved."))


async def _contractor_page(request: Request, contractor: Contractor, *, values=None, errors=None, status=200):
    """The contractor with contacts and the tracking sheet: open defects, oldest first, with their age."""
    contacts = await ContractorContact.filter(contractor_id=contractor.id)
    defects = await Defect.filter(contractor_id=contractor.id, state__in=DefectState.UNRESOLVED).prefetch_related("unit").order_by("created_at")
    now_day = today(request)
    project = ctx(request).project
    sheet = [(d, (now_day - services.local_today(project, d.created_at)).days) for d in defects]
    buckets = {"0–7": 0, "8–14": 0, "15–30": 0, "30+": 0}
    for _defect, age in sheet:
        key = "0–7" if age <= 7 else "8–14" if age <= 14 else "15–30" if age <= 30 else "30+"
        buckets[key] += 1
    return await render(request, "handover/contractor.html", {
        "base": base(request), "contractor": contractor, "contacts": contacts, "sheet": sheet, "buckets": buckets,
        "today": now_day, "DefectState": DefectState, "Severity": Severity, "can_manage": can(request, "handover.manage"),
        "values": values or {}, "errors": errors or {},
    }, status_code=status)


async def contractor_detail(request: Request) -> Response:
    return await _contractor_page(request, request.state.record)


async def contact_add(request: Request) -> Response:
    contractor = request.state.record
    values = await form_data(request)
    try:
        await ContractorContact.create(
            project_id=contractor.project_id, contractor=contractor,
            name=forms.text(values, "contact_name", 64, required=True, label_missing=gettext("Enter the person's name.")),
            role=forms.text(values, "role", 64), phone=forms.text(values, "contact_phone", 32),
            email=_email(values, "contact_email"),
        )
    except HandoverError as exc:
        return await _contractor_page(request, contractor, values=values, errors={exc.field: exc.message}, status=422)
    return redirect(request, f"{base(request)}contractors/{contractor.id}", gettext("Contact added."))
