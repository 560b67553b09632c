"""Faults: processes killed mid-work, PostgreSQL restarted, SMTP down, disk full. Nothing lost, nothing twice.

Each test reports its figures (`procs.figures`); docs/reliability.md quotes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote

import pytest

from core import clock as core_clock
from core import db
from core import settings as settings_module
from core.attachments import Attachment
from core.i18n import local_today
from core.jobs import Job, JobRun, queue_run, sync_jobs
from core.importer import ImportBatch
from core.models import Building, Customer, CustomerUnit, Unit
from core.outbox import OutboxMessage, queue_email
from core.scope import unscoped
from core.testing import _migrate, make_project, make_user
from core.timeline import TimelineEntry
from plugins.fees.models import Bill, BillRun
from plugins.fees.money import month_start
from plugins.handover.models import Defect, Inspection, UnitHandover
from tests.fees_helpers import fee_estate
from tests.handover_helpers import clock, estate, login, make_batch  # noqa: F401  (fixtures)
from tests.reliability.procs import (
    MailServer, ThrowawayPostgres, base_env, eventually, figures, fleet, postgres_only,
)


# PostgreSQL restarted while the app runs ------------------------------------------------


OUTAGE_SECONDS = 3


@pytest.fixture
def throwaway_postgres():
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


async def test_requests_fail_cleanly_while_postgresql_restarts_and_the_same_processes_recover(
    throwaway_postgres, host, tmp_path
):
    pg = throwaway_postgres
    url = await pg.create_database("courtyard")
    await _migrate(host, url)
    settings = settings_module.load(environ={})
    settings.data["database"]["url"] = url
    settings.data["storage"]["path"] = str(tmp_path / "files")
    settings.data["security"]["secret_key"] = "test-secret"
    await db.init(host, url)
    try:
        project = await make_project("EAST", host=host)
        await make_user("agent_en", "agent", project, locale="en")
        await make_user("agent_zh", "agent", project, locale="zh_CN")
        await only_jobs(host, "core.realtime_cleanup")
    finally:
        await db.close()

    async with fleet(tmp_path) as group:
        app = group.add("app", "serve", base_env(settings))
        worker = group.add("worker", "worker", base_env(settings, COURTYARD_SERVER_JOBS_POLL_SECONDS=0.5))
        await group.start(app, worker)
        pids = (app.pid, worker.pid)
        en, zh = group.client(app.url), group.client(app.url)
        await en.login("agent_en")
        await zh.login("agent_zh")
        requests = Counter()

        async def page(browser, path="/p/EAST/"):
            started = time.monotonic()
            response = await browser.get(path)
            requests[response.status_code] += 1
            return response, time.monotonic() - started

        for _ in range(5):
            assert (await page(en))[0].status_code == 200

        pg.stop("fast")
        down_since = time.monotonic()
        answers = []
        while time.monotonic() - down_since < OUTAGE_SECONDS:
            answers.append(await page(en))
            answers.append(await page(zh))
            await asyncio.sleep(0.05)
        saved = await en.form("/p/EAST/customers/new", {"name": "王五", "phone_0": "13900001111"})
        requests[saved.status_code] += 1
        pg.start()
        outage = time.monotonic() - down_since

        assert {response.status_code for response, _ in answers} == {503} and saved.status_code == 503
        slowest = max(seconds for _, seconds in answers)
        assert slowest < 5  # no hang
        english, chinese = answers[0][0], answers[1][0]
        assert "The database cannot be reached at the moment, so nothing was saved." in english.text
        assert "暂时无法连接数据库" in chinese.text and "服务暂时不可用" in chinese.text
        assert english.headers["retry-after"] and "Traceback" not in english.text
        assert "The database cannot be reached" in saved.text

        async def serves_again():
            return (await page(en))[0].status_code == 200

        await eventually(serves_again, timeout=30, what="the app serving pages again")
        recovered = time.monotonic() - down_since
        assert (await page(zh))[0].status_code == 200
        # The worker kept running too: a job asked for now gets done.
        await db.init(host, url)
        try:
            run = await queue_run(host, "core.realtime_cleanup")
            done = await eventually(
                lambda: JobRun.filter(id=run.id, state="done").first(), timeout=60, what="a job run after the restart"
            )
            assert done.attempt == 1
            with unscoped():
                assert not await Customer.filter(name="王五").exists()  # the refused form saved nothing
        finally:
            await db.close()
        assert (app.pid, worker.pid) == pids and app.alive() and worker.alive()
        figures(
            "postgres_restart", requests=sum(requests.values()), during_outage=len(answers) + 1,
            answered_503=requests[503], outage_seconds=round(outage, 1), slowest_error_seconds=round(slowest, 2),
            back_after_seconds=round(recovered, 1), app_restarts=0, worker_restarts=0,
        )


# SIGKILL in the middle of the work -----------------------------------------------------


@pytest.fixture
def only_postgres(db_kind):
    """First in a test's arguments, so SQLite is skipped before its database is made."""
    postgres_only(db_kind)

CHUNK = 500  # units per bill-run chunk in these tests (COURTYARD_TEST_BILL_CHUNK_SIZE)
EXTRA_UNITS = 1500


async def only_jobs(host, *names: str) -> None:
    await sync_jobs(host, core_clock.now())
    await Job.exclude(name__in=names).update(enabled=False)


@pytest.mark.parametrize("killed", ["worker", "app"])
async def test_bill_run_killed_midway_finishes_after_restart_with_every_unit_billed_once(
    only_postgres, killed, app, host, settings, tmp_path
):
    project, *_rest = await fee_estate(host, units=5)
    await make_user("fee_boss", "manager", project)
    with unscoped():
        building = await Building.get(project=project, code="1")
        await Unit.bulk_create([
            Unit(project=project, building=building, code=f"1-2-{i:04d}", floor=2, area=Decimal("90.00"))
            for i in range(EXTRA_UNITS)
        ])
        units = await Unit.filter(project=project).count()
    await only_jobs(host, "fees.bill_run")
    period = month_start(local_today(project.timezone))
    fast = {"COURTYARD_SERVER_JOBS_POLL_SECONDS": 0.2, "COURTYARD_SERVER_JOBS_LEASE_SECONDS": 2,
            "COURTYARD_TEST_SLOW_BILL_CHUNK": 1.0, "COURTYARD_TEST_BILL_CHUNK_SIZE": CHUNK}

    async with fleet(tmp_path) as group:
        if killed == "worker":
            web = group.add("app", "serve", base_env(settings))
            victim = group.add("worker", "worker", base_env(settings, **fast))
            await group.start(web, victim)
        else:  # the embedded worker of an app process runs the jobs
            web = victim = group.add("app", "serve", base_env(settings, COURTYARD_SERVER_EMBEDDED_WORKER="true", **fast))
            await group.start(web)
        manager = group.client(web.url)
        await manager.login("fee_boss")
        queued = await manager.form("/p/EAST/fees/runs", {"period": f"{period:%Y-%m}"})
        assert queued.status_code == 303, queued.text[:2000]

        async def half_done():
            run = await BillRun.get_or_none(project=project, period=period)
            return run if run and run.state == "running" and CHUNK <= run.units_done < units - CHUNK else None

        await eventually(half_done, timeout=120, every=0.05, what="the bill run to be half done")
        victim.kill()
        at_kill = await BillRun.get(project=project, period=period)
        bills_at_kill = await Bill.filter(project=project, period=period).count()
        # What committed is whole: one bill per unit done, every bill with its lines; the chunk in flight left nothing.
        assert bills_at_kill == at_kill.bills_created == at_kill.units_done
        assert await half_written_bills(project, period) == 0

        killed_at = time.monotonic()
        victim.start(COURTYARD_TEST_SLOW_BILL_CHUNK=0)  # full speed after the restart
        await victim.ready()

        async def finished():
            run = await BillRun.get(project=project, period=period)
            return run if run.state in ("done", "failed") else None

        run = await eventually(finished, timeout=180, what="the bill run to finish after the restart")
        resumed_after = time.monotonic() - killed_at
        job_run = await eventually(
            lambda: JobRun.filter(job__name="fees.bill_run", state="done").first(), timeout=30, what="the job run done"
        )

    assert run.state == "done", run.error
    assert "taken over" in job_run.log and job_run.attempt == 2
    bills = await Bill.filter(project=project, period=period).values("unit_id", "number")
    per_unit = Counter(b["unit_id"] for b in bills)
    assert len(per_unit) == units and set(per_unit.values()) == {1}  # none lost, none twice
    serials = sorted(int(b["number"].rpartition("-")[2]) for b in bills)
    assert serials == list(range(1, units + 1))  # the chunk rolled back gave its numbers back: no gaps
    assert await half_written_bills(project, period) == 0
    figures(
        f"bill_run_kill_{killed}", units=units, killed_at_units_done=at_kill.units_done, bills_at_kill=bills_at_kill,
        bills=len(bills), rows_lost=units - len(per_unit), duplicates=sum(per_unit.values()) - len(per_unit),
        half_written=0, number_gaps=0, sigkills=victim.kills, finished_seconds_after_kill=round(resumed_after, 1),
    )


async def half_written_bills(project, period) -> int:
    """Bills without lines or whose total is not the sum of their lines."""
    from tortoise.functions import Count, Sum

    rows = await Bill.filter(project=project, period=period).annotate(
        line_count=Count("lines"), line_sum=Sum("lines__amount")
    ).values("id", "total", "line_count", "line_sum")
    return sum(1 for r in rows if not r["line_count"] or r["line_sum"] != r["total"])


IMPORT_ROWS = 1500


def import_file(rows: int) -> bytes:
    lines = ["楼栋,房号,楼层,面积(㎡),用途,业主姓名,电话,关系"]
    lines += [f"5,5-{i:04d},{1 + i // 100},90.00,住宅,业主{i},138{i:08d},业主" for i in range(rows)]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8-sig")


async def test_import_killed_midway_writes_nothing_and_runs_whole_after_restart(only_postgres, app, host, settings, tmp_path):
    east = await make_project("EAST", host=host)
    await make_user("east_admin", "admin", east)
    async with fleet(tmp_path) as group:
        web = group.add("app", "serve", base_env(settings, COURTYARD_TEST_SLOW_IMPORT_ROW=0.004))
        await group.start(web)
        admin = group.client(web.url)
        await admin.login("east_admin")
        uploaded = await admin.form("/p/EAST/import", {}, files={"file": ("units.csv", import_file(IMPORT_ROWS), "text/csv")})
        assert uploaded.status_code == 303, uploaded.text[:2000]
        page = uploaded.headers["location"]
        batch_id = int(page.rpartition("/")[2])
        assert (await admin.form(page + "/commit", {})).status_code == 303

        async def under_way():
            batch = await ImportBatch.get(id=batch_id)
            return batch if batch.state == "running" and 300 <= batch.done < IMPORT_ROWS - 300 else None

        at_kill = await eventually(under_way, timeout=120, every=0.05, what="the import to be under way")
        web.kill()
        # All or nothing: the import's one transaction died with the process.
        with unscoped():
            assert await Unit.filter(project=east).count() == 0
            assert await Customer.filter(project=east).count() == 0
            assert not await Building.filter(project=east, code="5").exists()
        web.start(COURTYARD_TEST_SLOW_IMPORT_ROW=0)  # full speed after the restart
        await web.ready()
        # After ten quiet minutes a running import counts as interrupted (its process is gone): time passes here.
        await ImportBatch.filter(id=batch_id).update(updated_at=core_clock.now() - timedelta(minutes=11))
        shown = await admin.get(page)
        assert "The import was interrupted (the server stopped) and nothing was written." in shown.text
        assert (await admin.form(page + "/commit", {})).status_code == 303
        batch = await eventually(
            lambda: ImportBatch.filter(id=batch_id, state__in=["done", "failed"]).first(), timeout=120,
            what="the import to finish",
        )
    assert batch.state == "done", batch.errors
    with unscoped():
        codes = Counter(await Unit.filter(project=east).values_list("code", flat=True))
        customers = await Customer.filter(project=east).count()
        links = await CustomerUnit.filter(project=east).count()
    assert len(codes) == IMPORT_ROWS and set(codes.values()) == {1}
    assert customers == IMPORT_ROWS and links == IMPORT_ROWS
    figures(
        "import_kill_app", rows=IMPORT_ROWS, rows_done_at_kill=at_kill.done, rows_written_at_kill=0,
        units=len(codes), customers=customers, links=links, rows_lost=IMPORT_ROWS - len(codes),
        duplicates=sum(codes.values()) - len(codes), sigkills=web.kills,
    )


# Email: the worker killed mid-send, the SMTP server down for a while -----------------------


def mail_worker_env(settings, smtp_port: int) -> dict:
    """A worker whose clock runs 20 times faster: the minutely send job comes every 3 s, a lease of 60 s lasts 3 s."""
    return base_env(
        settings, COURTYARD_TEST_CLOCK_SPEED=20, COURTYARD_SERVER_JOBS_POLL_SECONDS=0.2,
        COURTYARD_SMTP_HOST="127.0.0.1", COURTYARD_SMTP_PORT=smtp_port, COURTYARD_SMTP_TIMEOUT_SECONDS=5,
        COURTYARD_SMTP_RETRY_BASE_SECONDS=20, COURTYARD_SMTP_MAX_ATTEMPTS=50, COURTYARD_SMTP_BATCH_SIZE=50,
        # In fake seconds: no stall of the test machine may look like downtime or a dead worker.
        COURTYARD_SERVER_JOBS_GRACE_SECONDS=3600, COURTYARD_SERVER_JOBS_LEASE_SECONDS=3600,
    )


async def queue_mail(count: int, start: int = 0) -> list[OutboxMessage]:
    return [
        await queue_email(
            to=f"admin{i}@example.com", template="core/job_deactivated", locale="en",
            context={"job": f"demo.job{i}", "failures": 5, "error": "boom", "run_id": i, "project_id": None,
                     "deactivated_at": core_clock.now()},
        )
        for i in range(start, start + count)
    ]


async def states() -> Counter:
    return Counter(await OutboxMessage.all().values_list("state", flat=True))


@pytest.mark.parametrize("killed", ["worker", "app"])
async def test_process_killed_in_the_middle_of_a_send_delivers_every_message_once(
    only_postgres, killed, app, host, settings, tmp_path
):
    await only_jobs(host, "core.send_email")
    smtp = MailServer(hold_at=12).start()
    try:
        messages = await queue_mail(30)
        async with fleet(tmp_path) as group:
            env = mail_worker_env(settings, smtp.port)
            if killed == "worker":
                worker = group.add("worker", "worker", env)
            else:  # the embedded worker of an app process sends the mail
                worker = group.add("app", "serve", {**env, "COURTYARD_SERVER_EMBEDDED_WORKER": "true"})
            await group.start(worker)
            assert await asyncio.to_thread(smtp.holding.wait, 60), "the 12th message was never sent"
            worker.kill()  # while the server has the 12th message and has not answered yet
            at_kill = await states()
            smtp.release()  # it answers 451 to a dead connection: not accepted
            assert at_kill["sent"] == 11 and at_kill["sending"] == 19
            worker.start()
            await worker.ready()
            await eventually(lambda: all_sent(30), timeout=90, what="every message sent")
    finally:
        smtp.stop()
    ids = {m.message_id for m in messages}
    assert set(smtp.accepted) == ids and set(smtp.accepted.values()) == {1}
    figures(
        f"email_kill_{killed}", messages=len(ids), sent_at_kill=at_kill["sent"], in_flight_at_kill=at_kill["sending"],
        delivered=len(smtp.accepted), duplicates=sum(smtp.accepted.values()) - len(smtp.accepted),
        lost=len(ids - set(smtp.accepted)), sigkills=worker.kills,
    )


async def all_sent(count: int) -> bool:
    return await OutboxMessage.filter(state="sent").count() == count


async def test_smtp_server_down_for_a_while_then_every_message_arrives_once(only_postgres, app, host, settings, tmp_path):
    await only_jobs(host, "core.send_email")
    smtp = MailServer()  # not started: connections are refused
    try:
        async with fleet(tmp_path) as group:
            worker = group.add("worker", "worker", mail_worker_env(settings, smtp.port))
            await group.start(worker)
            first = await queue_mail(10)
            down_since = time.monotonic()

            async def retried_twice():
                rows = await OutboxMessage.all().values("state", "attempts", "last_error")
                return all(r["state"] == "queued" and r["attempts"] >= 2 for r in rows)

            await eventually(retried_twice, timeout=90, what="two refused attempts for every message")
            refused = sum(await OutboxMessage.all().values_list("attempts", flat=True))
            down_for = time.monotonic() - down_since
            smtp.start()
            await eventually(lambda: all_sent(10), timeout=90, what="the first ten sent")

            # Down in the middle of a batch: four accepted, then the server goes away.
            smtp.stop()
            smtp.down_after = 4
            smtp.start()
            second = await queue_mail(10, start=10)
            await eventually(lambda: asyncio.sleep(0, result=not smtp.running), timeout=90, what="the server to go down")
            await eventually(lambda: all_sent(14), timeout=90, what="the four accepted ones recorded as sent")
            await eventually(lambda: count_queued_retried(6), timeout=90, what="the six others waiting for a retry")
            smtp.down_after = 0
            smtp.start()
            await eventually(lambda: all_sent(20), timeout=90, what="all twenty sent")
    finally:
        smtp.stop()
    ids = {m.message_id for m in first + second}
    assert set(smtp.accepted) == ids and set(smtp.accepted.values()) == {1}
    figures(
        "smtp_down", messages=len(ids), refused_attempts=refused, down_seconds=round(down_for, 1),
        accepted_before_crash=4, delivered=len(smtp.accepted), duplicates=sum(smtp.accepted.values()) - len(ids),
        lost=len(ids - set(smtp.accepted)),
    )


async def count_queued_retried(count: int) -> bool:
    return await OutboxMessage.filter(state="queued", attempts__gte=1).count() == count


# Disk full for attachments ------------------------------------------------------------------


class SmallDisk:
    """Attachments on a 2 MB tmpfs that a test fills up (as root); elsewhere ENOSPC is raised at the file write."""

    def __init__(self, path: Path, monkeypatch):
        self.path = path
        self.monkeypatch = monkeypatch
        self.mounted = os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], capture_output=True
        ).returncode == 0
        self.filler = path / "filler"

    def fill(self) -> None:
        if not self.mounted:
            from core import attachments

            def no_space(*args, **kwargs):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            self.monkeypatch.setattr(attachments, "open", no_space, raising=False)
            return
        with open(self.filler, "wb") as out:
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)
        self.monkeypatch.undo()

    def files(self) -> list[Path]:
        return [p for p in self.path.rglob("*") if p.is_file() and p != self.filler]

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path, settings, monkeypatch):
    path = tmp_path / "small-disk"
    path.mkdir()
    disk = SmallDisk(path, monkeypatch)
    settings.data["storage"]["path"] = str(path)
    yield disk
    disk.unmount()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 300_000


async def test_disk_full_refuses_the_file_clearly_and_keeps_the_record(small_disk, make_client, estate):
    east = estate["east"]
    tech = await login(make_client, "tech")
    boss = await login(make_client, "boss")
    await make_batch(boss, estate)
    with unscoped():
        owner = estate["owners"][0]
        handover = await UnitHandover.all().order_by("id").first()
    inspection = await start_inspection(tech, handover)
    small_disk.fill()
    full = "disk is full. Nothing of it was kept; tell your IT administrator."  # "The file could not be stored: the server's …"

    # A file for an existing record: refused with the reason, next to the upload field; the record is as it was.
    refused = await tech.form(f"/p/EAST/files/core.Customer/{owner.id}", {}, htmx=True,
                              files={"file": ("门口.png", PNG, "image/png")})
    assert refused.status_code == 422 and full in refused.text
    page = await tech.get(f"/p/EAST/customers/{owner.id}")
    assert page.status_code == 200 and owner.name in page.text
    # An import file: refused the same way, no batch.
    imported = await boss.form("/p/EAST/import", {}, files={"file": ("units.csv", import_file(50), "text/csv")})
    assert imported.status_code == 422 and full in imported.text
    # A defect recorded with its photo: the defect is kept without the photo, and the user is told.
    recorded = await tech.post(
        f"/p/EAST/handover/inspections/{inspection.id}/defects",
        data={"csrftoken": await tech.ensure_csrf(), "item": "", "location": "客厅南墙", "description": "墙面多处裂缝",
              "category": "walls", "severity": "major", "responsible": "in_house", "contractor": "",
              "deadline": "2026-05-11"},
        files=[("photo", ("crack.png", PNG, "image/png"))],
    )
    assert recorded.status_code == 303, recorded.text[:1000]
    toast = unquote(recorded.cookies.get("courtyard_toast", ""))
    assert "Defect YF000001 recorded without its photos." in toast and "disk is full" in toast and '"warning"' in toast
    with unscoped():
        defect = await Defect.get(number="YF000001")
        assert defect.description == "墙面多处裂缝"
        assert await Attachment.all().count() == 0
        assert await ImportBatch.all().count() == 0
        assert not await TimelineEntry.filter(kind="attachment").exists()
    assert small_disk.files() == []  # no half-written file left behind

    # Space freed: the same uploads work.
    small_disk.free()
    stored = await tech.form(f"/p/EAST/files/handover.Defect/{defect.id}", {}, htmx=True,
                             files={"file": ("crack.png", PNG, "image/png")})
    assert stored.status_code == 200, stored.text[:1000]
    files = small_disk.files()
    assert len(files) == 1 and files[0].read_bytes() == PNG
    figures(
        "disk_full", mode="tmpfs" if small_disk.mounted else "injected ENOSPC", uploads_refused=3, records_kept=2,
        records_lost=0, half_written_files=0, attachments_after_space_freed=1,
    )


async def start_inspection(c, handover):
    response = await c.form(f"/p/EAST/handover/handovers/{handover.id}/inspection", {})
    assert response.status_code == 303, response.text[:500]
    with unscoped():
        return await Inspection.get(handover_id=handover.id)
