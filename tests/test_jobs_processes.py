"""Several real worker processes on one database: each slot runs once, a killed worker's run is finished."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from core.jobs import Job, JobRun, queue_run, sync_jobs
from core.settings import ROOT
from core.testing import make_project, make_user
from tests.sample_plugins.chores.models import Tick

CHORES = "tests.sample_plugins.chores"
PROGRESS = re.compile(r"\d+ / \d+ · (\d+)%")


@pytest.fixture
def plugin_modules():
    return [CHORES]


def worker_env(settings, **extra) -> dict:
    return {
        **os.environ,
        "COURTYARD_NO_BOOTSTRAP": "1",
        "COURTYARD_DATABASE_URL": settings["database"]["url"],
        "COURTYARD_SECURITY_SECRET_KEY": settings["security"]["secret_key"],
        "COURTYARD_STORAGE_PATH": str(settings["storage"]["path"]),
        "COURTYARD_SMTP_HOST": "",
        "COURTYARD_PLUGINS_EXTRA": CHORES,
        "COURTYARD_I18N_DEFAULT_LOCALE": "en",  # the log lines asserted below are the English source
        **{key: str(value) for key, value in extra.items()},
    }


def spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def output(process: subprocess.Popen) -> str:
    return process.stdout.read().decode(errors="replace")[-3000:] if process.stdout else ""


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def only(host, *names, at=None):
    await sync_jobs(host, at or datetime.now(timezone.utc))
    await Job.exclude(name__in=names).update(enabled=False)


def postgres_only(db_kind):
    if db_kind != "postgres":
        pytest.skip("several worker processes writing at once need PostgreSQL (SQLite has one writer at a time)")


async def test_four_worker_processes_run_every_slot_exactly_once(app, host, settings, db_kind):
    postgres_only(db_kind)
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    base = datetime(2031, 5, 1, 0, 0, tzinfo=timezone.utc)
    await only(host, "chores.tally", "chores.global_tally", at=base)
    speed = 20.0  # one cron minute every three seconds
    t0 = time.time() + 6  # the shared fake clock reaches `base` once every worker is up
    env = worker_env(
        settings,
        CHORES_CLOCK_BASE=base.isoformat(), CHORES_CLOCK_T0=t0, CHORES_CLOCK_SPEED=speed,
        COURTYARD_SERVER_JOBS_POLL_SECONDS=0.1,
        # In fake seconds: no stall of the test machine may look like downtime or a dead worker.
        COURTYARD_SERVER_JOBS_GRACE_SECONDS=3600, COURTYARD_SERVER_JOBS_LEASE_SECONDS=3600,
    )
    workers = [spawn(["tests/job_worker.py"], env) for _ in range(4)]
    try:
        minutes = 7
        while time.time() < t0 + (minutes * 60 + 20) / speed:
            await asyncio.sleep(0.5)
            for process in workers:
                assert process.poll() is None, f"a worker exited early:\n{output(process)}"
    finally:
        stop(workers)

    slots = [base + timedelta(minutes=m) for m in range(1, minutes + 1)]
    ticks = await Tick.filter(slot__lte=slots[-1]).values("job", "project_id", "slot")
    counted = Counter((t["job"], t["project_id"], t["slot"]) for t in ticks)
    expected = {
        (job, project, slot): 1
        for slot in slots
        for job, project in (("tally", east.id), ("tally", west.id), ("global_tally", None))
    }
    assert counted == expected
    runs = await JobRun.filter(slot__lte=slots[-1]).values("state", "attempt", "worker")
    assert {(r["state"], r["attempt"]) for r in runs} == {("done", 1)} and len(runs) == len(expected)


async def test_a_killed_workers_run_is_finished_by_another_and_its_progress_shows(app, host, settings, client):
    east = await make_project("EAST", host=host)
    await make_user("boss", "admin", None)
    await only(host)
    run = await queue_run(host, "chores.long", east.id)
    env = worker_env(
        settings, CHORES_ITEMS=30, CHORES_STEP_SECONDS=0.15,
        COURTYARD_SERVER_JOBS_POLL_SECONDS=0.2, COURTYARD_SERVER_JOBS_LEASE_SECONDS=2,
    )
    await client.login("boss")
    percents: list[int] = []

    async def watch(until, timeout: float = 60) -> JobRun:
        deadline = time.time() + timeout
        while time.time() < deadline:
            html = (await client.get(f"/jobs/runs/{run.id}", headers={"HX-Request": "true"})).text
            shown = PROGRESS.search(html)
            if shown:
                percents.append(int(shown.group(1)))
            current = await JobRun.get(id=run.id)
            if until(current):
                return current
            await asyncio.sleep(0.1)
        raise AssertionError(f"run did not get there in time: {current.state} {current.progress_done}")

    first = spawn(["run.py", "worker"], env)
    second = None
    try:
        killed = await watch(lambda r: r.state == "running" and r.progress_done >= 6)
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = spawn(["run.py", "worker"], env)
        finished = await watch(lambda r: r.state in ("done", "failed"))
    finally:
        stop([p for p in (first, second) if p is not None])

    assert finished.state == "done", finished.error
    assert finished.attempt == 2 and finished.worker != killed.worker
    assert "stopped responding" in finished.log and "resuming at item" in finished.log
    # Every item was done exactly once: the committed checkpoint told the second worker where to go on.
    assert sorted(await Tick.filter(job="long").values_list("n", flat=True)) == list(range(30))
    assert (finished.progress_done, finished.progress_total) == (30, 30)
    # The page's progress bar advanced (over both attempts) and never went backwards.
    assert len(set(percents)) >= 3 and percents == sorted(percents)
