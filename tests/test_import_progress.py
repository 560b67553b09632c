"""The import's progress shows while it runs, on SQLite too, and the app keeps answering meanwhile.

On SQLite the import writes over a connection of its own (core.db.own_connection)
and keeps its count in memory: before, its transaction held Tortoise's only
SQLite connection, so every request, the progress poll included, waited for
the commit and the bar jumped from nothing to 100%.
"""

import asyncio
from datetime import timedelta

import pytest

from core import importer
from core.models import Customer
from core.scope import unscoped
from tests.test_import import commit_and_wait, counts, estates, upload_ok, xlsx_bytes  # noqa: F401 (fixture)

PAUSE_AFTER = 120
ANSWER_WITHIN = 120  # seconds: only so a regression fails instead of hanging the suite


@pytest.fixture
def paused_import(monkeypatch):
    """The import stops after PAUSE_AFTER rows, inside its transaction, until `resume` is set."""
    reached, resume = asyncio.Event(), asyncio.Event()
    write = importer.Writer.write
    written = 0

    async def maybe_wait_then_write(self, row):
        nonlocal written
        if written == PAUSE_AFTER:
            reached.set()
            await resume.wait()
        await write(self, row)
        written += 1

    monkeypatch.setattr(importer.Writer, "write", maybe_wait_then_write)
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 50)
    return reached, resume


async def answer(request):
    return await asyncio.wait_for(request, ANSWER_WITHIN)


async def test_progress_shows_while_the_import_runs_and_other_work_goes_on(client, estates, paused_import):
    east, west = estates
    reached, resume = paused_import
    await client.login("east_admin")
    rows = [["楼栋", "房号", "面积", "业主姓名", "手机号"]]
    rows += [[str(1 + i // 100), f"{1 + i // 100}-1-{1000 + i}", "90", f"业主{i}", f"1390000{i:04d}"] for i in range(250)]
    page = await upload_ok(client, "big.xlsx", xlsx_bytes(rows))
    assert (await client.form(page + "/commit", {})).status_code == 303
    await asyncio.wait_for(reached.wait(), ANSWER_WITHIN)

    # Mid-way: the poll answers with the rows written so far, and keeps polling.
    fragment = await answer(client.get(page + "/progress", headers={"HX-Request": "true"}))
    assert fragment.status_code == 200 and 'data-state="running"' in fragment.text
    assert f"{PAUSE_AFTER} / 250" in fragment.text and 'hx-trigger="every 1s"' in fragment.text
    # Other pages answer too, and show nothing of the import before it commits.
    assert (await answer(client.get("/p/EAST/customers"))).status_code == 200
    assert await answer(counts(east)) == (0, 0, 0, 0, 0)

    # Someone saves a customer meanwhile: the save waits for the import if it must, and is kept.
    saved = asyncio.create_task(client.form(
        "/p/EAST/customers/new", {"name": "赵六", "phone_0": "13812345678", "preferred_channel": "phone", "locale": "zh_CN"}
    ))
    await asyncio.sleep(0.2)  # let the save reach the database while the import still holds it
    resume.set()
    finished = await asyncio.wait_for(commit_and_wait(client, page), ANSWER_WITHIN)
    assert "250 / 250 · 100%" in finished and "250 rows imported." in finished
    assert (await answer(saved)).status_code == 303
    assert await counts(east) == (3, 250, 251, 251, 250)
    with unscoped():
        assert await Customer.filter(project=east, name="赵六").exists()


async def test_a_long_import_is_not_taken_for_an_interrupted_one(client, estates, paused_import, frozen_time):
    reached, resume = paused_import
    await client.login("east_admin")
    rows = [["楼栋", "房号", "业主姓名", "手机号"]]
    rows += [["1", f"1-1-{1000 + i}", f"业主{i}", f"1390000{i:04d}"] for i in range(PAUSE_AFTER + 5)]
    page = await upload_ok(client, "units.xlsx", xlsx_bytes(rows))
    assert (await client.form(page + "/commit", {})).status_code == 303
    await asyncio.wait_for(reached.wait(), ANSWER_WITHIN)
    batch_id = int(page.rsplit("/", 1)[1])
    # Past the stale limit its row looks abandoned (on SQLite nothing touches it until the commit), yet it runs here.
    frozen_time.tick(importer.STALE_AFTER + timedelta(minutes=1))
    with unscoped():
        batch = await importer.ImportBatch.get(id=batch_id)
    assert not batch.interrupted and not await importer.start_commit(batch)
    shown = await answer(client.get(page))
    assert "The import was interrupted" not in shown.text and f"{PAUSE_AFTER} / {PAUSE_AFTER + 5}" in shown.text
    assert (await answer(client.form(page + "/commit", {}))).status_code == 303  # a second click starts nothing
    resume.set()
    finished = await asyncio.wait_for(commit_and_wait(client, page), ANSWER_WITHIN)
    assert f"{PAUSE_AFTER + 5} rows imported." in finished
