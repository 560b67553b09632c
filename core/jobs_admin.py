"""Administration pages for scheduled jobs and the email outbox.

Both span every estate (runs of all projects, email to every estate's
customers), so they are for head-office users holding `core.manage_jobs` /
`core.manage_outbox`; an estate's own administrator does not see them.
"""

from __future__ import annotations

from datetime import datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from tortoise.functions import Count, Max

from core import clock
from core import jobs, outbox
from core.access import record
from core.i18n import gettext as _
from core.kit import NavItem
from core.models import Project, ProjectModule
from core.scope import unscoped
from core.templating import render
from core.web import ctx, form_data, redirect

HISTORY_SIZE = 50
OUTBOX_PAGE_SIZE = 50


def navigation_items(request: Request) -> list[NavItem]:
    """Administration-menu entries, for head-office users allowed to use them."""
    principal = ctx(request).principal
    if principal is None:
        return []
    items = []
    if "core.manage_jobs" in principal.head_office:
        items.append(NavItem(_("Scheduled jobs"), "/jobs", icon="jobs", group="admin", order=940, permission="core.manage_jobs"))
    if "core.manage_outbox" in principal.head_office:
        items.append(NavItem(_("Outbox"), "/outbox", icon="mail", group="admin", order=950, permission="core.manage_outbox"))
    return items


def _require_head_office(request: Request, permission: str) -> None:
    if permission not in ctx(request).principal.head_office:
        raise HTTPException(403)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return _("%(seconds)s s", seconds=f"{seconds:.1f}")
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return _("%(minutes)s min %(seconds)s s", minutes=minutes, seconds=rest)
    hours, minutes = divmod(minutes, 60)
    return _("%(hours)s h %(minutes)s min", hours=hours, minutes=minutes)


def _now() -> datetime:
    return clock.now()


def _common() -> dict:
    return {"run_states": jobs.RunState.CHOICES, "triggers": jobs.Trigger.CHOICES, "duration": format_duration}


# Jobs --------------------------------------------------------------------------


async def jobs_page(request: Request) -> Response:
    _require_head_office(request, "core.manage_jobs")
    host = request.app.state.host
    settings = request.app.state.settings
    now = _now()
    declared = jobs.declared_jobs(host)
    rows = await jobs.sync_jobs(host, now)
    ids = [job.id for job in rows.values()]
    latest_ids = [
        row["last_id"]
        for row in await jobs.JobRun.filter(job_id__in=ids).exclude(state=jobs.RunState.QUEUED)
        .group_by("job_id").annotate(last_id=Max("id")).values("job_id", "last_id")
    ]
    last_runs = {run.job_id: run for run in await jobs.JobRun.filter(id__in=latest_ids).select_related("project")}
    running = {
        row["job_id"]: row["n"]
        for row in await jobs.JobRun.filter(job_id__in=ids, state=jobs.RunState.RUNNING)
        .group_by("job_id").annotate(n=Count("id")).values("job_id", "n")
    }
    tz = settings["i18n"]["default_timezone"]
    items = []
    for name in sorted(declared):
        spec, job = declared[name].spec, rows[name]
        items.append(
            {
                "job": job,
                "spec": spec,
                "last": last_runs.get(job.id),
                "running": running.get(job.id, 0),
                "next": jobs.next_slot(spec.cron, now, tz) if job.enabled else None,
            }
        )
    return await render(request, "core/jobs.html", {"items": items, **_common()})


async def _job_context(request: Request, name: str) -> dict:
    host = request.app.state.host
    declared = jobs.declared_jobs(host)
    if name not in declared:
        raise HTTPException(404)
    item = declared[name]
    job = (await jobs.sync_jobs(host, _now()))[name]
    runs = await jobs.JobRun.filter(job_id=job.id).select_related("project", "requested_by").limit(HISTORY_SIZE)
    projects: list[Project] = []
    if item.spec.per_project:
        with unscoped():
            projects = await Project.filter(is_active=True).order_by("code")
        if host.by_name[item.plugin].manifest.per_project:
            enabled = set(
                await ProjectModule.filter(module=item.plugin, enabled=True).values_list("project_id", flat=True)
            )
            projects = [p for p in projects if p.id in enabled]
    tz = request.app.state.settings["i18n"]["default_timezone"]
    return {
        "job": job,
        "spec": item.spec,
        "plugin": item.plugin,
        "runs": runs,
        "active": [run for run in runs if run.state in (jobs.RunState.QUEUED, jobs.RunState.RUNNING)],
        "projects": projects,
        "next": jobs.next_slot(item.spec.cron, _now(), tz) if job.enabled else None,
        "errors": {},
        "form": {},
        **_common(),
    }


async def job_detail(request: Request) -> Response:
    _require_head_office(request, "core.manage_jobs")
    return await render(request, "core/job_detail.html", await _job_context(request, request.path_params["name"]))


async def job_run_now(request: Request) -> Response:
    _require_head_office(request, "core.manage_jobs")
    name = request.path_params["name"]
    form = await form_data(request)
    host = request.app.state.host
    raw_project = form.get("project", "").strip()
    project_id: int | None = None
    errors: dict[str, str] = {}
    if raw_project:
        try:
            project_id = int(raw_project)
        except ValueError:
            errors["project"] = _("Choose an estate from the list.")
    if not errors:
        try:
            run = await jobs.queue_run(host, name, project_id, ctx(request).principal.id)
        except jobs.JobError as exc:
            errors["project"] = str(exc)
    if errors:
        context = await _job_context(request, name)
        context.update(errors=errors, form=form)
        return await render(request, "core/job_detail.html", context, status_code=422)
    await record(request, "job.run_now", name, project_id=project_id, run=run.id)
    worker = getattr(request.app.state, "job_worker", None)
    if worker is not None:
        worker.wake()
    return redirect(request, f"/jobs/{name}#run-{run.id}", _("The run is queued; a worker starts it within seconds."))


async def job_toggle(request: Request) -> Response:
    _require_head_office(request, "core.manage_jobs")
    name = request.path_params["name"]
    form = await form_data(request)
    host = request.app.state.host
    if name not in jobs.declared_jobs(host):
        raise HTTPException(404)
    enable = form.get("enabled") == "1"
    now = _now()
    job = (await jobs.sync_jobs(host, now))[name]
    if enable and not job.enabled:
        # Back on: count failures afresh and do not replay the slots it was off for.
        await jobs.Job.filter(id=job.id).update(
            enabled=True, active_since=now, consecutive_failures=0, deactivated_at=None, deactivation_reason=""
        )
    elif not enable and job.enabled:
        await jobs.Job.filter(id=job.id).update(enabled=False)
    await record(request, "job.enabled" if enable else "job.disabled", name)
    message = _("Job %(name)s is on.", name=name) if enable else _("Job %(name)s is off.", name=name)
    return redirect(request, f"/jobs/{name}", message)


async def run_fragment(request: Request) -> Response:
    """The progress of one run; the page polls it every second while the run is queued or running."""
    _require_head_office(request, "core.manage_jobs")
    run = await jobs.JobRun.get_or_none(id=request.path_params["id"]).select_related("job", "project", "requested_by")
    if run is None:
        raise HTTPException(404)
    if not request.headers.get("hx-request"):
        return RedirectResponse(f"/jobs/{run.job.name}#run-{run.id}", status_code=303)
    return await render(request, "core/job_detail.html", {"run": run, **_common()}, block="run_progress")


# Outbox ------------------------------------------------------------------------


async def outbox_page(request: Request) -> Response:
    _require_head_office(request, "core.manage_outbox")
    state = request.query_params.get("state", "")
    if state not in outbox.MailState.CHOICES:
        state = ""
    try:
        page = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page = 1
    query = outbox.OutboxMessage.all()
    if state:
        query = query.filter(state=state)
    total = await query.count()
    messages = await query.order_by("-id").offset((page - 1) * OUTBOX_PAGE_SIZE).limit(OUTBOX_PAGE_SIZE)
    counts = {
        row["state"]: row["n"]
        for row in await outbox.OutboxMessage.all().group_by("state").annotate(n=Count("id")).values("state", "n")
    }
    return await render(
        request,
        "core/outbox.html",
        {
            "messages": messages,
            "state": state,
            "states": outbox.MailState.CHOICES,
            "counts": counts,
            "page": page,
            "pages": max(1, -(-total // OUTBOX_PAGE_SIZE)),
            "smtp_configured": bool(request.app.state.settings["smtp"]["host"]),
        },
    )


async def outbox_message(request: Request) -> Response:
    _require_head_office(request, "core.manage_outbox")
    message = await outbox.OutboxMessage.get_or_none(id=request.path_params["id"])
    if message is None:
        raise HTTPException(404)
    return await render(
        request,
        "core/outbox_message.html",
        {"message": message, "states": outbox.MailState.CHOICES, "max_attempts": request.app.state.settings["smtp"]["max_attempts"]},
    )


async def outbox_retry(request: Request) -> Response:
    """Retry one failed message (path id) or every failed message."""
    _require_head_office(request, "core.manage_outbox")
    message_id = request.path_params.get("id")
    count = await outbox.retry([message_id] if message_id is not None else None)
    await record(request, "outbox.retry", str(message_id or "all"), count=count)
    target = f"/outbox/{message_id}" if message_id is not None else "/outbox?state=failed"
    if count:
        return redirect(request, target, _("%(count)s message(s) queued to be sent again.", count=count))
    return redirect(request, target, _("There was no failed message to retry."), level="warning")
