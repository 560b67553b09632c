"""A test plugin with scheduled jobs (registered by the job and outbox tests only).

In-process tests steer the jobs through the module-level knobs below; worker
subprocesses through environment variables (CHORES_ITEMS, CHORES_STEP_SECONDS).
"""

import asyncio
import os

from core.api import HOOK_API_VERSION, JobSpec, Manifest, hookimpl, transaction
from core.scope import current_scope

MANIFEST = Manifest(name="chores", label="Chores", version="1.0", hook_api=HOOK_API_VERSION)

# How many more runs of chores.flaky fail before it succeeds.
FLAKY_FAILURES = {"left": 0}
# When set, chores.long waits for this queue to hand it each step (progress tests).
STEPS: dict = {"queue": None}


def _scope() -> str:
    ids = current_scope().project_ids
    return "all" if ids is None else ",".join(str(i) for i in sorted(ids))


async def _tick(ctx, job: str, n: int = 0) -> None:
    from tests.sample_plugins.chores.models import Tick

    await Tick.create(
        job=job, project_id=ctx.project_id, slot=ctx.slot, n=n, attempt=ctx.attempt, scope=_scope(), pid=os.getpid()
    )


async def tally(ctx):
    await _tick(ctx, "tally")


async def global_tally(ctx):
    await _tick(ctx, "global_tally")


async def hourly_once(ctx):
    await _tick(ctx, "hourly_once")


async def hourly_skip(ctx):
    await _tick(ctx, "hourly_skip")


async def flaky(ctx):
    await _tick(ctx, "flaky")  # rolled back with the failure
    if FLAKY_FAILURES["left"] > 0:
        FLAKY_FAILURES["left"] -= 1
        raise RuntimeError("the printer is on fire")


async def long(ctx):
    """A resumable job: one item per committed chunk, checkpoint saved with it."""
    total = int(os.environ.get("CHORES_ITEMS", "8"))
    step = float(os.environ.get("CHORES_STEP_SECONDS", "0"))
    start = ctx.checkpoint.get("next", 0)
    if start:
        ctx.log(f"resuming at item {start}")
    await ctx.progress(start, total)
    for i in range(start, total):
        if STEPS["queue"] is not None:
            await STEPS["queue"].get()
        elif step:
            await asyncio.sleep(step)
        async with transaction():
            await _tick(ctx, "long", i)
            await ctx.save_checkpoint({"next": i + 1})
        await ctx.progress(i + 1, total)


async def slow(ctx):
    await _tick(ctx, "slow")
    await asyncio.sleep(30)


async def rollback(ctx):
    await _tick(ctx, "rollback")
    raise ValueError("half-way failure")


@hookimpl
def register_models():
    return ["tests.sample_plugins.chores.models"]


@hookimpl
def register_jobs():
    return [
        JobSpec("chores.tally", "* * * * *", tally, label="Tally"),
        JobSpec("chores.global_tally", "* * * * *", global_tally, per_project=False),
        JobSpec("chores.hourly_once", "0 * * * *", hourly_once, per_project=False, catch_up="once"),
        JobSpec("chores.hourly_skip", "0 * * * *", hourly_skip, per_project=False, catch_up="skip"),
        JobSpec("chores.flaky", "*/10 * * * *", flaky, per_project=False, max_attempts=2, retry_delay_seconds=30),
        JobSpec("chores.long", "0 3 1 * *", long, label="Long job", transactional=False, timeout_seconds=120),
        JobSpec("chores.rollback", "0 4 * * *", rollback, max_attempts=1),
        JobSpec("chores.slow", "0 5 * * *", slow, per_project=False, timeout_seconds=1, max_attempts=1),
    ]
