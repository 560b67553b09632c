"""Scheduled jobs of the complaints: deadline warnings and escalation, surveys, the weekly analysis."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.api import EmailError, JobContext, Membership, User, emit, gettext as _, project_calendar, queue_email, timeline
from plugins.complaints import analysis
from plugins.complaints.cases import conf, send_survey, users_with_permission
from plugins.complaints.models import Case, Escalation, Step, Survey

# Who hears of an overdue case at each level: (permission, where the membership is).
ESCALATION_RECIPIENTS = {
    Escalation.SUPERVISOR: ("complaints.assign", "project"),
    Escalation.MANAGER: ("complaints.close", "project"),
    Escalation.HEAD_OFFICE: ("complaints.analyse", "head_office"),
}


async def _mail(users, template: str, context: dict, project, related: str) -> None:
    for user in users:
        if not user.email:
            continue
        try:
            await queue_email(to=user.email, template=f"complaints/{template}", locale=user.locale,
                              project_id=project.id, related=related,
                              context={"project": project, "tz": project.timezone, **context})
        except EmailError:  # one colleague's malformed address must not stop the others' mail
            continue


async def handlers(case: Case) -> list[User]:
    """Who works on the case: its assignee, else its department's members, else those who assign cases."""
    if case.assignee_id:
        return await User.filter(id=case.assignee_id, is_active=True)
    if case.department_id:
        ids = await Membership.filter(department_id=case.department_id).values_list("user_id", flat=True)
        if ids:
            return await User.filter(id__in=list(ids), is_active=True)
    return await users_with_permission(case.project_id, "complaints.assign", where="project")


async def deadline_watch(ctx: JobContext) -> None:
    """Warn the handler before a step's deadline; escalate overdue cases one level per run."""
    at, project = ctx.now(), ctx.project
    calendar = project_calendar(project)
    settings = conf()
    warn = timedelta(hours=float(settings["warn_before_hours"]))
    every = timedelta(hours=float(settings["escalate_every_hours"]))
    cases = await Case.filter(step__in=list(Step.OPEN), step_due_at__isnull=False).order_by("id")
    await ctx.progress(0, len(cases))
    for done, case in enumerate(cases, 1):
        due, related = case.step_due_at, f"complaints.Case:{case.id}"
        step = Step.ORDER[Step.ORDER.index(case.step) + 1]
        if case.warned_at is None and at < due and calendar.working_time_between(at, due) <= warn:
            case.warned_at = at
            await case.save(update_fields=["warned_at"])
            await timeline.post(case, "sla", _("The deadline of “%(step)s” is near.", step=Step.ACTIONS[step]),
                                data={"due": due.isoformat()})
            await _mail(await handlers(case), "deadline_warning", {"case": case, "due": due,
                                                                    "step": str(Step.ACTIONS[step])}, project, related)
        if at >= due and case.escalation_level < Escalation.HEAD_OFFICE:
            # Overdue right away means the supervisor; each further `every` working hours one level up.
            deserved = min(Escalation.HEAD_OFFICE, 1 + int(calendar.working_time_between(due, at) / every))
            if deserved > case.escalation_level:
                await escalate(case, case.escalation_level + 1, project, at, step)
        await ctx.progress(done, len(cases))


async def escalate(case: Case, level: int, project, at: datetime, step: str) -> None:
    permission, where = ESCALATION_RECIPIENTS[level]
    recipients = await users_with_permission(case.project_id, permission, where=where)
    case.escalation_level, case.escalated_at = level, at
    await case.save(update_fields=["escalation_level", "escalated_at"])
    names = ", ".join(str(u) for u in recipients) or _("nobody (no one holds the permission)")
    await timeline.post(case, "escalation", _("Overdue at “%(step)s”: %(level)s (%(names)s).",
                                              step=Step.ACTIONS[step], level=Escalation.CHOICES[level], names=names),
                        data={"level": level})
    await _mail(recipients, "escalated", {"case": case, "level": str(Escalation.CHOICES[level]),
                                          "step": str(Step.ACTIONS[step])}, project, f"complaints.Case:{case.id}")
    await emit("complaints.escalated", case.project_id, case_id=case.id, number=case.number, level=level, step=step,
               customer_id=case.customer_id, unit_id=case.unit_id, escalated_at=at.isoformat())


async def send_surveys(ctx: JobContext) -> None:
    """Surveys for cases closed `survey_delay_days` ago (within the last month), one per closing."""
    at = ctx.now()
    latest = at - timedelta(days=int(conf()["survey_delay_days"]))
    cases = await Case.filter(step=Step.CLOSED, closed_at__lte=latest, closed_at__gte=latest - timedelta(days=30))
    for case in cases:
        if not await Survey.filter(case_id=case.id, sent_at__gte=case.closed_at).exists():
            await send_survey(case, at)


async def weekly_analysis(ctx: JobContext) -> None:
    """Last week's figures (Monday to Sunday, local time) to the estate's managers."""
    project = ctx.project
    today = ctx.now().astimezone(ZoneInfo(project.timezone)).date()
    monday = today - timedelta(days=today.weekday() + 7)
    start = datetime.combine(monday, time(0), tzinfo=ZoneInfo(project.timezone))
    figures = await analysis.report([project.id], start, start + timedelta(days=7), at=ctx.now())
    recipients = await users_with_permission(project.id, "complaints.analyse", where="project")
    await _mail(recipients, "weekly", {"report": figures, "week_start": monday, "week_end": monday + timedelta(days=6)},
                project, "complaints.weekly")
    ctx.log(f"{figures.total} cases, sent to {len([u for u in recipients if u.email])} managers")
