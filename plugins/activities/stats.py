"""What the activities module adds elsewhere: the customer 360 section, dashboard tiles, search."""

from __future__ import annotations

from datetime import timedelta

from core.api import DashboardTile, SearchResult, gettext, lazy_gettext as _, project_url
from plugins.activities import timeutil, visits
from plugins.activities.models import (
    Activity, ActivityStatus, Member, Registration, RegistrationStatus, Visit, VisitOutcome, VisitStatus,
)

RECENT = timedelta(days=90)


def is_no_show(registration: Registration, at) -> bool:
    """Held a seat at an activity that took place and ended, and never checked in (`activity` loaded)."""
    return (
        registration.status == RegistrationStatus.CONFIRMED and registration.checked_in_at is None
        and registration.activity.status == ActivityStatus.PUBLISHED and registration.activity.ends_at <= at
    )


async def customer_context(request, customer) -> dict:
    member = await Member.get_or_none(customer_id=customer.id).select_related("level")
    signups = await Registration.filter(customer_id=customer.id).select_related("activity").order_by("-id").limit(5)
    now = timeutil.now()
    confirmed = await Registration.filter(customer_id=customer.id, status=RegistrationStatus.CONFIRMED).select_related("activity")
    no_shows = sum(1 for r in confirmed if is_no_show(r, now))
    attended = sum(1 for r in confirmed if r.checked_in_at)
    last_visit = await Visit.filter(customer_id=customer.id, status=VisitStatus.DONE).order_by("-done_at").first()
    return {
        "member": member, "signups": signups, "attended": attended, "no_shows": no_shows, "last_visit": last_visit,
        "activities_base": project_url(request, "activities/"), "status_labels": RegistrationStatus.CHOICES,
        "outcome_labels": VisitOutcome.CHOICES,
    }


async def dashboard_tiles(request, project) -> list[DashboardTile]:
    base = project_url(request, "activities/")
    now = timeutil.now()
    upcoming = await Activity.filter(status=ActivityStatus.PUBLISHED, starts_at__gte=now).count()
    past = await Activity.filter(status=ActivityStatus.PUBLISHED, ends_at__lte=now, ends_at__gte=now - RECENT).order_by(
        "starts_at")
    labels, registered, came = [], [], []
    ratings = []
    for activity in past[-8:]:
        rows = await Registration.filter(activity_id=activity.id, status=RegistrationStatus.CONFIRMED).values(
            "seats", "checked_in_at", "rating")
        labels.append(activity.title[:16])
        registered.append(sum(r["seats"] for r in rows))
        came.append(sum(r["seats"] for r in rows if r["checked_in_at"]))
        ratings += [r["rating"] for r in rows if r["rating"]]
    total_registered, total_came = sum(registered), sum(came)
    reached, households = await visits.coverage(project.id, timeutil.today(project.timezone) - timedelta(days=183))
    stars = [ratings.count(n) for n in range(1, 6)]
    satisfaction_chart = {"type": "bar", "labels": [gettext("%(n)s stars", n=n) for n in range(1, 6)],
                          "datasets": [{"label": gettext("Answers"), "data": stars}]} if ratings else None
    coverage_chart = {"type": "doughnut", "labels": [gettext("Reached"), gettext("Not reached yet")],
                      "datasets": [{"label": gettext("Households"), "data": [reached, households - reached]}]} \
        if households else None
    return [
        DashboardTile(_("Upcoming activities"), upcoming, url=base, order=50, permission="activities.view"),
        DashboardTile(
            _("Participation (90 days)"),
            f"{round(100 * total_came / total_registered)}%" if total_registered else "—",
            hint=gettext("%(came)s of %(registered)s registered people came", came=total_came, registered=total_registered),
            url=base, order=51, width=2, permission="activities.view",
            chart={"type": "bar", "labels": labels, "datasets": [
                {"label": gettext("Registered"), "data": registered}, {"label": gettext("Came"), "data": came}]}
            if labels else None,
        ),
        DashboardTile(
            _("Activity satisfaction (90 days)"),
            f"{sum(ratings) / len(ratings):.1f} / 5" if ratings else "—",
            hint=gettext("%(n)s answers", n=len(ratings)), order=52, permission="activities.view",
            chart=satisfaction_chart,
        ),
        DashboardTile(
            _("Return-visit coverage (6 months)"),
            f"{round(100 * reached / households)}%" if households else "—",
            hint=gettext("%(reached)s of %(total)s households reached", reached=reached, total=households),
            url=base + "plans", order=53, permission="activities.view", chart=coverage_chart,
        ),
    ]


async def search_results(request, query: str, project_ids: list[int]) -> list[SearchResult]:
    from core.api import Project

    q = query.strip()
    if len(q) < 2:
        return []
    codes = dict(await Project.filter(id__in=project_ids).values_list("id", "code"))
    rows = await Activity.filter(project_id__in=project_ids, title__icontains=q).order_by("-starts_at").limit(5)
    members = await Member.filter(project_id__in=project_ids, number=q).select_related("customer").limit(5)
    return [
        SearchResult(gettext("Activity"), a.title, f"/p/{codes[a.project_id]}/activities/{a.id}", project_id=a.project_id)
        for a in rows
    ] + [
        SearchResult(gettext("Club member"), f"{m.number} · {m.customer.name}",
                     f"/p/{codes[m.project_id]}/activities/members/{m.id}", project_id=m.project_id)
        for m in members
    ]
