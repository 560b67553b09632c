"""Scheduled jobs: reminders the day before, feedback surveys after, return-visit call lists.

Each job marks what it handled (`reminded_at`, `feedback_sent_at`, a call
list per plan and period), so a retry or a second run sends nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from core.api import Customer, EmailError, Project, gettext as _, queue_email
from plugins.activities import timeutil, tokens
from plugins.activities.models import Activity, ActivityStatus, Registration, RegistrationStatus, VisitPlan

FEEDBACK_WITHIN = timedelta(days=7)  # surveys go out only for recent activities (after downtime too)


async def _send(registration: Registration, customer: Customer, activity: Activity, project: Project,
                template: str, extra: dict) -> bool:
    context = {
        "name": customer.name, "estate": project.name, "title": activity.title, "place": activity.place,
        "starts_at": activity.starts_at, "tz": project.timezone, "code": registration.code, **extra,
    }
    try:
        await queue_email(to=customer.email, template=f"activities/{template}", context=context, locale=customer.locale,
                          project_id=project.id, related=f"activities.Registration:{registration.id}")
    except EmailError:
        return False
    return True


async def reminder_job(ctx) -> None:
    """Remind everyone holding a seat at tomorrow's activities (local dates of the estate)."""
    zone = ctx.project.timezone
    tomorrow = timeutil.today(zone, ctx.now()) + timedelta(days=1)
    activities = await Activity.filter(
        status=ActivityStatus.PUBLISHED,
        starts_at__gte=timeutil.day_start(tomorrow, zone),
        starts_at__lt=timeutil.day_start(tomorrow + timedelta(days=1), zone),
    )
    sent = 0
    for activity in activities:
        rows = await Registration.filter(
            activity_id=activity.id, status=RegistrationStatus.CONFIRMED, reminded_at__isnull=True
        ).select_related("customer")
        for registration in rows:
            if not registration.customer.email:
                continue
            if not await Registration.filter(id=registration.id, reminded_at__isnull=True).update(
                reminded_at=ctx.now()
            ):
                continue
            url = tokens.ticket_url(registration, activity)
            if await _send(registration, registration.customer, activity, ctx.project, "reminder", {"ticket_url": url}):
                sent += 1
    ctx.log(_("%(count)s reminders queued.", count=sent))


async def feedback_job(ctx) -> None:
    """Send a survey link to everyone who attended an activity that has ended."""
    now = ctx.now()
    activities = await Activity.filter(
        status=ActivityStatus.PUBLISHED, ends_at__lte=now, ends_at__gt=now - FEEDBACK_WITHIN
    )
    sent = 0
    for activity in activities:
        rows = await Registration.filter(
            activity_id=activity.id, status=RegistrationStatus.CONFIRMED, checked_in_at__isnull=False,
            feedback_sent_at__isnull=True,
        ).select_related("customer")
        for registration in rows:
            if not registration.customer.email:
                continue
            if not await Registration.filter(id=registration.id, feedback_sent_at__isnull=True).update(
                feedback_sent_at=now
            ):
                continue
            extra = {"feedback_url": tokens.feedback_url(registration)}
            if await _send(registration, registration.customer, activity, ctx.project, "feedback", extra):
                sent += 1
    ctx.log(_("%(count)s surveys queued.", count=sent))


async def visit_list_job(ctx) -> None:
    """Generate the call list of every plan that is due (one list per plan and period, never twice)."""
    from plugins.activities.visits import generate_round

    today = timeutil.today(ctx.project.timezone, ctx.now())
    for plan in await VisitPlan.filter(is_active=True, next_run_on__lte=today).order_by("id"):
        visit_round = await generate_round(plan, at=ctx.now())
        if visit_round is not None:
            ctx.log(_("%(plan)s: call list of %(count)s households.", plan=plan.name, count=visit_round.total))
