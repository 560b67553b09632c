"""Dashboard figures, the customer 360 section and the search provider of the work orders."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

from core.api import CustomerSection, DashboardTile, Project, SearchResult, gettext, newest_matches, lazy_gettext as _, unscoped
from plugins.hotline import workorders as wo
from plugins.hotline.models import Category, Kind, Status, WorkOrder

PERIOD_DAYS = 30


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


async def dashboard_tiles(project) -> list[DashboardTile]:
    """Open orders, and for the last 30 days: SLA compliance, first-contact resolution, timings, charts."""
    at = wo.now()
    base = f"/p/{project.code}/hotline/"
    since = at - timedelta(days=PERIOD_DAYS)
    rows = await WorkOrder.filter(project_id=project.id, received_at__gte=since).values(
        "status", "category_id", "received_at", "responded_at", "resolved_at", "resolution_due", "first_contact_resolved",
    )
    open_orders = await WorkOrder.filter(project_id=project.id, status__in=Status.OPEN).values(
        "status", "responded_at", "response_due", "resolution_due"
    )
    late = sum(
        1 for o in open_orders
        if (o["responded_at"] is None and at > o["response_due"]) or at > o["resolution_due"]
    )
    resolved = [r for r in rows if r["resolved_at"] is not None]
    responded = [r for r in rows if r["responded_at"] is not None]
    on_time = sum(1 for r in resolved if r["resolved_at"] <= r["resolution_due"])
    names = dict(await Category.filter(project_id=project.id).values_list("id", "name"))
    by_category = Counter(names.get(r["category_id"], "?") for r in rows).most_common(8)
    by_status = Counter(r["status"] for r in rows)
    period = gettext("last %(n)s days", n=PERIOD_DAYS)

    def pct(part: int, whole: int) -> str:
        return f"{part * 100 / whole:.0f}%" if whole else "—"

    def average(items, start, end) -> str:
        if not items:
            return "—"
        total = sum(((i[end] - i[start]) for i in items), timedelta())
        return _hours(total / len(items))

    return [
        DashboardTile(_("Open work orders"), value=len(open_orders), url=base + "?status=new",
                      hint=gettext("%(n)s overdue", n=late), order=20, permission="hotline.view"),
        DashboardTile(_("Resolved within the deadline"), value=pct(on_time, len(resolved)), hint=period,
                      order=21, permission="hotline.view"),
        DashboardTile(_("First-contact resolution"), value=pct(sum(1 for r in rows if r["first_contact_resolved"]), len(rows)),
                      hint=period, order=22, permission="hotline.view"),
        DashboardTile(_("Average response / resolution"),
                      value=f"{average(responded, 'received_at', 'responded_at')} / {average(resolved, 'received_at', 'resolved_at')}",
                      hint=period, order=23, permission="hotline.view"),
        DashboardTile(_("Work orders by category"), order=24, width=2, permission="hotline.view", chart={
            "type": "bar", "labels": [name for name, _n in by_category],
            "datasets": [{"label": gettext("Work orders"), "data": [n for _name, n in by_category]}],
        }),
        DashboardTile(_("Work orders by state"), order=25, permission="hotline.view", chart={
            "type": "doughnut", "labels": [str(label) for code, label in Status.CHOICES.items() if by_status[code]],
            "datasets": [{"label": gettext("Work orders"), "data": [by_status[c] for c in Status.CHOICES if by_status[c]]}],
        }),
    ]


async def customer_section(customer) -> CustomerSection:
    orders = await WorkOrder.filter(customer_id=customer.id).order_by("-received_at").limit(10)
    return CustomerSection(
        _("Work orders"), "hotline/section.html",
        {"open_orders": [o for o in orders if o.status in Status.OPEN or o.status == Status.DONE],
         "recent": [o for o in orders if o.status in (Status.CALLBACK, Status.CLOSED)][:5],
         "Status": Status, "Kind": Kind},
        order=20, permission="hotline.view",
    )


async def search(query: str, project_ids: list[int]) -> list[SearchResult]:
    """Work orders by number: the full "GD-2026-000123", or its serial ("123", "000123") this year or last."""
    text = query.strip().upper()
    if len(text) < 3 or not any(ch.isdigit() for ch in text):
        return []
    # Both forms are looked up through the (estate, number) index: never a scan of millions of orders.
    if text.isdigit() and len(text) <= 6:
        year = wo.now().year
        numbers = [f"GD-{y}-{int(text):06d}" for y in (year, year - 1)]
    elif re.fullmatch(r"GD-\d{4}-\d{6}", text):
        numbers = [text]
    else:
        return []
    orders = await newest_matches(WorkOrder, project_ids, number__in=numbers)
    with unscoped():
        codes = dict(await Project.filter(id__in={o.project_id for o in orders}).values_list("id", "code"))
    return [
        SearchResult(kind=_("Work order"), title=o.number, subtitle=f"{Status.CHOICES[o.status]} · {o.subject}",
                     url=f"/p/{codes[o.project_id]}/hotline/orders/{o.id}", project_id=o.project_id,
                     score=100.0 if o.number == text else 60.0)
        for o in orders
    ]
