"""Scheduled jobs in one process, with frozen time: slots, catch-up, retries, the admin page."""

import asyncio
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from core.jobs import Job, JobError, JobRun, Worker, queue_run, run_job_now, sync_jobs
from core.outbox import OutboxMessage
from core.testing import make_project, make_user
from tests.sample_plugins import chores
from tests.sample_plugins.chores.models import Tick

CHORES = "tests.sample_plugins.chores"


@pytest.fixture
def plugin_modules():
    return [CHORES]


class FrozenClock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def set(self, *parts) -> None:
        self.at = datetime(*parts, tzinfo=timezone.utc)

    def advance(self, **delta) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock():
    return FrozenClock(datetime(2031, 3, 3, 0, 0, 30, tzinfo=timezone.utc))


@pytest.fixture
async def estates(app, host):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host, modules=[])  # chores is off here
    await make_user("boss", "admin", None, email="boss@example.com", locale="en")
    await make_user("east_admin", "admin", east, email="east@example.com")
    return east, west


@pytest.fixture(autouse=True)
def reset_chores():
    chores.FLAKY_FAILURES["left"] = 0
    chores.STEPS["queue"] = None
    yield
    chores.STEPS["queue"] = None


async def only(host, clock, *names):
    """Register the jobs, then switch off all but `names` (each test looks at a few)."""
    await sync_jobs(host, clock())
    await Job.exclude(name__in=names).update(enabled=False)


async def ticks(job: str):
    return await Tick.filter(job=job).order_by("slot", "n").values("project_id", "slot", "n", "attempt", "scope")


async def test_each_slot_runs_once_although_several_workers_compete(estates, host, settings, clock):
    east, _west = estates
    await only(host, clock, "chores.tally", "chores.global_tally")
    workers = [Worker(host, settings, clock=clock) for _ in range(3)]
    for _minute in range(4):
        clock.advance(minutes=1)
        await asyncio.gather(*(worker.run_once() for worker in workers))

    tally = await ticks("tally")
    global_tally = await ticks("global_tally")
    # Per-project: only the estate with the module on, in that estate's scope; global: unscoped.
    assert [(t["project_id"], t["scope"]) for t in tally] == [(east.id, str(east.id))] * 4
    assert [(t["project_id"], t["scope"]) for t in global_tally] == [(None, "all")] * 4
    expected_slots = [datetime(2031, 3, 3, 0, m, tzinfo=timezone.utc) for m in range(1, 5)]
    assert [t["slot"] for t in tally] == expected_slots
    assert [t["slot"] for t in global_tally] == expected_slots
    assert Counter(await JobRun.all().values_list("state", flat=True)) == {"done": 8}


async def test_catch_up_after_downtime_follows_each_jobs_policy(estates, host, settings, clock):
    await only(host, clock, "chores.hourly_once", "chores.hourly_skip")
    worker = Worker(host, settings, clock=clock)
    clock.set(2031, 3, 3, 1, 0, 5)
    await worker.run_once()
    # Down from 01:00 until 05:30: the 02:00 to 05:00 slots were missed.
    clock.set(2031, 3, 3, 5, 30, 0)
    await worker.run_once()

    def hours(rows):
        return [row["slot"].hour for row in rows]

    assert hours(await ticks("hourly_once")) == [1, 5]  # the latest missed slot, once
    assert hours(await ticks("hourly_skip")) == [1]  # nothing until the next slot
    caught_up = await JobRun.get(job__name="chores.hourly_once", slot=datetime(2031, 3, 3, 5, tzinfo=timezone.utc))
    assert caught_up.trigger == "catch_up" and caught_up.state == "done" and "4 run(s) missed" in caught_up.log
    skipped = await JobRun.get(job__name="chores.hourly_skip", slot=datetime(2031, 3, 3, 5, tzinfo=timezone.utc))
    assert skipped.state == "skipped" and "skipped as declared" in skipped.log

    clock.set(2031, 3, 3, 6, 0, 10)
    await worker.run_once()
    assert hours(await ticks("hourly_once")) == [1, 5, 6]
    assert hours(await ticks("hourly_skip")) == [1, 6]


async def test_failed_run_is_retried_after_its_delay(estates, host, settings, clock):
    await only(host, clock, "chores.flaky")
    chores.FLAKY_FAILURES["left"] = 1
    worker = Worker(host, settings, clock=clock)
    clock.set(2031, 3, 3, 0, 10, 5)
    await worker.run_once()
    run = await JobRun.get(job__name="chores.flaky")
    assert run.state == "queued" and run.attempt == 1 and "the printer is on fire" in run.error
    assert run.next_attempt_at == datetime(2031, 3, 3, 0, 10, 35, tzinfo=timezone.utc)
    assert await Tick.filter(job="flaky").count() == 0  # the failed attempt's transaction was rolled back

    clock.advance(seconds=10)
    await worker.run_once()
    assert (await JobRun.get(id=run.id)).attempt == 1  # not due yet

    clock.advance(seconds=25)
    await worker.run_once()
    run = await JobRun.get(id=run.id)
    assert run.state == "done" and run.attempt == 2 and run.error == ""
    assert "Attempt 1 failed" in run.log
    assert [t["attempt"] for t in await ticks("flaky")] == [2]


async def test_job_that_keeps_failing_is_switched_off_and_admins_are_emailed(estates, host, settings, clock, client):
    settings["server"]["jobs_deactivate_after"] = 2
    await only(host, clock, "chores.flaky")
    chores.FLAKY_FAILURES["left"] = 100
    worker = Worker(host, settings, clock=clock)
    for slot_minute in (10, 20):
        clock.set(2031, 3, 3, 0, slot_minute, 5)
        await worker.run_once()
        clock.advance(seconds=31)
        await worker.run_once()  # the retry fails too: the run has failed
    job = await Job.get(name="chores.flaky")
    assert not job.enabled and job.deactivated_at is not None and job.consecutive_failures == 2
    assert Counter(await JobRun.filter(job=job).values_list("state", flat=True)) == {"failed": 2}

    # Head-office admins get an email in their language; the estate's admin does not.
    mails = await OutboxMessage.all()
    assert [m.recipient for m in mails] == ["boss@example.com"]
    assert "chores.flaky" in mails[0].subject and "the printer is on fire" in mails[0].body_text
    assert "/jobs/chores.flaky" in mails[0].body_text and mails[0].body_html

    clock.set(2031, 3, 3, 0, 30, 5)
    await worker.run_once()
    assert await JobRun.filter(job=job).count() == 2  # switched off: no more runs

    await client.login("boss")
    page = await client.get("/jobs/chores.flaky")
    assert "Switched off on" in page.text and "the printer is on fire" in page.text
    listing = await client.get("/jobs")
    assert "Switched off after failures" in listing.text

    # Switching it back on starts a fresh streak and does not replay the slots it was off for.
    response = await client.form("/jobs/chores.flaky/toggle", {"enabled": "1"})
    assert response.status_code == 303
    job = await Job.get(name="chores.flaky")
    assert job.enabled and job.consecutive_failures == 0 and job.deactivated_at is None


async def test_a_failing_transactional_job_leaves_nothing_behind(estates, host, clock):
    east, _west = estates
    run = await run_job_now("chores.rollback", east.id)
    assert run.state == "failed" and "half-way failure" in run.error
    assert await Tick.filter(job="rollback").count() == 0


async def test_a_run_over_its_time_limit_is_stopped_and_rolled_back(estates):
    run = await run_job_now("chores.slow")
    assert run.state == "failed" and "Stopped after 1 seconds" in run.error
    assert await Tick.filter(job="slow").count() == 0


async def test_run_now_refuses_what_cannot_run(estates, host):
    east, west = estates
    with pytest.raises(JobError, match="disabled"):
        await run_job_now("chores.tally", west.id)
    with pytest.raises(JobError, match="Choose the estate"):
        await run_job_now("chores.tally")
    with pytest.raises(JobError, match="takes no estate"):
        await run_job_now("chores.global_tally", east.id)
    with pytest.raises(JobError, match="no job named"):
        await run_job_now("chores.nope")
    assert await JobRun.all().count() == 0


async def test_run_now_from_the_admin_page_shows_a_progress_bar_that_advances(estates, host, settings, client):
    east, _west = estates
    chores.STEPS["queue"] = asyncio.Queue()
    await client.login("boss")
    page = await client.get("/jobs/chores.long")
    assert page.status_code == 200 and "Run now" in page.text and "Estate EAST" in page.text

    response = await client.form("/jobs/chores.long/run", {"project": str(east.id)})
    assert response.status_code == 303 and response.headers["location"].startswith("/jobs/chores.long")
    run = await JobRun.get(job__name="chores.long").prefetch_related("requested_by")
    assert run.state == "queued" and run.trigger == "manual" and run.requested_by.username == "boss"

    worker = Worker(host, settings)
    [task] = await worker.tick()

    async def fragment_shows(text: str) -> str:
        for _ in range(100):
            html = (await client.get(f"/jobs/runs/{run.id}", headers={"HX-Request": "true"})).text
            if text in html:
                return html
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared in the progress fragment:\n{html}")

    for done, percent in ((2, "25%"), (4, "50%"), (6, "75%")):
        for _ in range(2):
            chores.STEPS["queue"].put_nowait(None)
        html = await fragment_shows(f"{done} / 8 · {percent}")
        assert 'hx-trigger="every 1s"' in html and 'class="progress-bar" style="width: ' + percent in html
    for _ in range(2):
        chores.STEPS["queue"].put_nowait(None)
    await task
    html = await fragment_shows("Done")
    assert "hx-trigger" not in html  # finished: the page stops polling
    history = await client.get("/jobs/chores.long")
    assert "Estate EAST" in history.text and "boss" in history.text


async def test_run_now_form_explains_a_missing_estate(estates, client):
    await client.login("boss")
    response = await client.form("/jobs/chores.long/run", {"project": ""})
    assert response.status_code == 422 and "Choose the estate to run this job for." in response.text
    assert await JobRun.all().count() == 0


async def test_a_run_whose_worker_died_is_taken_over_and_resumes(estates, host, settings, clock):
    east, _west = estates
    await only(host, clock)
    run = await queue_run(host, "chores.long", east.id, now=clock())
    # A worker claimed it, committed items 0-2 with their checkpoint, then its process died.
    await JobRun.filter(id=run.id).update(
        state="running", worker="gone:1:abc", attempt=1, started_at=clock(), heartbeat_at=clock(),
        checkpoint={"next": 3}, progress_done=3, progress_total=8,
    )
    for n in range(3):
        await Tick.create(job="long", project=east, slot=run.slot, n=n)
    worker = Worker(host, settings, clock=clock)
    clock.advance(seconds=30)
    await worker.run_once()
    assert (await JobRun.get(id=run.id)).worker == "gone:1:abc"  # its lease has not run out yet

    clock.advance(seconds=31)
    await worker.run_once()
    run = await JobRun.get(id=run.id)
    assert run.state == "done" and run.attempt == 2 and run.worker == worker.id
    assert "stopped responding" in run.log and "resuming at item 3" in run.log
    assert [t["n"] for t in await ticks("long")] == list(range(8))
    assert (run.progress_done, run.progress_total) == (8, 8)


async def test_jobs_pages_are_for_head_office_admins(estates, client, make_client):
    await client.login("boss")
    listing = await client.get("/jobs")
    assert listing.status_code == 200
    assert "chores.tally" in listing.text and "core.send_email" in listing.text and 'href="/jobs"' in listing.text
    estate_admin = make_client()
    await estate_admin.login("east_admin")
    assert (await estate_admin.get("/jobs")).status_code == 403
    assert (await estate_admin.get("/outbox")).status_code == 403
    assert 'href="/jobs"' not in (await estate_admin.get("/p/EAST/")).text
