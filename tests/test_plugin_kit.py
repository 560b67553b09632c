"""The plugin kit for third parties, end to end.

- examples/courtyard-visitors is installed with pip into a temporary target
  directory (never into this venv), discovered through its entry point by
  `run.py`, migrated, enabled for one estate only, served by a real app
  process, and its job runs; its own test suite passes;
- `run.py new-plugin` writes a package that installs and whose tests pass;
- the example and the scaffold import nothing from core but `core.api`
  (and `core.testing` in tests);
- docs/tutorial.md quotes the example's real files;
- a deprecated hook warns the plugins that implement it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import types
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

import core.api
from core import hookdoc
from core.kit import Manifest
from core.plugins import LoadedPlugin, PluginHost
from core.settings import ROOT
from core.testing import PASSWORD, LiveServer, make_project, make_units, make_user

EXAMPLE = ROOT / "examples" / "courtyard-visitors"
TUTORIAL = ROOT / "docs" / "tutorial.md"
PLUGINS_DOC = ROOT / "docs" / "plugins.md"


def pip_install(source: Path, target: Path, scratch: Path) -> None:
    """`pip install --no-deps --target`, from a copy (pip builds in the source folder)."""
    copy = scratch / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
         "--target", str(target), str(copy)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"


def courtyard_env(site: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "COURTYARD_NO_BOOTSTRAP": "1",
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "COURTYARD_PLUGINS_EXTRA": "",
        **extra,
    }


@pytest.fixture(scope="session")
def visitors_site(tmp_path_factory) -> Path:
    """The example installed once per test session into a target directory, importable in this process."""
    base = tmp_path_factory.mktemp("visitors")
    site = base / "site"
    pip_install(EXAMPLE, site, base)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))


# The example plugin ------------------------------------------------------------------------


def test_installed_example_is_discovered_through_its_entry_point_and_migrated(visitors_site, tmp_path):
    env = courtyard_env(visitors_site, COURTYARD_DATABASE_URL=f"sqlite://{tmp_path}/c.sqlite3")
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, str(ROOT / "run.py"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    migrated = run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "applied visitors.0001_initial" in migrated.stdout
    listed = run("plugins")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("visitors "))
    assert "[courtyard-visitors]" in line and "1.0.0" in line
    again = run("migrate")
    assert "applied" not in again.stdout

    # Without the target directory on the path the plugin is simply not there.
    bare = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "plugins"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert bare.returncode == 0 and "visitors " not in bare.stdout


class TestInstalledExample:
    @pytest.fixture
    def plugin_modules(self, visitors_site):
        # In this process the installed package is registered by name; the live server below
        # finds it through its entry point.
        return ["courtyard_visitors"]

    @pytest.fixture
    async def estates(self, app):
        from core.api import CustomerUnit, create_customer, unscoped

        east = await make_project("EAST", modules=["visitors"])
        west = await make_project("WEST", modules=[])
        units = await make_units(east, 2)
        with unscoped():
            owner = await create_customer(east, "李业主", ["13900139000"])
            await CustomerUnit.create(project=east, customer=owner, unit=units[0], relation="owner")
        await make_user("guard", "staff", east, locale="en")
        await make_user("west_guard", "staff", west, locale="en")
        await make_user("boss", "manager", east, email="boss@example.com", locale="en")
        return east, west, units, owner

    async def test_enabled_for_one_estate_served_by_another_process(self, estates, settings, visitors_site):
        east, west, units, owner = estates
        server = LiveServer(settings, [], extra_env={"PYTHONPATH": os.pathsep.join([str(visitors_site), str(ROOT)])})
        try:
            await server.wait(60)
            async with httpx.AsyncClient(base_url=server.url, follow_redirects=False) as guard:
                await guard.get("/login")
                login = await guard.post(
                    "/login", data={"username": "guard", "password": PASSWORD, "csrftoken": guard.cookies["csrftoken"]}
                )
                assert login.status_code == 303
                token = guard.cookies["csrftoken"]
                added = await guard.post(
                    "/p/EAST/visitors/new",
                    data={"name": "Courier Wang", "unit": units[0].code, "purpose": "parcel", "csrftoken": token},
                )
                assert added.status_code == 303, added.text[:500]
                page = await guard.get("/p/EAST/visitors/")
                assert page.status_code == 200 and "Courier Wang" in page.text and "Mark left" in page.text
                dashboard = await guard.get("/p/EAST/")
                assert "Visitors today" in dashboard.text and 'data-plugin="visitors"' in dashboard.text
                assert 'href="/p/EAST/visitors/"' in dashboard.text
                section = await guard.get(f"/p/EAST/customers/{owner.id}")
                assert "Recent visitors" in section.text and "Courier Wang" in section.text

            async with httpx.AsyncClient(base_url=server.url) as other:
                await other.get("/login")
                await other.post(
                    "/login", data={"username": "west_guard", "password": PASSWORD, "csrftoken": other.cookies["csrftoken"]}
                )
                assert (await other.get("/p/WEST/")).status_code == 200
                assert (await other.get("/p/WEST/visitors/")).status_code == 404
                assert "Visitors today" not in (await other.get("/p/WEST/")).text
        finally:
            server.stop()

    async def test_its_job_closes_visits_and_mails_the_manager(self, estates, frozen_time, run_job, outbox):
        from core.api import unscoped
        from courtyard_visitors.models import Visitor

        east, west, units, owner = estates
        with unscoped():
            await Visitor.create(project=east, unit=units[1], name="Night guest", arrived_at=frozen_time.now())
        frozen_time.tick(hours=2)
        run = await run_job("visitors.close_open_visits", east)
        assert "closed 1 open visit(s)" in run.log
        with unscoped():
            guest = await Visitor.get(name="Night guest")
        assert guest.left_at == frozen_time.now() and guest.closed_automatically
        [mail] = await outbox.messages(to="boss@example.com")
        assert "Night guest" in mail.text and mail.template == "visitors/nightly_summary"

        with pytest.raises(AssertionError, match="already ran at this frozen instant"):
            await run_job("visitors.close_open_visits", east)
        frozen_time.tick(minutes=1)
        again = await run_job("visitors.close_open_visits", east)
        assert "closed 0 open visit(s)" in again.log
        with pytest.raises(core.api.JobError, match="disabled"):
            await run_job("visitors.close_open_visits", west)


def test_example_own_tests_pass(visitors_site, tmp_path):
    source = tmp_path / "courtyard-visitors"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"], cwd=source, capture_output=True, text=True,
        timeout=600, env=courtyard_env(visitors_site, COURTYARD_TEST_DBS="sqlite"),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b6 passed\b", result.stdout)


# The scaffold ------------------------------------------------------------------------------


def test_new_plugin_installs_and_its_first_tests_pass(tmp_path):
    made = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "new-plugin", "parcels", "--dir", str(tmp_path), "--label", "Parcels"],
        capture_output=True, text=True, timeout=300, env=courtyard_env(tmp_path / "nowhere"),
    )
    assert made.returncode == 0, made.stderr
    package = tmp_path / "courtyard-parcels"
    assert f"Created {package}" in made.stdout
    pyproject = (package / "pyproject.toml").read_text()
    assert '[project.entry-points."courtyard.plugins"]\nparcels = "courtyard_parcels"' in pyproject
    assert 'pytest_plugins = ["core.testing"]' in (package / "conftest.py").read_text()
    for path in ("models.py", "views.py", "jobs.py", "migrations/0001_initial.py", "templates/parcels",
                 "locale/zh_CN/LC_MESSAGES/messages.po"):
        assert (package / "courtyard_parcels" / path).exists(), path
    assert "parcels_entry" in (package / "courtyard_parcels" / "migrations" / "0001_initial.py").read_text()

    site = tmp_path / "site"
    pip_install(package, site, tmp_path / "build")
    assert (site / "courtyard_parcels" / "migrations" / "0001_initial.py").is_file()
    assert (site / "courtyard_parcels" / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po").is_file()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"], cwd=package, capture_output=True, text=True, timeout=600,
        env=courtyard_env(site, COURTYARD_TEST_DBS="sqlite"),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b4 passed\b", result.stdout)


def test_new_plugin_refuses_bad_names_and_existing_folders(tmp_path):
    from core.scaffold import ScaffoldError, create

    for name, reason in [("Parcels", "not a plugin name"), ("class", "keyword"), ("core", "already installed"),
                         ("9lives", "not a plugin name")]:
        with pytest.raises(ScaffoldError, match=reason):
            create(name, tmp_path)
    (tmp_path / "courtyard-parcels").mkdir()
    with pytest.raises(ScaffoldError, match="already exists"):
        create("parcels", tmp_path)
    with pytest.raises(ScaffoldError, match="outside Courtyard's own tree"):
        create("parcels", ROOT / "plugins")
    assert not (ROOT / "plugins" / "courtyard-parcels").exists()


# Only the public API -----------------------------------------------------------------------


def core_imports(path: Path) -> list[str]:
    """Every `core...` module a Python file imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "core"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "core":
            found.append(node.module)
            if node.module == "core":
                found += [f"core.{alias.name}" for alias in node.names]
    return found


def assert_public_api_only(root: Path) -> int:
    checked = 0
    for path in sorted(root.rglob("*.py")):
        is_test = "tests" in path.relative_to(root).parts or path.name == "conftest.py"
        allowed = {"core.api", "core.testing"} if is_test else {"core.api"}
        bad = [name for name in core_imports(path) if name not in allowed]
        assert not bad, f"{path.relative_to(root)} imports {bad}: plugins import from core.api only"
        checked += 1
    return checked


def test_example_and_scaffold_import_only_core_api(tmp_path):
    from core.scaffold import names_for, render_files

    assert assert_public_api_only(EXAMPLE) >= 6
    render_files(tmp_path, {**names_for("parcels"), "label": "Parcels", "description": "Parcels for Courtyard"})
    assert assert_public_api_only(tmp_path) >= 5
    conftest = tmp_path / "conftest.py"
    assert core_imports(conftest) == [] and "core.testing" in conftest.read_text()


def test_core_api_is_documented():
    exported = set(core.api.__all__)
    public = {name for name in vars(core.api) if not name.startswith("_") and name not in ("annotations", "pluggy")}
    assert public - exported == set(), "names in core.api missing from __all__"
    doc = core.api.__doc__ or ""
    guide = PLUGINS_DOC.read_text(encoding="utf-8")
    for name in sorted(exported):
        assert re.search(rf"\b{re.escape(name)}\b", doc), f"core.api docstring does not mention {name}"
        assert f"`{name}" in guide, f"docs/plugins.md does not mention {name}"


# The tutorial quotes real files ------------------------------------------------------------


def tutorial_blocks() -> list[tuple[str, str]]:
    """(path, code) of each fenced block whose info string names an example file, e.g. ```python models.py."""
    text = TUTORIAL.read_text(encoding="utf-8")
    return [
        (m.group(2), m.group(3))
        for m in re.finditer(r"^```(\w+) ([\w./-]+)\n(.*?)^```$", text, re.M | re.S)
    ]


def test_tutorial_code_matches_the_example_files():
    blocks = tutorial_blocks()
    assert len(blocks) >= 12
    quoted = set()
    for path, code in blocks:
        file = EXAMPLE / path
        assert file.is_file(), f"docs/tutorial.md quotes {path}, which the example does not have"
        content = file.read_text(encoding="utf-8")
        position = 0
        # A block may leave parts out with a line "..." (or "# ..."); the rest appears in order.
        for chunk in re.split(r"^\s*(?:#|\{#)? ?\.\.\.(?: #\})?\n", code, flags=re.M):
            if not chunk.strip():
                continue
            found = content.find(chunk.strip("\n"), position)
            assert found >= 0, f"docs/tutorial.md has a block for {path} that differs from the file:\n{chunk}"
            position = found + len(chunk.strip("\n"))
        quoted.add(path)
    for needed in ("pyproject.toml", "courtyard_visitors/__init__.py", "courtyard_visitors/models.py",
                   "courtyard_visitors/migrations/0001_initial.py", "courtyard_visitors/views.py",
                   "courtyard_visitors/jobs.py", "courtyard_visitors/templates/visitors/_left.html",
                   "courtyard_visitors/templates/visitors/section.html", "tests/test_visitors.py"):
        assert needed in quoted, f"docs/tutorial.md does not show {needed}"


# Deprecated hooks --------------------------------------------------------------------------

SPECS = '''"""Throwaway hook specs for the deprecation test."""

from core.hookspecs import deprecated, hookspec


@hookspec
def gate_opened(project, gate):
    """A gate opened."""


@deprecated("1.1", "implement gate_opened instead")
def door_opened(project):
    """A door opened."""


@deprecated("1.1", args={"guard": "read it from event.data"})
def visitor_arrived(event, guard):
    """A visitor arrived."""
'''


def _specs_module(tmp_path: Path) -> types.ModuleType:
    path = tmp_path / "throwaway_specs.py"
    path.write_text(SPECS, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("throwaway_specs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plugin(name: str, **hooks) -> LoadedPlugin:
    module = types.ModuleType(f"throwaway_{name}")
    module.MANIFEST = Manifest(name=name, label=name, version="1.0", hook_api=core.api.HOOK_API_VERSION)
    for hook, function in hooks.items():
        function.__name__ = hook
        setattr(module, hook, core.api.hookimpl(function))
    return LoadedPlugin(module.MANIFEST, module, "extra")


def _core() -> LoadedPlugin:
    module = importlib.import_module("core.plugin")
    return LoadedPlugin(module.MANIFEST, module, "core")


def test_implementing_a_deprecated_hook_warns_and_logs_the_plugin(tmp_path, caplog):
    specs = _specs_module(tmp_path)
    old = _plugin("oldie", door_opened=lambda project: f"door of {project}")
    with caplog.at_level(logging.WARNING, logger="courtyard.plugins"):
        with pytest.warns(core.api.HookDeprecationWarning, match="hook 'door_opened' is deprecated since hook API 1.1: implement gate_opened instead"):
            host = PluginHost([_core(), old], specs=[specs])
    assert any(r.getMessage().startswith("plugin oldie: hook 'door_opened' is deprecated") for r in caplog.records)
    # It still works: deprecated is not removed.
    assert host.pm.hook.door_opened(project=1) == ["door of 1"]


def test_deprecated_argument_warns_only_plugins_that_take_it(tmp_path, recwarn):
    specs = _specs_module(tmp_path)
    PluginHost([_core(), _plugin("modern", visitor_arrived=lambda event: None), _plugin("fine", gate_opened=lambda project: None)], specs=[specs])
    assert not [w for w in recwarn if issubclass(w.category, core.api.HookDeprecationWarning)]
    with pytest.warns(core.api.HookDeprecationWarning, match="argument 'guard' of hook 'visitor_arrived' is deprecated"):
        PluginHost([_core(), _plugin("legacy", visitor_arrived=lambda event, guard: None)], specs=[specs])


def test_hook_reference_shows_deprecations(tmp_path):
    text = hookdoc.render(_specs_module(tmp_path))
    assert "## `door_opened(project)`\n\n> **Deprecated** since hook API 1.1: implement gate_opened instead\n" in text
    assert "> **Argument `guard` deprecated** since hook API 1.1: read it from event.data" in text
    assert "## `gate_opened(project, gate)`\n\nA gate opened." in text


def test_frozen_time_drives_core_clock(frozen_time):
    from core import jobs

    start = frozen_time.now()
    assert core.api.now() == start == jobs.utcnow()
    frozen_time.tick(minutes=90)
    assert core.api.now() - start == timedelta(minutes=90)
