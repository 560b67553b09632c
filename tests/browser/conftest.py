"""Browser tests: Playwright (sync API) driving Debian's Chromium against a real `run.py serve`.

Playwright's async API; the browser is started once per session on the session's event loop,
so every test module here starts with ``pytestmark = BROWSER`` (the tests run on that loop). Database
set-up happens in async fixtures on the test's own loop (inside the in-process app's Tortoise
context) before the test body; the browser only talks to the `live_server` process, which
shares the test's database.

Without /usr/bin/chromium the tests skip, unless CI is set (then they fail).
Never run `playwright install`: the Debian package is the browser.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_asyncio

CHROMIUM = os.environ.get("COURTYARD_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
DESKTOP = {"width": 1366, "height": 768}
MEDIUM = {"width": 1024, "height": 768}
BROWSER = pytest.mark.asyncio(loop_scope="session")


def pytest_collection_modifyitems(config, items):
    """Modules with ``SQLITE_ONLY = True`` run on SQLite only (their docstrings say why)."""
    dropped = [i for i in items if getattr(getattr(i, "module", None), "SQLITE_ONLY", False) and "[postgres" in i.nodeid]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in dropped]
    # No browser: skip before any set-up (the demo estates take a while). Under CI the `browser`
    # fixture fails them instead.
    reason = _unavailable_reason()
    if reason and not os.environ.get("CI"):
        here = Path(__file__).parent
        for item in items:
            if here in Path(str(item.fspath)).parents:
                item.add_marker(pytest.mark.skip(reason=reason))


def _unavailable_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium fonts-noto-cjk)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest_asyncio.fixture(scope="session", loop_scope="session")
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


class Problems(list):
    """Console errors and uncaught page errors seen by one page."""


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(browser):
    """Factory: ``page = new_page(viewport=..., locale=...)`` opens a fresh browser context (its own
    cookies: one logged-in user) and page. Console errors and page errors of every page fail the test."""
    from playwright.async_api import expect

    expect.set_options(timeout=10_000)
    contexts = []
    problems = Problems()

    async def factory(viewport: dict | None = None):
        context = await browser.new_context(viewport=viewport or DESKTOP, locale="zh-CN", timezone_id="Asia/Shanghai")
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = await context.new_page()
        page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text} ({m.location.get('url')})")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        return page

    yield factory
    for context in contexts:
        await context.close()
    if problems:
        pytest.fail("the browser reported errors:\n" + "\n".join(problems), pytrace=False)


@pytest_asyncio.fixture(loop_scope="session")
async def page(new_page):
    return await new_page()


async def login(page, base_url: str, username: str, password: str) -> None:
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
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


async def assert_no_horizontal_scroll(page) -> None:
    width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} scrolls horizontally: scrollWidth {width[0]} > innerWidth {width[1]}"
