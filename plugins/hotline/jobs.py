"""Scheduled jobs of the hotline's work orders: SLA watch, callback reminders, daily summary."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.api import EmailError, JobContext, Membership, User, gettext as _, lazy_gettext, project_calendar, queue_email, timeline
from plugins.hotline import workorders as wo
from plugins.hotline.models import Assignment, CallbackTask, Escalation, Kind, Status, TaskStatus, WorkOrder


def _remaining(order: WorkOrder, at: datetime, due: datetime, calendar) -> timedelta:
    """Time left before `due` as the order's clock counts it (working hours or around the clock)."""
    if not order.working_hours_only:
        return due - at
    return calendar.working_time_between(at, due)


async def _mail(users, template: str, context: dict, project, related: str) -> int:
    sent = 0
    for user in users:
        if not user.email:
            continue
        try:
            await queue_email(to=user.email, template=f"hotline/{template}", locale=user.locale, project_id=project.id,
                              related=related, context={"project": project, "tz": project.timezone, **context})
        except EmailError:  # a malformed address of one colleague must not stop the others' mail
            continue
        sent += 1
    return sent


async def _handlers(order: WorkOrder) -> list[User]:
    """Who works on the order: assignees of its open parts and the members of their departments."""
    parts = await Assignment.filter(order_id=order.id, done_at__isnull=True)
    user_ids = {p.assignee_id for p in parts if p.assignee_id}
    departments = [p.department_id for p in parts if p.department_id]
    if departments:
        user_ids |= set(await Membership.filter(department_id__in=departments).values_list("user_id", flat=True))
    return await User.filter(id__in=sorted(user_ids), is_active=True) if user_ids else []


async def _escalate(order: WorkOrder, level: int, project, at: datetime) -> None:
    if level == Escalation.SUPERVISOR:
        recipients = [await order.supervisor] if order.supervisor_id else await wo.users_with_permission(
            project.id, "hotline.supervise"
        )
    else:
        recipients = await wo.users_with_permission(project.id, "hotline.manage")
    order.escalation_level, order.escalated_at = level, at
    await order.save(update_fields=["escalation_level", "escalated_at"])
    names = ", ".join(str(u) for u in recipients) or _("nobody (no one holds the permission)")
    await timeline.post(
        order, "escalation", _("Overdue: %(level)s (%(names)s).", level=Escalation.CHOICES[level], names=names),
        data={"level": level},
    )
    await _mail(recipients, "escalated", {"order": order, "level": str(Escalation.CHOICES[level])}, project,
                f"hotline.WorkOrder:{order.id}")


async def sla_watch(ctx: JobContext) -> None:
    """Warn the handlers before a deadline; escalate overdue orders to the supervisor, then the manager."""
    at, project = ctx.now(), ctx.project
    calendar = project_calendar(project)
    warn = timedelta(hours=wo.WARN_BEFORE_HOURS)
    orders = await WorkOrder.filter(status__in=Status.OPEN).order_by("id")
    await ctx.progress(0, len(orders))
    for done, order in enumerate(orders, 1):
        related = f"hotline.WorkOrder:{order.id}"
        checks = [
            ("response", order.responded_at is None, order.response_due, "response_warned_at", _("first-response")),
            ("resolution", True, order.resolution_due, "resolution_warned_at", _("resolution")),
        ]
        for _key, pending, due, flag, what in checks:
            if pending and getattr(order, flag) is None and at < due and _remaining(order, at, due, calendar) <= warn:
                setattr(order, flag, at)
                await order.save(update_fields=[flag])
                await timeline.post(order, "sla", _("The %(what)s deadline is near.", what=what), data={"due": due.isoformat()})
                await _mail(await _handlers(order), "sla_warning", {"order": order, "due": due, "what": what}, project, related)
        if wo.overdue(order, at):
            if order.escalation_level == Escalation.NONE:
                await _escalate(order, Escalation.SUPERVISOR, project, at)
            elif order.escalation_level == Escalation.SUPERVISOR and _remaining(
                order, order.escalated_at, at, calendar
            ) >= timedelta(hours=wo.MANAGER_AFTER_HOURS):
                await _escalate(order, Escalation.MANAGER, project, at)
        await ctx.progress(done, len(orders))


async def callback_reminders(ctx: JobContext) -> None:
    """Due callbacks: one reminder to each assignee; unassigned ones to the callback agents."""
    at, project = ctx.now(), ctx.project
    tasks = await CallbackTask.filter(status=TaskStatus.OPEN, due_at__lte=at, reminded_at__isnull=True).order_by("due_at")
    if not tasks:
        return
    by_user: dict[int | None, list[CallbackTask]] = defaultdict(list)
    for task in tasks:
        by_user[task.assignee_id].append(task)
    unassigned = by_user.pop(None, [])
    users = {u.id: u for u in await User.filter(id__in=list(by_user), is_active=True)}
    for user_id, own in by_user.items():
        if user_id in users:
            await _mail([users[user_id]], "callbacks_due", {"tasks": own}, project, "hotline.CallbackTask")
        else:  # the assignee left: the task is everyone's again
            unassigned += own
    if unassigned:
        await _mail(await wo.users_with_permission(project.id, "hotline.callback"), "callbacks_due",
                    {"tasks": unassigned}, project, "hotline.CallbackTask")
    await CallbackTask.filter(id__in=[t.id for t in tasks]).update(reminded_at=at)


async def summary_lines(project, day) -> list[tuple[str, object]]:
    """The work-order figures of one local day, as (label, value) lines of the daily summary."""
    zone = ZoneInfo(project.timezone)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = start + timedelta(days=1)
    received = WorkOrder.filter(received_at__gte=start, received_at__lt=end)
    # Lazy labels: each manager's copy is rendered in their own language.
    lines: list[tuple[str, object]] = [
        (lazy_gettext("Work orders received"), await received.count()),
        (lazy_gettext("Complaints received"), await received.filter(kind=Kind.COMPLAINT).count()),
        (lazy_gettext("Work done"), await WorkOrder.filter(resolved_at__gte=start, resolved_at__lt=end).count()),
        (lazy_gettext("Closed after a satisfied callback"), await WorkOrder.filter(closed_at__gte=start, closed_at__lt=end).count()),
        (lazy_gettext("Still open"), await WorkOrder.filter(status__in=Status.OPEN).count()),
        (lazy_gettext("Escalated and still open"), await WorkOrder.filter(status__in=Status.OPEN, escalation_level__gt=0).count()),
        (lazy_gettext("Callbacks waiting"), await CallbackTask.filter(status=TaskStatus.OPEN).count()),
    ]
    return lines


async def daily_summary(ctx: JobContext) -> None:
    """Yesterday's work orders, to the estate's managers (each morning)."""
    project = ctx.project
    day = ctx.slot.astimezone(ZoneInfo(project.timezone)).date() - timedelta(days=1)
    lines = await summary_lines(project, day)
    await _mail(await wo.users_with_permission(project.id, "hotline.manage"), "daily_summary",
                {"day": day.isoformat(), "lines": lines}, project, "hotline.summary")
