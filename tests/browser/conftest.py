"""Browser tests: Playwright (async API) driving Debian's Chromium against a real `run.py serve`.

One server per database kind (SQLite and PostgreSQL) serves the browser tests: the `desk` fixture
makes a fresh migrated database, loads the demo estates into it and starts `run.py serve` on it
with its embedded job worker (bill runs and "run now" jobs happen in that process, as in
production). Each test module declares ``async def seed(host)``, its own small estate, which the
desk loads before it starts the server; a test gets what its seed returned (plain values) with
``await desk.seed(seed)``. Estates, users and logins never overlap between modules, so the tests
stay independent of each other and of their order. `desk` and the browser are package-scoped: a
pytest process starts them when it reaches these tests and stops them when it moves on to other
tests (pytest orders the tests by database kind, so that is about once per kind and process).

The browser runs on the session's event loop, so every test module here starts with
``pytestmark = BROWSER``. `new_page(user)` opens a fresh browser context logged in as that user
(the form login happens once per user and server; later contexts reuse its cookies). Console
errors (including failed loads of scripts, styles and pages) and uncaught page errors on any page
a test opens fail that test.

Without /usr/bin/chromium the tests skip, unless CI is set (then they fail).
Never run `playwright install`: the Debian package is the browser.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
import pytest_asyncio

from core.testing import PASSWORD

CHROMIUM = os.environ.get("COURTYARD_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
DESKTOP = {"width": 1366, "height": 768}  # the front desk's PC
TABLET = {"width": 1024, "height": 768}
BROWSER = pytest.mark.asyncio(loop_scope="session")
HERE = Path(__file__).parent

# What the test server is told besides its database: run jobs in-process, and send the complaint
# survey as soon as the survey job runs (its default waits three days after closing).
SERVER_ENV = {
    "COURTYARD_SERVER_EMBEDDED_WORKER": "true",
    "COURTYARD_SERVER_JOBS_POLL_SECONDS": "2",
    "COURTYARD_COMPLAINTS_SURVEY_DELAY_DAYS": "0",
}


def _is_browser_test(item) -> bool:
    return HERE in Path(str(item.fspath)).parents


def pytest_collection_modifyitems(config, items):
    # No browser: skip before any set-up (the demo estates take a while). Under CI the `browser`
    # fixture fails them instead.
    reason = _unavailable_reason()
    if reason and not os.environ.get("CI"):
        for item in items:
            if _is_browser_test(item):
                item.add_marker(pytest.mark.skip(reason=reason))


def _unavailable_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium fonts-noto-cjk)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def browser():
    reason = _unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


# The server ------------------------------------------------------------------------------------

Seed = Callable[[Any], Awaitable[Any]]


def _run_seeds(settings, seeds: list[Seed]) -> list[Any]:
    """Run each ``seed(host)`` on the server's database, in an app context of its own (own thread and loop)."""
    from core.app import create_app
    from core.plugins import PluginHost

    async def main():
        host = PluginHost.discover(entry_points=False)
        application = create_app(settings, host, run_jobs=False)
        async with application.router.lifespan_context(application.starlette):
            return [await seed(host) for seed in seeds]

    return asyncio.run(main())


async def _demo(host) -> None:
    from core.demo import load_demo

    await load_demo(host)  # first: it only loads into a database without estates


class Desk:
    """The running server of one database kind, with what the test modules seeded into it."""

    def __init__(self, kind: str, settings, server, seeded: dict[Seed, Any]):
        self.kind = kind
        self.settings = settings
        self.server = server
        self.url = server.url
        self.screenshots = kind == "sqlite"  # one set (both kinds may run at once under xdist)
        self.sessions: dict[str, dict] = {}  # username -> browser storage state after logging in
        self._seeded = seeded

    async def seed(self, seed: Seed) -> Any:
        """``await seed(host)`` on this server's database, once; its result (plain values) every time."""
        if seed not in self._seeded:
            (self._seeded[seed],) = await _seed_in_thread(self.settings, [seed])
        return self._seeded[seed]


async def _seed_in_thread(settings, seeds: list[Seed]) -> list[Any]:
    # run_in_executor, unlike to_thread, does not copy this task's context (Tortoise's).
    return await asyncio.get_running_loop().run_in_executor(None, _run_seeds, settings, seeds)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def desk(request, db_kind_ok, database_factory, tmp_path_factory):
    from core import settings as settings_module
    from core.plugins import PluginHost
    from core.testing import LiveServer

    url = await database_factory.fresh(db_kind_ok, PluginHost.discover(entry_points=False))
    settings = settings_module.load(environ={})
    settings.data["database"]["url"] = url
    settings.data["storage"]["path"] = str(tmp_path_factory.mktemp(f"files-{db_kind_ok}"))
    settings.data["security"]["secret_key"] = "browser-test-secret"
    settings.data["smtp"]["host"] = ""
    settings.data["server"]["embedded_worker"] = False
    # Every selected module's estate before the server starts: its job worker then finds them all
    # in place, as in a running installation (no estate appears in the middle of a scheduling pass).
    seeds: list[Seed] = []
    for item in request.session.items:
        seed = getattr(item.module, "seed", None) if _is_browser_test(item) else None
        if seed is not None and seed not in seeds:
            seeds.append(seed)
    results = await _seed_in_thread(settings, [_demo, *seeds])
    server = LiveServer(settings, [], SERVER_ENV)
    try:
        await server.wait(60)
        yield Desk(db_kind_ok, settings, server, dict(zip(seeds, results[1:])))
    finally:
        server.stop()
        await database_factory.drop(url)


# Pages -------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(browser, desk):
    """Factory: ``page = await new_page("username")`` opens a fresh browser context (its own cookies)
    logged in as that user, and a page in it (``new_page()``: nobody logged in). Console errors and
    uncaught page errors of every page of these contexts fail the test."""
    from playwright.async_api import expect

    expect.set_options(timeout=10_000)
    contexts = []
    problems: list[str] = []

    def watch(page) -> None:
        page.on("console", lambda m: problems.append(f"console.{m.type} on {page.url}: {m.text} ({m.location.get('url')})")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error on {page.url}: {e}"))

    async def factory(user: str | None = None, password: str = PASSWORD, viewport: dict | None = None):
        context = await browser.new_context(viewport=viewport or DESKTOP, locale="zh-CN", timezone_id="Asia/Shanghai",
                                            storage_state=desk.sessions.get(user) if user else None)
        context.set_default_timeout(10_000)
        context.on("page", watch)  # pages the app opens itself (print views in a new tab)
        contexts.append(context)
        page = await context.new_page()
        if user and user not in desk.sessions:
            await login(page, desk.url, user, password)
            desk.sessions[user] = await context.storage_state()
        return page

    yield factory
    for context in contexts:
        await context.close()
    if problems:
        pytest.fail("the browser reported errors:\n" + "\n".join(problems), pytrace=False)


async def login(page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Log in through the login form, as a person does."""
    from playwright.async_api import expect

    await page.goto(base_url + "/login")
    await page.locator("input[name=username]").fill(username)
    await page.locator("input[name=password]").fill(password)
    await page.locator("form[action='/login'] button[type=submit]").click()
    await expect(page.locator(".user-menu")).to_be_visible()


async def screenshot(page, name: str, enabled: bool = True) -> None:
    """Save docs/screenshots/<name>.png (the README shows them)."""
    if not enabled:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Let finite animations (the screen pop sliding in, toasts) finish first.
    await page.wait_for_function(
        "() => document.getAnimations().every(a => a.playState !== 'running'"
        " || a.effect.getComputedTiming().iterations === Infinity)"
    )
    # Without the passing toasts ("saved" and the like), which would hide the page's buttons.
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), style=".toast-stack { visibility: hidden; }")


async def assert_no_horizontal_scroll(page) -> None:
    width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} scrolls horizontally: scrollWidth {width[0]} > innerWidth {width[1]}"


async def assert_fits(page) -> None:
    """The page fits the front desk's PC (1366×768) and a tablet (1024×768) without scrolling sideways."""
    for viewport in (TABLET, DESKTOP):
        await page.set_viewport_size(viewport)
        await assert_no_horizontal_scroll(page)
