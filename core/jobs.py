"""Scheduled jobs: cron slots run once across every worker process, with retries.

Plugins declare `JobSpec`s through the `register_jobs` hook. A worker (the
embedded one inside the web process, or `run.py worker`) ticks every few
seconds and, for each enabled job and each target (every active project
where the plugin is on, or once for a global job):

1. works out the most recent cron slot in the target's time zone and, if it
   has not run yet, claims it by inserting a `JobRun` row; the UNIQUE
   (job, target, slot) constraint makes exactly one process win, on SQLite
   and PostgreSQL alike. A slot found late (after downtime) follows the job's
   `catch_up` policy: "once" runs the most recent missed slot, "skip" records
   it as skipped and waits for the next one;
2. takes queued runs (new, retries that are due, "run now" requests) and runs
   whose worker stopped sending heartbeats, with a compare-and-set UPDATE on
   (id, state, attempt) so only one worker gets each;
3. runs each in its own task: in one transaction (which also marks the run
   done, so a run's effects and its "done" commit together), with a timeout,
   a heartbeat that also publishes progress, and the project's scope.

Failures retry after `retry_delay_seconds` up to `max_attempts`; after
`jobs_deactivate_after` consecutive failed runs the job is switched off and
head-office admins are emailed through the outbox. Time comes from a clock
function, so tests drive the scheduler with frozen time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from croniter import croniter
from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.functions import Max
from tortoise.models import Model

from core import i18n
from core.db import transaction
from core.kit import JobSpec
from core.models import Membership, Project, ProjectModule
from core.plugins import PluginHost
from core.scope import Scope, unscoped, use_scope

log = logging.getLogger("courtyard.jobs")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    from core import clock  # the one clock, frozen by tests (core/clock.py)

    return clock.now()


class RunState:
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CHOICES = {
        QUEUED: i18n.lazy_gettext("Queued"),
        RUNNING: i18n.lazy_gettext("Running"),
        DONE: i18n.lazy_gettext("Done"),
        FAILED: i18n.lazy_gettext("Failed"),
        SKIPPED: i18n.lazy_gettext("Skipped"),
    }


class Trigger:
    SCHEDULE = "schedule"
    CATCH_UP = "catch_up"
    MANUAL = "manual"
    CHOICES = {
        SCHEDULE: i18n.lazy_gettext("Scheduled"),
        CATCH_UP: i18n.lazy_gettext("Catch-up after downtime"),
        MANUAL: i18n.lazy_gettext("Run now"),
    }


class Job(Model):
    """A declared job as the database knows it: on/off switch and failure streak."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    plugin = fields.CharField(max_length=64, default="")
    cron = fields.CharField(max_length=64)
    per_project = fields.BooleanField(default=True)
    enabled = fields.BooleanField(default=True)
    # Slots before this moment are not "missed": set when the job first appears
    # and when an admin switches it back on.
    active_since = fields.DatetimeField()
    consecutive_failures = fields.IntField(default=0)
    deactivated_at = fields.DatetimeField(null=True)
    deactivation_reason = fields.TextField(default="")

    class Meta:
        table = "core_job"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class JobRun(Model):
    """One run of a job for one project (or globally) and one cron slot."""

    id = fields.BigIntField(primary_key=True)
    job = fields.ForeignKeyField("core.Job", related_name="runs", on_delete=fields.CASCADE)
    project = fields.ForeignKeyField("core.Project", related_name=False, null=True, on_delete=fields.CASCADE)
    # The project id, 0 for a global job: NULLs never collide in a UNIQUE index.
    target = fields.IntField(default=0)
    slot = fields.DatetimeField()
    trigger = fields.CharField(max_length=16, default=Trigger.SCHEDULE)
    state = fields.CharField(max_length=16, default=RunState.QUEUED, db_index=True)
    attempt = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True, db_index=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    duration_seconds = fields.FloatField(null=True)
    error = fields.TextField(default="")
    log = fields.TextField(default="")
    progress_done = fields.BigIntField(default=0)
    progress_total = fields.BigIntField(default=0)
    checkpoint = fields.JSONField(default=dict)
    worker = fields.CharField(max_length=128, default="")
    heartbeat_at = fields.DatetimeField(null=True)
    requested_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField()

    class Meta:
        table = "core_job_run"
        unique_together = (("job", "target", "slot"),)
        ordering = ["-id"]


class JobError(ValueError):
    """A job request that cannot be honoured; str() is a message for the user."""


class LeaseLost(RuntimeError):
    """Another worker took this run over (ours looked dead); stop without recording anything."""


# Declared jobs --------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    spec: JobSpec
    plugin: str


def declared_jobs(host: PluginHost) -> dict[str, Declared]:
    """Every job the installed plugins declare, by name (checked: unique names, valid cron)."""
    from core.plugins import PluginError

    found: dict[str, Declared] = {}
    for result in host.call_sync("register_jobs"):
        for spec in result.value or []:
            if not isinstance(spec, JobSpec):
                raise PluginError(result.plugin, f"register_jobs must return core.api.JobSpec objects, got {spec!r}")
            if spec.name in found:
                raise PluginError(result.plugin, f"job {spec.name!r} is already declared by {found[spec.name].plugin}")
            if not croniter.is_valid(spec.cron):
                raise PluginError(result.plugin, f"job {spec.name!r}: invalid cron expression {spec.cron!r}")
            if spec.catch_up not in ("once", "skip"):
                raise PluginError(result.plugin, f"job {spec.name!r}: catch_up must be 'once' or 'skip'")
            found[spec.name] = Declared(spec, result.plugin)
    return found


async def sync_jobs(host: PluginHost, now: datetime) -> dict[str, Job]:
    """Make sure every declared job has its `Job` row; keeps admins' switches."""
    declared = declared_jobs(host)
    rows = {job.name: job for job in await Job.filter(name__in=list(declared))}
    for name, item in declared.items():
        job = rows.get(name)
        if job is None:
            try:
                job = await Job.create(
                    name=name, plugin=item.plugin, cron=item.spec.cron, per_project=item.spec.per_project,
                    active_since=now,
                )
            except IntegrityError:  # another worker created it first
                job = await Job.get(name=name)
            rows[name] = job
        elif (job.cron, job.per_project, job.plugin) != (item.spec.cron, item.spec.per_project, item.plugin):
            job.cron, job.per_project, job.plugin = item.spec.cron, item.spec.per_project, item.plugin
            await job.save(update_fields=["cron", "per_project", "plugin"])
    return rows


# Cron arithmetic -------------------------------------------------------------


def latest_slot(cron: str, now: datetime, tz: str) -> datetime:
    """The most recent slot at or before `now`, as aware UTC."""
    local = now.astimezone(ZoneInfo(tz)).replace(microsecond=0) + timedelta(seconds=1)
    return croniter(cron, local).get_prev(datetime).astimezone(timezone.utc)


def next_slot(cron: str, after: datetime, tz: str) -> datetime:
    """The first slot strictly after `after`, as aware UTC."""
    return croniter(cron, after.astimezone(ZoneInfo(tz))).get_next(datetime).astimezone(timezone.utc)


def count_slots(cron: str, after: datetime, until: datetime, tz: str, limit: int = 1000) -> int:
    """Slots in (after, until), counted up to `limit` (a week of minutely slots need not be walked)."""
    it = croniter(cron, after.astimezone(ZoneInfo(tz)))
    count = 0
    while count < limit and it.get_next(datetime).astimezone(timezone.utc) < until:
        count += 1
    return count


# Running one job -------------------------------------------------------------


class JobContext:
    """What a job's `run(ctx)` gets.

    ctx.project / ctx.project_id: the estate of a per-project run (None for a global job);
        the data scope is set to it, so queries see only that estate.
    ctx.slot: the scheduled time (aware UTC; the request time for "run now").
    ctx.manual: True when somebody asked for this run ("run now"), False for a scheduled or catch-up slot.
    ctx.now(): the worker's clock (frozen in tests).
    ctx.settings: the settings.
    ctx.attempt: 1 for the first attempt, 2 for the first retry, ...
    ctx.checkpoint: what the last `save_checkpoint` stored (empty on the first attempt).
    await ctx.progress(done, total): shown as a progress bar on the jobs page.
    await ctx.save_checkpoint(data): stored on the run in the current transaction, so
        a job that commits in chunks saves it with each chunk and resumes there.
    ctx.log(message): a line in the run's log on the jobs page.
    """

    def __init__(self, runner: "_RunExecution", project: Project | None):
        self._runner = runner
        self.project = project
        self.project_id = project.id if project else None
        self.slot: datetime = runner.run.slot
        self.manual: bool = runner.run.trigger == Trigger.MANUAL
        self.attempt: int = runner.run.attempt
        self.checkpoint: dict[str, Any] = dict(runner.run.checkpoint or {})
        self.settings = runner.worker.settings
        self.spec = runner.spec

    def now(self) -> datetime:
        return self._runner.worker.clock()

    async def progress(self, done: int, total: int | None = None) -> None:
        self._runner.set_progress(int(done), None if total is None else int(total))
        self._runner.check_lease()
        await asyncio.sleep(0)

    async def save_checkpoint(self, data: dict[str, Any]) -> None:
        run = self._runner.run
        updated = await JobRun.filter(id=run.id, worker=run.worker, attempt=run.attempt, state=RunState.RUNNING).update(
            checkpoint=data
        )
        if not updated:
            raise LeaseLost(f"run {run.id} was taken over by another worker")
        self.checkpoint = dict(data)

    def log(self, message: str) -> None:
        self._runner.add_log(str(message))


MAX_LOG_CHARS = 20_000
MAX_ERROR_CHARS = 6_000


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= MAX_ERROR_CHARS else "…" + text[-MAX_ERROR_CHARS:]


class _RunExecution:
    """One claimed attempt of a run: heartbeat, progress publishing, outcome."""

    def __init__(self, worker: "Worker", run: JobRun, item: Declared):
        self.worker = worker
        self.run = run
        self.spec = item.spec
        self.item = item
        self._progress: tuple[int, int] | None = None
        self._log: list[str] = []
        self._dirty = asyncio.Event()
        self.lost = False
        self._task: asyncio.Task | None = None
        self._deadline: asyncio.Timeout | None = None

    # Called from the job ---------------------------------------------------

    def set_progress(self, done: int, total: int | None) -> None:
        previous_total = self._progress[1] if self._progress else self.run.progress_total
        self._progress = (done, previous_total if total is None else total)
        self._dirty.set()

    def add_log(self, message: str) -> None:
        stamp = self.worker.clock().strftime("%H:%M:%S")
        self._log.append(f"{stamp} {message}")
        log.info("job %s run %s: %s", self.spec.name, self.run.id, message)
        self._dirty.set()

    def check_lease(self) -> None:
        if self.lost:
            raise LeaseLost(f"run {self.run.id} was taken over by another worker")

    def _log_text(self) -> str:
        text = "\n".join(filter(None, [self.run.log, *self._log]))
        return text if len(text) <= MAX_LOG_CHARS else "…" + text[-MAX_LOG_CHARS:]

    def _owned(self):
        run = self.run
        return JobRun.filter(id=run.id, worker=run.worker, attempt=run.attempt, state=RunState.RUNNING)

    # Heartbeat -------------------------------------------------------------

    async def _keepalive(self) -> None:
        """Renew the lease and publish progress; runs outside the job's transaction.

        Progress written inside the job's transaction would stay invisible to the
        page until the end, so the job only hands values over and this task,
        started before the transaction with its own connection, writes them.
        """
        interval = self.worker.heartbeat_seconds
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=interval)
            self._dirty.clear()
            values: dict[str, Any] = {"heartbeat_at": self.worker.clock()}
            if self._progress is not None:
                values["progress_done"], values["progress_total"] = self._progress
            if self._log:
                values["log"] = self._log_text()
            try:
                updated = await self._owned().update(**values)
            except Exception:  # a database hiccup: try again at the next beat
                log.exception("heartbeat of job run %s failed", self.run.id)
                updated = 1
            if not updated:
                self.lost = True
                log.warning("job %s run %s was taken over by another worker; stopping it", self.spec.name, self.run.id)
                if self._task is not None:
                    self._task.cancel()
                return
            await asyncio.sleep(min(0.5, interval))  # publish progress at most twice a second

    # The run ---------------------------------------------------------------

    async def execute(self) -> JobRun:
        run = self.run
        project: Project | None = None
        if run.project_id is not None:
            with unscoped():
                project = await Project.get_or_none(id=run.project_id)
            if project is None or not project.is_active or not await plugin_enabled(self.worker.host, self.item.plugin, project.id):
                await self._finish(RunState.SKIPPED, note=i18n.gettext("The module is disabled for this estate; skipped."))
                return run
        keepalive = asyncio.create_task(self._keepalive())
        # The job runs in a task of its own so a lost lease can stop it without touching the caller.
        self._task = asyncio.create_task(self._body(JobContext(self, project)))
        try:
            await self._task
        except asyncio.CancelledError:
            if self.lost:
                return run
            # Shutdown: hand the run back untouched so another worker starts it again.
            with contextlib.suppress(Exception):
                await self._owned().update(
                    state=RunState.QUEUED, attempt=run.attempt - 1, worker="", next_attempt_at=self.worker.clock(),
                    log=self._log_text(),
                )
            raise
        except LeaseLost:
            return run
        except TimeoutError as exc:
            if self._deadline is not None and self._deadline.expired():
                message = i18n.gettext("Stopped after %(seconds)s seconds (the job's time limit).", seconds=self.spec.timeout_seconds)
                await self._fail(message, None)
            else:  # a timeout inside the job (a slow server it called)
                log.exception("job %s run %s failed", self.spec.name, run.id)
                await self._fail(None, exc)
        except Exception as exc:
            log.exception("job %s run %s failed", self.spec.name, run.id)
            await self._fail(None, exc)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
        return run

    async def _body(self, context: JobContext) -> None:
        spec = self.spec
        started = self.worker.clock()
        scope = Scope.of([context.project_id]) if context.project else Scope(None)
        i18n.set_locale(self.worker.settings["i18n"]["default_locale"])  # this task's own context
        with use_scope(scope):
            async with asyncio.timeout(spec.timeout_seconds) as self._deadline:
                if spec.transactional:
                    async with transaction():
                        await spec.run(context)
                        # "done" commits with the job's changes: both or neither.
                        await self._mark_done(started)
                else:
                    await spec.run(context)
                    await self._mark_done(started)

    async def _mark_done(self, started: datetime) -> None:
        now = self.worker.clock()
        values: dict[str, Any] = {
            "state": RunState.DONE, "finished_at": now, "duration_seconds": (now - started).total_seconds(),
            "error": "", "log": self._log_text(), "next_attempt_at": None,
        }
        if self._progress is not None:
            done, total = self._progress
            values["progress_done"], values["progress_total"] = done, total
        if not await self._owned().update(**values):
            raise LeaseLost(f"run {self.run.id} was taken over by another worker")
        await Job.filter(id=self.run.job_id).update(consecutive_failures=0)
        self.run.state = RunState.DONE

    async def _finish(self, state: str, note: str) -> None:
        self._log.append(note)
        now = self.worker.clock()
        await self._owned().update(state=state, finished_at=now, log=self._log_text(), next_attempt_at=None)
        self.run.state = state

    async def _fail(self, message: str | None, exc: BaseException | None) -> None:
        text = message or ""
        if exc is not None:
            text = (text + "\n" if text else "") + _error_text(exc)
        await record_failure(self.worker, self.run, self.spec, text, self._log_text(), self._progress)


async def record_failure(
    worker: "Worker", run: JobRun, spec: JobSpec, error: str, log_text: str, progress: tuple[int, int] | None = None
) -> None:
    """A failed attempt: retry later, or give up, count the streak and maybe switch the job off."""
    now = worker.clock()
    final = run.attempt >= spec.max_attempts
    values: dict[str, Any] = {"error": error, "log": log_text}
    if progress is not None:
        values["progress_done"], values["progress_total"] = progress
    if final:
        values.update(state=RunState.FAILED, finished_at=now, next_attempt_at=None)
        if run.started_at:
            values["duration_seconds"] = (now - run.started_at).total_seconds()
    else:
        values.update(state=RunState.QUEUED, next_attempt_at=now + timedelta(seconds=spec.retry_delay_seconds))
    async with transaction():
        updated = await JobRun.filter(
            id=run.id, worker=run.worker, attempt=run.attempt, state=RunState.RUNNING
        ).update(**values)
        if not updated:
            return
        run.state = values["state"]
        if not final:
            return
        await Job.filter(id=run.job_id).update(consecutive_failures=F("consecutive_failures") + 1)
        job = await Job.get(id=run.job_id)
        threshold = int(worker.settings["server"]["jobs_deactivate_after"])
        if job.enabled and threshold > 0 and job.consecutive_failures >= threshold:
            await deactivate(job, run, error, now)


async def deactivate(job: Job, run: JobRun, error: str, now: datetime) -> None:
    """Switch a job off after too many failed runs and tell head-office admins (same transaction)."""
    from core.outbox import queue_email

    job.enabled = False
    job.deactivated_at = now
    job.deactivation_reason = error
    await job.save(update_fields=["enabled", "deactivated_at", "deactivation_reason"])
    log.error("job %s switched off after %s consecutive failed runs", job.name, job.consecutive_failures)
    for user in await job_admins():
        await queue_email(
            to=user.email,
            template="core/job_deactivated",
            context={
                "job": job.name,
                "failures": job.consecutive_failures,
                "error": error.strip().splitlines()[-1] if error.strip() else "",
                "run_id": run.id,
                "project_id": run.project_id,
                "deactivated_at": now,
            },
            locale=user.locale,
            related=f"core.Job:{job.id}",
        )


async def job_admins() -> list:
    """Active head-office users whose role may manage jobs and who have an email address."""
    memberships = await Membership.filter(project_id=None, user__is_active=True).select_related("user", "role")
    users = {}
    for membership in memberships:
        if "core.manage_jobs" in (membership.role.permissions or []) and membership.user.email:
            users[membership.user.id] = membership.user
    return list(users.values())


async def plugin_enabled(host: PluginHost, plugin: str, project_id: int) -> bool:
    manifest = host.by_name[plugin].manifest if plugin in host.by_name else None
    if manifest is None:
        return False
    if not manifest.per_project:
        return True
    return await ProjectModule.filter(project_id=project_id, module=plugin, enabled=True).exists()


# The worker ------------------------------------------------------------------


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Schedules and runs jobs in this process. Several may share a database."""

    def __init__(
        self,
        host: PluginHost,
        settings,
        *,
        clock: Clock = utcnow,
        worker_id: str | None = None,
    ):
        self.host = host
        self.settings = settings
        self.clock = clock
        self.id = worker_id or new_worker_id()
        server = settings["server"]
        self.poll_seconds = float(server["jobs_poll_seconds"])
        self.lease_seconds = float(server["jobs_lease_seconds"])
        self.heartbeat_seconds = max(0.2, self.lease_seconds / 4)
        self.grace = timedelta(seconds=float(server["jobs_grace_seconds"]))
        self.concurrency = max(1, int(server["jobs_concurrency"]))
        self.declared = declared_jobs(host)
        self.running: dict[int, asyncio.Task] = {}
        self._jobs: dict[str, Job] | None = None
        self._wake = asyncio.Event()
        # Senders that deliver soon after something was queued in this process (email,
        # webhooks); their minutely jobs catch the rest and the retries.
        self._wanted = {name: asyncio.Event() for name in SENDERS}
        self._stopping = False
        self._loop_task: asyncio.Task | None = None
        self._sender_tasks: list[asyncio.Task] = []

    # One pass ----------------------------------------------------------------

    async def tick(self) -> list[asyncio.Task]:
        """Claim due slots and start what this worker has room for; returns the started tasks."""
        now = self.clock()
        if self._jobs is None:
            self._jobs = await sync_jobs(self.host, now)
        jobs = {job.name: job for job in await Job.filter(name__in=list(self.declared))}
        await self._schedule(jobs, now)
        return await self._pick_up(jobs, now)

    async def run_once(self) -> None:
        """Run everything due now, wait for it, and return (tests, `run.py worker --once`)."""
        while True:
            started = await self.tick()
            if not started and not self.running:
                return
            await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def _targets(self) -> tuple[list[Project], dict[tuple[int, str], datetime]]:
        with unscoped():
            projects = await Project.filter(is_active=True).order_by("id")
            modules = {
                (row["project_id"], row["module"]): row["changed_at"]
                for row in await ProjectModule.filter(enabled=True).values("project_id", "module", "changed_at")
            }
        return projects, modules

    async def _schedule(self, jobs: dict[str, Job], now: datetime) -> None:
        active = [(self.declared[name], job) for name, job in jobs.items() if job.enabled]
        if not active:
            return
        projects, modules = await self._targets()
        last_slots = {
            (row["job_id"], row["target"]): row["last"]
            for row in await JobRun.filter(trigger__in=[Trigger.SCHEDULE, Trigger.CATCH_UP], job_id__in=[j.id for _, j in active])
            .group_by("job_id", "target")
            .annotate(last=Max("slot"))
            .values("job_id", "target", "last")
        }
        default_tz = self.settings["i18n"]["default_timezone"]
        for item, job in active:
            spec = item.spec
            if not spec.per_project:
                await self._schedule_target(job, spec, None, default_tz, last_slots.get((job.id, 0)), job.active_since, now)
                continue
            always_on = not self.host.by_name[item.plugin].manifest.per_project
            for project in projects:
                enabled_at = modules.get((project.id, item.plugin))
                if enabled_at is None and not always_on:
                    continue
                since = job.active_since
                # Slots before the module was switched on for this estate are not missed ones.
                if enabled_at is not None and since < enabled_at <= now:
                    since = enabled_at
                await self._schedule_target(
                    job, spec, project, project.timezone or default_tz, last_slots.get((job.id, project.id)), since, now
                )

    async def _schedule_target(
        self, job: Job, spec: JobSpec, project: Project | None, tz: str, last: datetime | None, since: datetime, now: datetime
    ) -> None:
        try:
            latest = latest_slot(spec.cron, now, tz)
        except (ValueError, KeyError) as exc:  # an estate with a mistyped time zone must not stop the others
            log.error("job %s: cannot evaluate %r in time zone %r: %s", spec.name, spec.cron, tz, exc)
            return
        anchor = max(last, since) if last else since
        if latest <= anchor:
            return
        first_due = next_slot(spec.cron, anchor, tz)
        missed = count_slots(spec.cron, anchor, latest, tz) if first_due < latest else 0
        late = now - latest > self.grace
        if not late:
            trigger, state = Trigger.SCHEDULE, RunState.QUEUED
        elif spec.catch_up == "once":
            trigger, state = Trigger.CATCH_UP, RunState.QUEUED
            missed += 1
        else:
            trigger, state = Trigger.CATCH_UP, RunState.SKIPPED
            missed += 1
        note = ""
        if missed:
            more = "+" if missed > 1000 else ""
            if state == RunState.SKIPPED:
                note = i18n.gettext(
                    "%(count)s%(more)s run(s) missed while no worker was running; skipped as declared, the next run is on schedule.",
                    count=missed, more=more,
                )
            elif trigger == Trigger.CATCH_UP:
                note = i18n.gettext(
                    "%(count)s%(more)s run(s) missed while no worker was running; running the latest once.",
                    count=missed, more=more,
                )
            else:
                note = i18n.gettext("%(count)s%(more)s earlier run(s) were missed.", count=missed, more=more)
        try:
            await JobRun.create(
                job=job, project=project, target=project.id if project else 0, slot=latest, trigger=trigger,
                state=state, next_attempt_at=now if state == RunState.QUEUED else None,
                finished_at=now if state == RunState.SKIPPED else None, log=note, created_at=now,
            )
        except IntegrityError:
            pass  # another worker claimed this slot: exactly one wins

    async def _pick_up(self, jobs: dict[str, Job], now: datetime) -> list[asyncio.Task]:
        room = self.concurrency - len(self.running)
        if room <= 0 or self._stopping:
            return []
        ids = [job.id for job in jobs.values()]
        stale_before = now - timedelta(seconds=self.lease_seconds)
        queued = await JobRun.filter(
            job_id__in=ids, state=RunState.QUEUED, next_attempt_at__lte=now
        ).order_by("next_attempt_at", "id").limit(room * 3)
        stale = await JobRun.filter(
            job_id__in=ids, state=RunState.RUNNING, heartbeat_at__lt=stale_before
        ).order_by("heartbeat_at").limit(room * 3)
        by_id = {job.id: job for job in jobs.values()}
        started: list[asyncio.Task] = []
        for run in [*stale, *queued]:
            if len(started) >= room:
                break
            if run.id in self.running:
                continue
            job = by_id[run.job_id]
            item = self.declared[job.name]
            # A run whose worker died on its last allowed attempt has failed: take it only to record that.
            exhausted = run.state == RunState.RUNNING and run.attempt >= item.spec.max_attempts
            claimed = await self._claim(run, now, stale_before, bump=not exhausted)
            if claimed is None:
                continue
            if exhausted:
                await record_failure(
                    self, claimed, item.spec, i18n.gettext("The worker running it stopped responding."), claimed.log
                )
                continue
            execution = _RunExecution(self, claimed, item)
            task = asyncio.create_task(execution.execute(), name=f"job {job.name} run {claimed.id}")
            self.running[claimed.id] = task
            task.add_done_callback(lambda _t, run_id=claimed.id: self.running.pop(run_id, None))
            started.append(task)
        return started

    async def _claim(self, run: JobRun, now: datetime, stale_before: datetime, bump: bool = True) -> JobRun | None:
        """Compare-and-set: the run is ours only if nobody changed its state or attempt first."""
        attempt = run.attempt + 1 if bump else run.attempt
        query = JobRun.filter(id=run.id, state=run.state, attempt=run.attempt)
        note = run.log
        if run.state == RunState.RUNNING:
            query = query.filter(heartbeat_at__lt=stale_before)
            line = i18n.gettext("Attempt %(n)s stopped responding (worker %(worker)s); taken over.", n=run.attempt, worker=run.worker)
            note = "\n".join(filter(None, [run.log, line]))
        elif run.error:
            line = i18n.gettext("Attempt %(n)s failed: %(error)s", n=run.attempt, error=run.error.strip().splitlines()[-1])
            note = "\n".join(filter(None, [run.log, line]))
        updated = await query.update(
            state=RunState.RUNNING, attempt=attempt, worker=self.id, started_at=now, heartbeat_at=now,
            finished_at=None, log=note,
        )
        if not updated:
            return None
        run.state, run.attempt, run.worker, run.started_at, run.heartbeat_at, run.log = (
            RunState.RUNNING, attempt, self.id, now, now, note,
        )
        return run

    # Serving -----------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def want_mail(self) -> None:
        self._wanted["mail"].set()

    def want(self, sender: str) -> None:
        self._wanted[sender].set()

    async def serve(self) -> None:
        """Tick until stopped."""
        _local_workers.add(self)
        self._sender_tasks = [
            asyncio.create_task(self._sender_loop(name), name=f"{name} sender") for name in SENDERS
        ]
        try:
            while not self._stopping:
                try:
                    await self.tick()
                except Exception:  # a failed pass (database restart): log it and try again
                    log.exception("job worker %s: tick failed", self.id)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
                self._wake.clear()
        finally:
            _local_workers.discard(self)

    async def _sender_loop(self, name: str) -> None:
        """Send what was queued in this process soon after (the minutely job catches the rest)."""
        import importlib

        module, _, function = SENDERS[name].rpartition(".")
        send = getattr(importlib.import_module(module), function)
        wanted = self._wanted[name]
        while True:
            await wanted.wait()
            # Give the transaction that queued it a moment to commit.
            await asyncio.sleep(1)
            wanted.clear()
            try:
                await send(self.settings, worker_id=self.id)
            except Exception:
                log.exception("%s sender failed", name)

    def start(self) -> "Worker":
        self._loop_task = asyncio.create_task(self.serve(), name=f"job worker {self.id}")
        return self

    async def stop(self, wait_seconds: float = 10) -> None:
        """Stop ticking; give running jobs a moment, then interrupt them (they are handed back)."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in self._sender_tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks = list(self.running.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=wait_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


_local_workers: set[Worker] = set()

# name -> "module.function(settings, worker_id=...)" that sends what is due.
SENDERS = {"mail": "core.outbox.send_pending", "webhooks": "core.webhooks.deliver_pending"}


def kick(sender: str) -> None:
    """Ask this process's worker (if any) to run a sender ("mail", "webhooks") shortly."""
    for worker in list(_local_workers):
        worker.want(sender)


def kick_mail() -> None:
    """Ask this process's worker (if any) to send queued email shortly."""
    kick("mail")


# Entry points ----------------------------------------------------------------


def start_embedded(app) -> Worker:
    """Run jobs inside the web process (the embedded default); `await worker.stop()` at shutdown."""
    worker = Worker(app.state.host, app.state.settings)
    app.state.job_worker = worker
    return worker.start()


async def run_worker(host: PluginHost, settings, once: bool = False, clock: Clock = utcnow) -> None:
    """`run.py worker`: jobs and email without serving pages, until SIGTERM/SIGINT."""
    import signal

    from core import db

    i18n.load_plugin_catalogs(host.plugins)
    await db.init(host, settings.database_url)
    worker = Worker(host, settings, clock=clock)
    try:
        if once:
            await worker.run_once()
            from core.outbox import send_pending

            await send_pending(settings, worker_id=worker.id)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        log.info("job worker %s started (%s jobs declared)", worker.id, len(worker.declared))
        worker.start()
        await stop.wait()
        log.info("job worker %s stopping", worker.id)
        await worker.stop()
    finally:
        await db.close()


def _resolve(host: PluginHost, name: str) -> Declared:
    item = declared_jobs(host).get(name)
    if item is None:
        raise JobError(i18n.gettext("There is no job named %(name)s.", name=name))
    return item


async def queue_run(
    host: PluginHost, name: str, project_id: int | None = None, requested_by: int | None = None, *, now: datetime | None = None
) -> JobRun:
    """Ask for a run of `name` now (for `project_id` if it is a per-project job); a worker picks it up."""
    item = _resolve(host, name)
    now = now or utcnow()
    project = None
    if item.spec.per_project:
        if project_id is None:
            raise JobError(i18n.gettext("Choose the estate to run this job for."))
        with unscoped():
            project = await Project.get_or_none(id=project_id, is_active=True)
        if project is None:
            raise JobError(i18n.gettext("That estate does not exist or is archived."))
        if not await plugin_enabled(host, item.plugin, project.id):
            raise JobError(i18n.gettext("The module of this job is disabled for %(estate)s.", estate=project.name))
    elif project_id is not None:
        raise JobError(i18n.gettext("This job runs for all estates at once; it takes no estate."))
    jobs = await sync_jobs(host, now)
    return await JobRun.create(
        job=jobs[name], project=project, target=project.id if project else 0, slot=now, trigger=Trigger.MANUAL,
        state=RunState.QUEUED, next_attempt_at=now, requested_by_id=requested_by, created_at=now,
    )


async def run_job_now(
    name: str, project_id: int | None = None, requested_by: int | None = None, *, clock: Clock = utcnow
) -> JobRun:
    """Run a job now in this process and return its run once finished (or waiting for a retry).

    Raises `JobError` for an unknown job, a missing or foreign estate, or a
    module that is disabled for the estate.
    """
    from core.plugins import current_host
    from core.settings import current

    host = current_host()
    worker = Worker(host, current(), clock=clock)
    run = await queue_run(host, name, project_id, requested_by, now=clock())
    claimed = await worker._claim(run, clock(), clock())
    if claimed is None:  # a background worker got to it first: wait for its outcome
        while True:
            await asyncio.sleep(0.2)
            await run.refresh_from_db()
            if run.state not in (RunState.QUEUED, RunState.RUNNING):
                return run
    await _RunExecution(worker, claimed, worker.declared[name]).execute()
    await claimed.refresh_from_db()
    return claimed
