"""Scheduled jobs: the monthly bill run, daily dunning, the daily collection snapshot."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from core.api import Project
from plugins.fees.billing import run_bill_run, start_bill_run
from plugins.fees.dunning import apply_dunning
from plugins.fees.models import BillRun, BillRunState
from plugins.fees.money import month_start
from plugins.fees.reports import take_snapshot


def local_date(ctx):
    return ctx.now().astimezone(ZoneInfo(ctx.project.timezone)).date()


def due_day(ctx) -> int:
    return int(ctx.settings.get("fees", {}).get("due_day", 15))


async def bill_run_job(ctx) -> None:
    """Bill the slot's month (unless already done), then every run queued from the fees page.

    A run queued from the fees page for a past month is worked through alone: it must not
    start the current month as a side effect. "Run now" from the jobs page, with nothing queued,
    bills the current month like the schedule does.

    A run interrupted by a crash is still marked running or failed and so is
    picked up again here; each resumes after its last committed unit.
    """
    period = month_start(ctx.slot.astimezone(ZoneInfo(ctx.project.timezone)).date())
    pending = BillRun.filter(project_id=ctx.project_id).exclude(state=BillRunState.DONE)
    queued_by_hand = ctx.manual and await pending.exists()
    if not queued_by_hand and not await BillRun.filter(project_id=ctx.project_id, period=period).exists():
        await start_bill_run(ctx.project_id, period, now=ctx.now())
    pending = await pending.order_by("period")
    for run in pending:
        ctx.log(f"bill run {run.period:%Y-%m}")
        await run_bill_run(
            ctx.project, run.period, progress=ctx.progress, checkpoint=ctx.save_checkpoint, due_day=due_day(ctx),
            now=ctx.now(),
        )


async def dunning_job(ctx) -> None:
    from core.api import current_host, enabled_modules

    host = current_host()
    project: Project = ctx.project
    report = await apply_dunning(
        project, local_date(ctx), now=ctx.now(), host=host, enabled=await enabled_modules(project, host)
    )
    ctx.log(f"dunning steps applied: {report.applied or 0}, units held: {report.held}")


async def snapshot_job(ctx) -> None:
    await take_snapshot(ctx.project, local_date(ctx), now=ctx.now())
