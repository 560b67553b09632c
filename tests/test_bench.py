"""The benchmark suite at CI scale: the generator fills both databases, every list page of every plugin
runs a bounded number of SQL statements that does not grow with the rows shown, and bench/run.py
completes end to end on PostgreSQL. No timings are asserted (docs/benchmarks.md has the figures)."""

import json
import subprocess
import sys

import httpx

from bench.generate import PASSWORD, SCALES, load
from bench.pages import list_page_queries
from core.settings import ROOT

# The benchmark target ("at most 5 SQL queries on any list page"). Estates, modules and roles are kept per
# process, so a list page runs: the session (with the access stamp), filter choices read from the database
# (once per request, even when the page's form shows them too), the rows with their total (one statement),
# and the prefetches of the columns. The heaviest (customers: buildings, phones, units) run 5;
# growth with the rows shown is checked on its own.
MAX_STATEMENTS = 5


async def _generate(database_url):
    made = await load(database_url, SCALES["ci"], fresh=False, log=lambda message: None, progress=False)
    assert made["counts"]["hotline_work_order"] > 0 and made["counts"]["fees_bill_line"] > 0
    return made


async def test_every_list_page_runs_a_bounded_number_of_statements(settings, host, database_url, db_kind):
    from core.app import create_app
    from core.models import Membership, Project
    from core.scope import unscoped
    from core.testing import Client

    await _generate(database_url)
    app = create_app(settings, host, run_jobs=False)
    async with app.router.lifespan_context(app.starlette):
        with unscoped():
            # The estate with the demo records of complaints, handover and activities: the smallest one.
            demo = await Project.filter(id__in=await _projects_with_cases()).first()
            manager = await Membership.filter(project_id=demo.id, role__code="manager").select_related("user").first()
        async with Client(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            await client.login(manager.user.username, PASSWORD)
            pages = await list_page_queries(client, demo.code)
    with_rows = {page.path.split("/")[3] for page in pages if page.path.startswith("/p/") and page.rows[0]}
    assert {"customers", "units", "hotline", "complaints", "handover", "fees", "activities"} <= with_rows
    for page in pages:
        assert not page.grows, f"{page.path}: {page.queries} statements for {page.rows} rows ({page.repeated_sql})"
        assert max(page.queries) <= MAX_STATEMENTS, f"{page.path}: {page.queries} statements"
    if db_kind == "postgres":
        _benchmark_completes(database_url)


async def _projects_with_cases():
    from plugins.complaints.models import Case

    return list(set(await Case.all().values_list("project_id", flat=True)))


def _benchmark_completes(database_url):
    out = ROOT / "var" / f"bench-ci-{database_url.rsplit('/', 1)[-1]}.json"
    out.parent.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "run.py"), "--scale", "ci", "--quick", "--db", database_url,
             "--out", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        results = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    for part in ("startup", "pages", "search", "call_to_pop", "bill_run", "queries"):
        assert part in results, part
    assert results["bill_run"]["courtyard"]["bills"] == results["bill_run"]["raw"]["bills"] > 0
    assert results["call_to_pop"]["calls"] > 0 and results["queries"]["grows"] == []
    assert {row["name"] for row in results["targets"]} >= {"bill run (bills/s)", "list page p50 unloaded (ms)"}
