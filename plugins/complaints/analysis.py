"""Figures about complaints: the analysis report, defect feedback, dashboard tiles, 360 section, search."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.api import (
    Building, CustomerSection, DashboardTile, Project, SearchResult, Unit, gettext, lazy_gettext as _, unscoped,
)
from plugins.complaints.cases import now
from plugins.complaints.models import Case, Category, Classification, DefectType, Party, RootCause, Severity, Step, Survey


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 1)


@dataclass
class Report:
    """Cases received in [start, end) in some estates, counted every way the analysis page shows."""

    start: datetime
    end: datetime
    total: int = 0
    open: int = 0
    closed: int = 0
    overdue: int = 0
    repeats: int = 0
    average_close_hours: float | None = None
    average_score: float | None = None
    surveys_answered: int = 0
    by_category: list[tuple[str, int]] = field(default_factory=list)
    by_classification: list[tuple[str, int]] = field(default_factory=list)
    by_project: list[tuple[str, int]] = field(default_factory=list)
    by_building: list[tuple[str, int]] = field(default_factory=list)
    by_root_cause: list[tuple[str, int]] = field(default_factory=list)
    by_party: list[tuple[str, int]] = field(default_factory=list)
    by_severity: list[tuple[str, int]] = field(default_factory=list)
    by_month: list[tuple[str, int]] = field(default_factory=list)

    def chart(self, attr: str, kind: str = "bar") -> dict[str, Any]:
        rows = getattr(self, attr)
        return {"type": kind, "labels": [label for label, _n in rows],
                "datasets": [{"label": gettext("Complaints"), "data": [n for _label, n in rows]}]}

    @property
    def tables(self) -> list[tuple[str, str]]:
        """(attribute, heading) of each breakdown, in the order the page and the export show them."""
        return [
            ("by_classification", gettext("Classification")), ("by_category", gettext("Category")),
            ("by_project", gettext("Estate")), ("by_building", gettext("Building")),
            ("by_root_cause", gettext("Root cause")), ("by_party", gettext("Responsible party")),
            ("by_severity", gettext("Severity")), ("by_month", gettext("Month")),
        ]


def _ranked(counter: Counter) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))


async def report(project_ids: list[int], start: datetime, end: datetime, *, at: datetime | None = None,
                 tz: str = "Asia/Shanghai") -> Report:
    at = at or now()
    result = Report(start=start, end=end)
    rows = await Case.filter(project_id__in=project_ids, received_at__gte=start, received_at__lt=end).values(
        "id", "project_id", "unit_id", "category_id", "severity", "step", "root_cause", "responsible_party",
        "received_at", "closed_at", "step_due_at", "is_repeat",
    )
    if not rows:
        return result
    with unscoped():
        projects = dict(await Project.filter(id__in=project_ids).values_list("id", "name"))
    categories = {c["id"]: c for c in await Category.filter(project_id__in=project_ids).values("id", "name", "classification")}
    unit_ids = {r["unit_id"] for r in rows if r["unit_id"]}
    unit_building = dict(await Unit.filter(id__in=list(unit_ids)).values_list("id", "building_id")) if unit_ids else {}
    buildings = dict(await Building.filter(id__in=list(set(unit_building.values()))).values_list("id", "name")) if unit_building else {}
    zone = ZoneInfo(tz)
    unknown = gettext("Not recorded")
    counters: dict[str, Counter] = {name: Counter() for name in (
        "category", "classification", "project", "building", "root_cause", "party", "severity", "month")}
    close_times = []
    for r in rows:
        result.total += 1
        is_open = r["step"] != Step.CLOSED
        result.open += is_open
        result.closed += not is_open
        result.repeats += r["is_repeat"]
        if is_open and r["step_due_at"] is not None and r["step_due_at"] < at:
            result.overdue += 1
        if r["closed_at"] is not None:
            close_times.append(r["closed_at"] - r["received_at"])
        category = categories.get(r["category_id"])
        counters["category"][category["name"] if category else unknown] += 1
        counters["classification"][str(Classification.CHOICES.get(category["classification"], unknown)) if category else unknown] += 1
        counters["project"][projects.get(r["project_id"], "?")] += 1
        building = buildings.get(unit_building.get(r["unit_id"]))
        counters["building"][f"{projects.get(r['project_id'], '')} {building}".strip() if len(project_ids) > 1 and building else (building or unknown)] += 1
        if not is_open or r["root_cause"]:
            counters["root_cause"][str(RootCause.CHOICES.get(r["root_cause"], unknown))] += 1
            counters["party"][str(Party.CHOICES.get(r["responsible_party"], unknown))] += 1
        counters["severity"][str(Severity.CHOICES.get(r["severity"], r["severity"]))] += 1
        counters["month"][r["received_at"].astimezone(zone).strftime("%Y-%m")] += 1
    if close_times:
        result.average_close_hours = _hours(sum(close_times, timedelta()) / len(close_times))
    scores = await Survey.filter(case_id__in=[r["id"] for r in rows], score__isnull=False).values_list("score", flat=True)
    result.surveys_answered = len(scores)
    if scores:
        result.average_score = round(sum(scores) / len(scores), 2)
    for name, attr in (("category", "by_category"), ("classification", "by_classification"), ("project", "by_project"),
                       ("building", "by_building"), ("root_cause", "by_root_cause"), ("party", "by_party")):
        setattr(result, attr, _ranked(counters[name]))
    result.by_severity = [(str(label), counters["severity"][str(label)]) for label in Severity.CHOICES.values()
                          if counters["severity"][str(label)]]
    result.by_month = sorted(counters["month"].items())
    return result


@dataclass
class DefectRow:
    defect: str
    label: str
    total: int
    open: int
    by_project: list[tuple[str, int]]
    root_causes: list[tuple[str, int]]
    parties: list[tuple[str, int]]


async def defect_feedback(project_ids: list[int], start: datetime, end: datetime) -> list[DefectRow]:
    """Product defects (缺陷反馈) across estates: which defects recur, where, and whose fault they were."""
    categories = {c["id"]: c["defect"] for c in await Category.filter(project_id__in=project_ids).exclude(defect="")
                  .values("id", "defect")}
    if not categories:
        return []
    rows = await Case.filter(project_id__in=project_ids, category_id__in=list(categories), received_at__gte=start,
                             received_at__lt=end).values("project_id", "category_id", "step", "root_cause", "responsible_party")
    with unscoped():
        projects = dict(await Project.filter(id__in=project_ids).values_list("id", "name"))
    grouped: dict[str, list[dict]] = {}
    for r in rows:
        grouped.setdefault(categories[r["category_id"]], []).append(r)
    result = []
    for defect, items in grouped.items():
        analysed = [r for r in items if r["root_cause"]]
        result.append(DefectRow(
            defect=defect, label=str(DefectType.CHOICES.get(defect, defect)), total=len(items),
            open=sum(1 for r in items if r["step"] != Step.CLOSED),
            by_project=_ranked(Counter(projects.get(r["project_id"], "?") for r in items)),
            root_causes=_ranked(Counter(str(RootCause.CHOICES.get(r["root_cause"], r["root_cause"])) for r in analysed)),
            parties=_ranked(Counter(str(Party.CHOICES.get(r["responsible_party"], r["responsible_party"]))
                                    for r in analysed if r["responsible_party"])),
        ))
    return sorted(result, key=lambda d: (-d.total, d.label))


# Dashboard, 360, search --------------------------------------------------------------------


async def dashboard_tiles(project) -> list[DashboardTile]:
    at = now()
    base = f"/p/{project.code}/complaints/"
    open_cases = await Case.filter(project_id=project.id, step__in=list(Step.OPEN)).values("severity", "step_due_at")
    overdue = sum(1 for c in open_cases if c["step_due_at"] is not None and c["step_due_at"] < at)
    by_severity = Counter(c["severity"] for c in open_cases)
    since = at - timedelta(days=90)
    closed = await Case.filter(project_id=project.id, closed_at__gte=since).values("received_at", "closed_at")
    average = (sum((c["closed_at"] - c["received_at"] for c in closed), timedelta()) / len(closed)) if closed else None
    zone = ZoneInfo(project.timezone)
    answered = await Survey.filter(project_id=project.id, answered_at__gte=at - timedelta(days=180)).values(
        "answered_at", "score")
    months: dict[str, list[int]] = {}
    for s in sorted(answered, key=lambda s: s["answered_at"]):
        months.setdefault(s["answered_at"].astimezone(zone).strftime("%Y-%m"), []).append(s["score"])
    view = "complaints.view"
    return [
        DashboardTile(_("Open complaints"), value=len(open_cases), url=base + "?state=open", order=30, permission=view,
                      hint=gettext("%(n)s overdue", n=overdue)),
        DashboardTile(_("Overdue complaints"), value=overdue, url=base + "?state=overdue", order=31, permission=view,
                      hint=gettext("past the deadline of their current step")),
        DashboardTile(_("Average time to close"), value=f"{_hours(average):.1f} h" if average else "—", order=32,
                      permission=view, hint=gettext("last %(n)s days", n=90)),
        DashboardTile(_("Open complaints by severity"), order=33, permission=view, chart={
            "type": "doughnut", "labels": [str(label) for code, label in Severity.CHOICES.items() if by_severity[code]],
            "datasets": [{"label": gettext("Complaints"), "data": [by_severity[c] for c in Severity.CHOICES if by_severity[c]]}],
        }),
        DashboardTile(_("Complaint satisfaction"), order=34, width=2, permission=view,
                      value=f"{sum(s['score'] for s in answered) / len(answered):.1f} / 5" if answered else "—",
                      hint=gettext("average survey score by month"), chart={
            "type": "line", "labels": list(months),
            "datasets": [{"label": gettext("Average score"), "data": [round(sum(v) / len(v), 2) for v in months.values()]}],
        }),
    ]


async def customer_section(customer) -> CustomerSection:
    cases = await Case.filter(customer_id=customer.id).order_by("-received_at").limit(20)
    last_survey = await Survey.filter(case__customer_id=customer.id, score__isnull=False).order_by("-answered_at", "-id").first()
    return CustomerSection(
        _("Complaints"), "complaints/_customer_section.html",
        {"open_cases": [c for c in cases if c.is_open], "past_cases": [c for c in cases if not c.is_open][:5],
         "last_survey": last_survey, "Step": Step, "Severity": Severity},
        order=25, permission="complaints.view",
    )


async def search(query: str, project_ids: list[int]) -> list[SearchResult]:
    """Cases by number: the full "TS-2026-000042" or its last digits."""
    text = query.strip().upper()
    if len(text) < 3 or not any(ch.isdigit() for ch in text):
        return []
    cases = await Case.filter(number__icontains=text, project_id__in=project_ids).order_by("-id").limit(8)
    with unscoped():
        codes = dict(await Project.filter(id__in={c.project_id for c in cases}).values_list("id", "code"))
    return [
        SearchResult(kind=_("Complaint"), title=c.number, subtitle=f"{Step.CHOICES[c.step]} · {c.subject}",
                     url=f"/p/{codes[c.project_id]}/complaints/cases/{c.id}", project_id=c.project_id,
                     score=100.0 if c.number == text else 60.0)
        for c in cases
    ]
