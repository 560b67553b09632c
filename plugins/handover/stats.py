"""The handover module on the dashboard, the customer 360 page and in the global search."""

from __future__ import annotations

from collections import Counter

from core.api import CustomerSection, CustomerUnit, DashboardTile, Project, SearchResult, gettext, lazy_gettext as _, unscoped
from plugins.handover import services
from plugins.handover.models import (
    Appointment,
    AppointmentState,
    Contractor,
    Defect,
    DefectCategory,
    DefectState,
    HandoverState,
    KeyCheckout,
    KeySet,
    KeyState,
    UnitHandover,
)

VIEW = "handover.view"


async def dashboard_tiles(project) -> list[DashboardTile]:
    base = f"/p/{project.code}/handover/"
    states = Counter(await UnitHandover.all().values_list("state", flat=True))
    planned = sum(states.values())
    if not planned and not await KeySet.exists():
        return []
    handed = states.get(HandoverState.ACCEPTED, 0)
    open_defects = await Defect.filter(state__in=DefectState.UNRESOLVED).values_list("category", "contractor_id")
    names = dict(await Contractor.all().values_list("id", "name"))
    by_category = Counter(category for category, _contractor in open_defects)
    by_contractor = Counter(names.get(c, gettext("In-house technicians")) if c else gettext("In-house technicians")
                            for _category, c in open_defects)
    overdue_keys = await KeyCheckout.filter(open_for__isnull=False, due_at__lt=services.clock()).count()
    today = services.local_today(project)
    today_appointments = await Appointment.filter(slot__day=today, state__in=[AppointmentState.BOOKED, AppointmentState.CHECKED_IN]).count()
    return [
        DashboardTile(
            _("Units handed over"), value=f"{handed} / {planned}", url=base + "handovers", order=50, permission=VIEW,
            hint=gettext("%(n)s appointments today", n=today_appointments),
            chart={"type": "doughnut", "labels": [str(HandoverState.CHOICES[s]) for s in HandoverState.CHOICES],
                   "datasets": [{"label": gettext("Units"), "data": [states.get(s, 0) for s in HandoverState.CHOICES]}]},
        ),
        DashboardTile(
            _("Open defects by category"), value=len(open_defects), url=base + "defects?state=open", order=51,
            permission=VIEW, chart={"type": "bar", "labels": [str(DefectCategory.CHOICES[c]) for c in by_category],
                                    "datasets": [{"label": gettext("Open defects"), "data": list(by_category.values())}]},
        ),
        DashboardTile(
            _("Open defects by contractor"), order=52, width=2, permission=VIEW, url=base + "contractors",
            chart={"type": "bar", "labels": list(by_contractor),
                   "datasets": [{"label": gettext("Open defects"), "data": list(by_contractor.values())}]},
        ),
        DashboardTile(
            _("Overdue keys"), value=overdue_keys, url=base + "checkouts?overdue=1", order=53, permission=VIEW,
            hint=gettext("%(n)s key sets out", n=await KeySet.filter(state=KeyState.OUT).count()),
        ),
    ]


async def customer_section(customer) -> CustomerSection:
    """The customer's units in handover, their open defects and the keys the customer holds."""
    unit_ids = await CustomerUnit.filter(customer_id=customer.id).values_list("unit_id", flat=True)
    handovers = await UnitHandover.filter(unit_id__in=list(unit_ids)).prefetch_related("unit")
    defects = await Defect.filter(handover_id__in=[h.id for h in handovers], state__in=DefectState.UNRESOLVED).order_by("deadline")
    appointments = {
        a.handover_id: a for a in await Appointment.filter(handover_id__in=[h.id for h in handovers], active_for__isnull=False).prefetch_related("slot")
    }
    keys = await KeySet.filter(custodian_customer_id=customer.id, state__in=[KeyState.OUT, KeyState.OWNER]).prefetch_related("unit")
    return CustomerSection(
        _("Handover and keys"), "handover/_customer_section.html",
        {"handovers": handovers, "open_defects": defects, "appointments": appointments, "keys_held": keys,
         "HandoverState": HandoverState, "DefectState": DefectState, "KeyState": KeyState},
        order=50, permission=VIEW,
    )


async def search(query: str, project_ids: list[int]) -> list[SearchResult]:
    """Defects by number (YF000012 or its digits) and key sets by tag."""
    text = query.strip()
    if len(text) < 2:
        return []
    defects = await Defect.filter(number__icontains=text, project_id__in=project_ids).prefetch_related("unit").limit(8)
    keys = await KeySet.filter(tag__icontains=text, project_id__in=project_ids).prefetch_related("unit").limit(8)
    with unscoped():
        codes = dict(await Project.filter(id__in={r.project_id for r in [*defects, *keys]}).values_list("id", "code"))
    hits = [
        SearchResult(kind=_("Defect"), title=d.number, subtitle=f"{d.unit.code} · {d.location} · {DefectState.CHOICES[d.state]}",
                     url=f"/p/{codes[d.project_id]}/handover/defects/{d.id}", project_id=d.project_id,
                     score=100.0 if d.number.upper() == text.upper() else 60.0)
        for d in defects
    ]
    hits += [
        SearchResult(kind=_("Key set"), title=k.tag, subtitle=f"{k.unit.code} · {KeyState.CHOICES[k.state]} · {k.custodian_name}",
                     url=f"/p/{codes[k.project_id]}/handover/keys/{k.id}", project_id=k.project_id,
                     score=100.0 if k.tag.upper() == text.upper() else 60.0)
        for k in keys
    ]
    return hits
