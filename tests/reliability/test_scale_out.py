"""Scale-out: three app processes and two workers on one PostgreSQL, driven together.

The production layout of docs/deployment.md: several `run.py serve` processes behind a
reverse proxy, `embedded_worker = false`, `realtime.broker = "postgres"`, and separate
`run.py worker` processes. Instead of a proxy the test's browsers send their requests
to the app processes in turn (round robin, every request to the next process), which
is what a proxy without sticky sessions does to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from core.api import unscoped
from core.jobs import Job, JobRun, sync_jobs
from core.models import Customer, ProjectModule
from core.people import create_customer, link_unit
from core.testing import make_project, make_units, make_user
from plugins.hotline.call_models import Call, PbxIntegration
from tests.reliability.procs import base_env, eventually, figures, fleet, postgres_only
from tests.sample_plugins.chores.models import Tick
from tests.test_hotline_telephony import event, post_signed
from tests.test_realtime import event_stream

CHORES = "tests.sample_plugins.chores"
APPS, WORKERS = 3, 2
SLOTS = 5  # cron minutes checked


@pytest.fixture
def plugin_modules():
    return [CHORES]


@pytest.fixture(autouse=True)
def _postgres(db_kind):
    postgres_only(db_kind)


async def test_three_app_processes_and_two_workers_on_one_postgresql(app, host, settings, tmp_path):
    east = await make_project("EAST", host=host)
    unit = (await make_units(east, 1))[0]
    with unscoped():
        zhang = await create_customer(east, "张三", ["138 0013 8000"])
        await link_unit(zhang, unit)
    await make_user("boss", "admin", None)
    await make_user("agent_li", "agent", east, extension="8001")
    pbx = await PbxIntegration.create(name="EAST desk", project=east, secret="pbx-shared-secret")
    base = datetime(2031, 5, 1, 0, 0, tzinfo=timezone.utc)
    await sync_jobs(host, base)
    await Job.exclude(name__in=["chores.tally", "chores.global_tally"]).update(enabled=False)

    speed = 20.0  # one cron minute every three seconds
    t0 = time.time() + 10  # the workers' shared fake clock shows `base` then
    clock = {
        "COURTYARD_TEST_CLOCK_SPEED": speed, "COURTYARD_TEST_CLOCK_BASE": base.isoformat(), "COURTYARD_TEST_CLOCK_T0": t0,
        "COURTYARD_SERVER_JOBS_POLL_SECONDS": 0.1,
        # In fake seconds: no stall of the test machine may look like downtime or a dead worker.
        "COURTYARD_SERVER_JOBS_GRACE_SECONDS": 3600, "COURTYARD_SERVER_JOBS_LEASE_SECONDS": 3600,
    }
    requests = Counter()

    async with fleet(tmp_path) as group:
        apps = [group.add(f"app{i}", "serve", base_env(settings, [CHORES])) for i in range(APPS)]
        workers = [group.add(f"worker{i}", "worker", base_env(settings, [CHORES], **clock)) for i in range(WORKERS)]
        await group.start(*apps, *workers)
        turn = itertools.count()

        def next_app() -> str:
            return apps[next(turn) % APPS].url

        async def get(browser, path: str):
            response = await browser.get(next_app() + path)
            requests["get"] += 1
            assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
            return response

        # Sessions: one login, every process knows it (sessions live in the database).
        boss, agent = group.client(apps[0].url), group.client(apps[0].url)
        await boss.login("boss")
        await agent.login("agent_li")
        requests["post"] += 2
        pages = ("/p/EAST/", "/p/EAST/customers", f"/p/EAST/customers/{zhang.id}", "/p/EAST/hotline/")
        for _ in range(4):
            for path in pages:
                page = await get(agent, path)
                assert "agent_li" in page.text
        # The same, 80 at once.
        burst = await asyncio.gather(*(get(agent, path) for path in pages * 20))
        assert all("agent_li" in page.text for page in burst)
        # Logged out through one process: logged out on all.
        leaving = group.client(apps[0].url)
        await leaving.login("agent_li")
        await get(leaving, "/p/EAST/")
        stolen = dict(leaving.cookies.items())  # a copy of the session cookie, kept after the logout
        assert (await leaving.form(apps[1].url + "/logout", {})).status_code == 303
        requests["post"] += 2
        replay = group.client(apps[0].url)
        replay.cookies.update(stolen)
        for target in apps:
            response = await replay.get(target.url + "/p/EAST/")
            requests["get"] += 1
            assert response.status_code == 303 and response.headers["location"].startswith("/login"), target.name
        # Writes through every process at once: one row each, no number twice.
        created = await asyncio.gather(*(
            agent.form(next_app() + "/p/EAST/customers/new", {"name": f"客户{i}", "phone_0": f"1390000{i:04d}"})
            for i in range(30)
        ))
        requests["post"] += 30
        assert [r.status_code for r in created] == [303] * 30
        with unscoped():
            names = await Customer.filter(name__startswith="客户").values_list("name", flat=True)
        assert sorted(names) == sorted(f"客户{i}" for i in range(30))

        # Module toggles: switched off through one process, gone in all at once; back on through another.
        await get(boss, "/p/EAST/complaints/")
        off = await boss.form(apps[1].url + "/p/EAST/modules/complaints", {"enabled": "0"})
        requests["post"] += 1
        assert off.status_code == 303
        for target in apps:
            response = await boss.get(target.url + "/p/EAST/complaints/")
            requests["get"] += 1
            assert response.status_code == 404, target.name
        on = await boss.form(apps[2].url + "/p/EAST/modules/complaints", {"enabled": "1"})
        requests["post"] += 1
        assert on.status_code == 303
        for target in apps:
            response = await boss.get(target.url + "/p/EAST/complaints/")
            requests["get"] += 1
            assert response.status_code == 200, target.name
        with unscoped():
            assert await ProjectModule.filter(project=east, module="complaints", enabled=True).count() == 1

        # Screen pops: the agent has a tab on every process; the PBX posts to each in turn.
        cookies = dict(agent.cookies.items())
        pops = 6
        async with contextlib.AsyncExitStack() as stack:
            streams = [await stack.enter_async_context(event_stream(a.url, cookies)) for a in apps]
            await asyncio.sleep(0.3)  # every stream has subscribed
            for n in range(pops):
                now = datetime.now(timezone.utc)
                async with httpx.AsyncClient(base_url=next_app()) as pbx_http:
                    answer = await post_signed(
                        pbx_http, pbx, event("ringing", event_id=f"e-{n}", call_id=f"c-{n}", at=now),
                        secret="pbx-shared-secret", timestamp=int(now.timestamp()),
                    )
                requests["webhook"] += 1
                assert answer.status_code == 200 and answer.json()["processed"] == [f"e-{n}"]
            received = []
            for stream in streams:
                got = [await stream.next(timeout=10) for _ in range(pops)]
                received.append(got)
                assert [m["event"] for m in got] == ["screen_pop"] * pops
            ids = [[m["id"] for m in got] for got in received]
            assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == pops  # each pop once, in every tab
            for message in received[0]:
                pop = await get(agent, message["payload"]["fragment"])
                assert "张三" in pop.text
        with unscoped():
            assert await Call.filter(project=east).count() == pops

        # Job slots: both workers poll the same slots; each runs exactly once.
        async def enough_slots():
            rows = await Tick.all().values("job", "slot")
            return all(len({r["slot"] for r in rows if r["job"] == job}) > SLOTS for job in ("tally", "global_tally"))

        await eventually(enough_slots, timeout=180, every=0.5, what=f"{SLOTS + 1} cron minutes of both jobs")
        for proc in (*workers, *apps):
            assert proc.alive(), proc.output()
        for worker in workers:
            worker.stop()

    # Slots before the workers were up were missed (downtime, the catch-up policy's business): count from the first run.
    first = min(await Tick.filter(job="tally").values_list("slot", flat=True))
    slots = [first + timedelta(minutes=m) for m in range(SLOTS)]
    ticks = await Tick.filter(slot__gte=slots[0], slot__lte=slots[-1]).values("job", "project_id", "slot", "pid")
    counted = Counter((t["job"], t["project_id"], t["slot"]) for t in ticks)
    expected = {(job, project, slot): 1 for slot in slots for job, project in (("tally", east.id), ("global_tally", None))}
    assert counted == expected
    runs = await JobRun.filter(slot__gte=slots[0], slot__lte=slots[-1], job__name__startswith="chores.").values("state", "attempt")
    assert {(r["state"], r["attempt"]) for r in runs} == {("done", 1)} and len(runs) == len(expected)
    by_worker = Counter(t["pid"] for t in ticks)
    figures(
        "scale_out", app_processes=APPS, workers=WORKERS, requests=sum(requests.values()), failed_requests=0,
        customers_created=30, duplicates=0, module_toggles=2, screen_pops=pops, tabs=APPS,
        pops_received=pops * APPS, job_slots=len(expected), slot_runs=len(ticks), runs_by_worker=sorted(by_worker.values()),
    )
