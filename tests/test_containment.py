"""A plugin that fails at request time breaks only its own slot; the rest of the app keeps working.

The in-tree plugin tests/sample_plugins/everything implements every hook and
raises from any hook named in its FAIL set; `hello` is a well-behaved neighbour.
"""

import logging
import re
from datetime import datetime, timezone

import pytest

from core import hookdoc
from core.api import unscoped
from core.jobs import Job, JobRun, RunState, Worker
from core.people import create_customer
from core.testing import make_project
from tests.sample_plugins import everything as plugin
from tests.sample_plugins import hello

EVERYTHING = "tests.sample_plugins.everything"
HELLO = "tests.sample_plugins.hello"


@pytest.fixture
def plugin_modules():
    return [EVERYTHING, HELLO]


@pytest.fixture(autouse=True)
def everything():
    plugin.FAIL.clear()
    plugin.CALLS.clear()
    yield plugin
    plugin.FAIL.clear()


@pytest.fixture
async def east(app):
    return await make_project("EAST", modules=["everything", "hello"])


@pytest.fixture
async def agent(east, login_as):
    return await login_as("agent", east, locale="en")


def failures_logged(caplog, hook: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage() == f"plugin everything: hook {hook} failed"]


def test_the_sample_plugin_implements_every_hook():
    specs = {name for name, _fn in hookdoc.hook_functions()}
    implemented = {name for name in dir(plugin) if hasattr(getattr(plugin, name), "courtyard_impl")}
    assert specs - implemented == set(), "tests/sample_plugins/everything must implement every hook in core/hookspecs.py"
    assert implemented - specs == set()


async def test_global_hooks_take_effect(app, agent):
    assert [args[0] for args in plugin.CALLS["startup"]] == [app.starlette]
    assert app.state.settings["everything"]["greeting"] == "hello from settings"
    assert (await agent.get("/p/EAST/everything/")).text == "everything in EAST"
    assert (await agent.get("/everything/ping")).text == "pong"
    static = await agent.get("/static/everything/hello.txt")
    assert static.status_code == 200 and "registered static directory" in static.text


async def test_raising_navigation_loses_only_its_entries(agent, caplog):
    assert "Everything nav" in (await agent.get("/p/EAST/")).text
    plugin.FAIL.add("navigation")
    with caplog.at_level(logging.ERROR, logger="courtyard.plugins"):
        page = await agent.get("/p/EAST/")
    assert page.status_code == 200
    assert "Everything nav" not in page.text
    assert "Hello nav" in page.text and "Customers" in page.text
    assert failures_logged(caplog, "navigation")
    # Its pages still answer: only the slot is gone.
    assert (await agent.get("/p/EAST/everything/")).status_code == 200


async def test_raising_tile_shows_unavailable_in_its_place_only(agent, caplog):
    plugin.FAIL.add("dashboard_tiles")
    with caplog.at_level(logging.ERROR, logger="courtyard.plugins"):
        page = await agent.get("/p/EAST/")
    assert page.status_code == 200
    broken = re.search(r'<div class="tile unavailable" data-plugin="([a-z_]+)">', page.text)
    assert broken and broken.group(1) == "everything"
    assert page.text.count("tile unavailable") == 1
    assert "Everything tile" not in page.text
    assert "Hello tile" in page.text and ">42<" in page.text
    assert failures_logged(caplog, "dashboard_tiles")


async def test_raising_customer_section_shows_section_unavailable(east, agent, caplog):
    with unscoped():
        customer = await create_customer(east, "张三", ["13800138000"])
    page = await agent.get(f"/p/EAST/customers/{customer.id}")
    assert "everything knows 张三" in page.text  # from the plugin's registered template directory

    plugin.FAIL.add("customer_sections")
    with caplog.at_level(logging.ERROR, logger="courtyard.plugins"):
        page = await agent.get(f"/p/EAST/customers/{customer.id}")
    assert page.status_code == 200
    section = re.search(r'data-plugin="everything">(.*?)</section>', page.text, re.S)
    assert section and "Section unavailable" in section.group(1)
    assert "Hello section" in page.text and "hi 张三" in page.text
    assert "张三" in page.text
    assert failures_logged(caplog, "customer_sections")


async def test_raising_search_provider_keeps_other_results(east, agent, caplog):
    with unscoped():
        await create_customer(east, "张三", ["13800138000"])
    found = await agent.get("/search?q=张三")
    assert "EV 张三" in found.text and "/p/EAST/customers/" in found.text

    plugin.FAIL.add("search")
    with caplog.at_level(logging.ERROR, logger="courtyard.plugins"):
        found = await agent.get("/search?q=张三")
    assert found.status_code == 200
    assert "EV 张三" not in found.text
    assert "/p/EAST/customers/" in found.text and "张三" in found.text
    assert "Some results could not be loaded" in found.text
    assert failures_logged(caplog, "search")


@pytest.mark.frozen_time("2026-05-01T10:02+08:00")
async def test_raising_job_is_recorded_against_its_plugin_and_others_run(east, host, settings, frozen_time, login_as):
    plugin.FAIL.add("job")
    hello.RUNS.clear()
    worker = Worker(host, settings)  # core's clock: frozen
    await worker.run_once()  # registers the jobs; nothing is due yet
    frozen_time.set(datetime(2026, 5, 1, 2, 5, 10, tzinfo=timezone.utc))  # 10:05:10 in Shanghai
    await worker.run_once()

    failed = await JobRun.get(job__name="everything.chore", project_id=east.id).select_related("job")
    assert failed.state == RunState.FAILED
    assert "RuntimeError: everything.job is broken on purpose" in failed.error
    assert failed.job.plugin == "everything"
    greeted = await JobRun.get(job__name="hello.greet", project_id=east.id)
    assert greeted.state == RunState.DONE and hello.RUNS == [east.id]
    assert (await Job.get(name="hello.greet")).consecutive_failures == 0

    admin = await login_as("admin", None, locale="en")
    jobs_page = await admin.get("/jobs")
    assert 'data-job="everything.chore" data-plugin="everything"' in jobs_page.text
    detail = await admin.get("/jobs/everything.chore")
    assert 'data-plugin="everything"' in detail.text and "everything.job is broken on purpose" in detail.text
