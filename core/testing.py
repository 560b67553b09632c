"""Pytest fixtures for Courtyard and its plugins (the test kit).

Enable in a `conftest.py` with ``pytest_plugins = ["core.testing"]``.

Every test that uses a database runs once on SQLite and once on PostgreSQL
(when a server answers at ``COURTYARD_TEST_PG``, default
``postgres://postgres@127.0.0.1:5432/test``; with ``CI`` set, an unreachable
PostgreSQL fails the run instead of skipping). Each test gets its own fresh,
migrated database: copied from a template file on SQLite, ``CREATE DATABASE
... TEMPLATE`` on PostgreSQL. Nothing is ever written to the ``test`` database.

For plugin authors (docs/plugins.md, "Testing"): override ``plugin_modules``
to load your package; ``login_as``, ``frozen_time``, ``outbox``, ``run_job``
and ``pending_migrations`` are described where they are defined below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Iterable
from urllib.parse import urlparse

import httpx
import pytest

from core import clock
from core import settings as settings_module
from core.plugins import PluginHost

PG_URL = os.environ.get("COURTYARD_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
PASSWORD = "secret-pass-1"


# Databases -----------------------------------------------------------------


def _pg_server_url(dbname: str) -> str:
    parsed = urlparse(PG_URL)
    return parsed._replace(path=f"/{dbname}").geturl()


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_server_url(urlparse(PG_URL).path.lstrip("/") or "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_available() -> bool:
    try:
        asyncio.run(asyncio.wait_for(_pg_admin("SELECT 1"), 5))
        return True
    except Exception:
        return False


async def _migrate(host: PluginHost, url: str) -> None:
    from core import db
    from core.shell import sync_permissions

    config = await db.init(host, url)
    try:
        await db.migrate(config)
        await sync_permissions(host)
    finally:
        await db.close()


class DatabaseFactory:
    """Makes fresh migrated databases from one template per kind and test process."""

    def __init__(self, tmp: Path, worker: str):
        self.tmp = tmp
        self.worker = worker
        self.templates: dict[tuple[str, tuple[str, ...]], str] = {}
        self.created_pg: list[str] = []

    def template(self, kind: str, host: PluginHost) -> str:
        key = (kind, tuple(host.names))
        if key not in self.templates:
            if kind == "sqlite":
                path = self.tmp / f"template-{len(self.templates)}.sqlite3"
                asyncio.run(_migrate(host, f"sqlite://{path}"))
                self.templates[key] = str(path)
            else:
                name = f"cy_tpl_{self.worker}_{os.getpid()}_{len(self.templates)}"
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}"'))
                asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
                self.created_pg.append(name)
                asyncio.run(_migrate(host, _pg_server_url(name)))
                self.templates[key] = name
        return self.templates[key]

    async def fresh(self, kind: str, host: PluginHost) -> str:
        # run_in_executor, unlike to_thread, does not copy this task's context:
        # the template is built with no Tortoise context of a previous test around.
        template = await asyncio.get_running_loop().run_in_executor(None, self.template, kind, host)
        if kind == "sqlite":
            path = self.tmp / f"db-{uuid.uuid4().hex[:10]}.sqlite3"
            shutil.copyfile(template, path)
            return f"sqlite://{path}"
        name = f"cy_t_{uuid.uuid4().hex[:12]}"
        await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.created_pg.append(name)
        return _pg_server_url(name)

    async def drop(self, url: str) -> None:
        if url.startswith("postgres"):
            name = urlparse(url).path.lstrip("/")
            with contextlib.suppress(Exception):
                await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if name in self.created_pg:
                self.created_pg.remove(name)

    def cleanup(self) -> None:
        for name in list(self.created_pg):
            with contextlib.suppress(Exception):
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_pg_checked: bool | None = None


def _pg_ok() -> bool:
    global _pg_checked
    if _pg_checked is None:
        _pg_checked = postgres_available()
    return _pg_checked


def pytest_generate_tests(metafunc):
    if "db_kind" in metafunc.fixturenames:
        kinds = os.environ.get("COURTYARD_TEST_DBS", "sqlite,postgres").split(",")
        metafunc.parametrize("db_kind", [k.strip() for k in kinds if k.strip()], scope="session")


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory) -> Iterable[DatabaseFactory]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    factory = DatabaseFactory(tmp_path_factory.mktemp("db"), worker)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="session")
def db_kind_ok(db_kind):
    if db_kind == "postgres" and not _pg_ok():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}, and CI must run the PostgreSQL tests")
        pytest.skip("PostgreSQL is not reachable")
    return db_kind


# The app -------------------------------------------------------------------


@pytest.fixture
def plugin_modules() -> list[str]:
    """Override to register extra plugin modules (importable names) for a test."""
    return []


@pytest.fixture
def host(plugin_modules) -> PluginHost:
    return PluginHost.discover(entry_points=False, extra_modules=plugin_modules)


@pytest.fixture
async def database_url(db_kind_ok, database_factory, host) -> AsyncIterator[str]:
    url = await database_factory.fresh(db_kind_ok, host)
    yield url
    await database_factory.drop(url)


@pytest.fixture
def settings(tmp_path, database_url) -> settings_module.Settings:
    s = settings_module.load(environ={})
    s.data["database"]["url"] = database_url
    s.data["storage"]["path"] = str(tmp_path / "files")
    s.data["security"]["secret_key"] = "test-secret"
    s.data["smtp"]["host"] = ""
    s.data["server"]["embedded_worker"] = False
    # Tests assert the English source strings; Chinese is checked by the catalog tests.
    s.data["i18n"]["default_locale"] = "en"
    return s


@pytest.fixture
async def app(settings, host) -> AsyncIterator[Any]:
    from core.app import create_app

    application = create_app(settings, host, run_jobs=False)
    async with application.router.lifespan_context(application.starlette):
        yield application


class Client(httpx.AsyncClient):
    """An httpx client for the app that knows the CSRF token."""

    user: Any = None  # set by the `login_as` fixture

    @property
    def csrf(self) -> str:
        return self.cookies.get("csrftoken") or ""

    async def ensure_csrf(self) -> str:
        if not self.csrf:
            await self.get("/login")
        return self.csrf

    async def form(self, url: str, data: dict[str, Any] | None = None, *, htmx: bool = False, **kwargs) -> httpx.Response:
        token = await self.ensure_csrf()
        payload = {"csrftoken": token, **(data or {})}
        headers = kwargs.pop("headers", {}) or {}
        if htmx:
            headers["HX-Request"] = "true"
        return await self.post(url, data=payload, headers=headers, **kwargs)

    async def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        response = await self.form("/login", {"username": username, "password": password})
        assert response.status_code == 303, f"login of {username} failed: {response.status_code} {response.text[:300]}"
        return response


@pytest.fixture
async def client(app) -> AsyncIterator[Client]:
    async with Client(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def make_client(app):
    """Factory for more clients (one per user) on the same app."""
    clients: list[Client] = []

    def factory() -> Client:
        c = Client(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()


# Data ----------------------------------------------------------------------


async def make_project(code: str = "EAST", name: str | None = None, modules: Iterable[str] | None = None, host: PluginHost | None = None, **kw):
    """A project with the given modules enabled (default: every installed module)."""
    from core.models import Project, ProjectModule
    from core.scope import unscoped

    with unscoped():
        project = await Project.create(code=code, name=name or f"Estate {code}", **kw)
        if modules is None:
            modules = [p.name for p in (host or PluginHost.discover(entry_points=False)).toggleable()]
        for module in modules:
            await ProjectModule.create(project=project, module=module, enabled=True)
        return project


async def make_user(username: str, role: str = "agent", project=None, password: str = PASSWORD, **kw):
    """A staff user; English UI unless `locale=` says otherwise, so tests can assert the source strings."""
    from core.accounts import create_user

    kw.setdefault("locale", "en")
    return await create_user(username, password, role=role, project=project, **kw)


async def make_units(project, count: int = 3, building_code: str = "1"):
    from core.models import Building, Unit
    from core.scope import unscoped

    with unscoped():
        building, _ = await Building.get_or_create(project=project, code=building_code, defaults={"name": f"{building_code}栋"})
        units = []
        for i in range(count):
            units.append(
                await Unit.create(project=project, building=building, code=f"{building_code}-1-{101 + i}", floor=1, area="88.50")
            )
        return units


# Other app processes ---------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real `run.py serve` process on the test's database (another app process)."""

    def __init__(self, settings: settings_module.Settings, plugin_modules: list[str], extra_env: dict | None = None):
        import subprocess
        import sys
        import tempfile

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "COURTYARD_NO_BOOTSTRAP": "1",
            # Links in its email and pages lead back to this process.
            "COURTYARD_SERVER_BASE_URL": self.url,
            "COURTYARD_DATABASE_URL": settings["database"]["url"],
            "COURTYARD_SECURITY_SECRET_KEY": settings["security"]["secret_key"],
            "COURTYARD_STORAGE_PATH": str(settings["storage"]["path"]),
            "COURTYARD_SERVER_EMBEDDED_WORKER": "false",
            "COURTYARD_PLUGINS_EXTRA": ",".join(plugin_modules),
            **(extra_env or {}),
        }
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, str(settings_module.ROOT / "run.py"), "serve", "--port", str(self.port)],
            env=env,
            # A file, not a pipe: nobody reads the log while the server runs, and a full pipe would block it.
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        """What the server has logged so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    async def wait(self, timeout: float = 30) -> "LiveServer":
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as probe:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"live server exited with {self.process.returncode}:\n{self.output()[-3000:]}")
                try:
                    await probe.get(self.url + "/login", timeout=1)
                    return self
                except httpx.HTTPError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise RuntimeError("live server did not start in time")
                    await asyncio.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except Exception:
            self.process.kill()
        self.log.close()


@pytest.fixture
async def live_server(settings, plugin_modules, app) -> AsyncIterator[LiveServer]:
    """Another app process on the same database (the in-process `app` has migrated it)."""
    server = LiveServer(settings, plugin_modules)
    try:
        yield await server.wait()
    finally:
        server.stop()


# Records of any model ----------------------------------------------------------

RECORD_FACTORIES: dict[str, Any] = {}
"""label ("plugin.Model") -> async function(project) returning a saved record of that project.

Only for models the generic `make_record` cannot fill (say, a field whose
value must follow a rule); register with `@record_factory("plugin.Model")`.
"""


def record_factory(label: str):
    def register(function):
        RECORD_FACTORIES[label] = function
        return function

    return register


@record_factory("core.User")
async def _staff_of(project):
    # Staff belong to estates through memberships: "a user of estate B".
    return await make_user(f"u_{uuid.uuid4().hex[:10]}", "agent", project)


async def make_record(label: str, project) -> Any:
    """A saved record of model `label` belonging to `project`, with required fields filled.

    Used by the isolation test to create one record of every model a route
    names. Required relations are created in the same project, recursively.
    """
    from decimal import Decimal

    from tortoise import fields as f
    from tortoise.fields.relational import ForeignKeyFieldInstance, OneToOneFieldInstance

    from core.db import model_by_label
    from core.models import Project
    from core.scope import unscoped

    if label in RECORD_FACTORIES:
        return await RECORD_FACTORIES[label](project)
    model = model_by_label(label)
    values: dict[str, Any] = {}
    for name, field in model._meta.fields_map.items():
        if isinstance(field, (ForeignKeyFieldInstance, OneToOneFieldInstance)):
            related = field.related_model
            if related is Project:
                values[name] = project
            elif not field.null:
                values[name] = await make_record(f"{related._meta.app}.{related.__name__}", project)
            continue
        if (
            field.pk or getattr(field, "reference", None) is not None or field.null or field.default is not None
            or getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False) or name in values
            or not hasattr(field, "field_type") or field.generated
        ):
            continue
        enum_type = getattr(field, "enum_type", None)
        if enum_type is not None:
            values[name] = next(iter(enum_type))
        elif isinstance(field, (f.CharField, f.TextField)):
            values[name] = uuid.uuid4().hex[: min(getattr(field, "max_length", 12) or 12, 12)]
        elif isinstance(field, f.DecimalField):
            values[name] = Decimal("1")
        elif isinstance(field, f.BooleanField):
            values[name] = False
        elif isinstance(field, f.DatetimeField):
            values[name] = clock.now()  # core's clock: frozen_time governs made-up records too
        elif isinstance(field, f.DateField):
            values[name] = clock.now().date()
        elif isinstance(field, f.JSONField):
            values[name] = {}
        elif isinstance(field, f.UUIDField):
            values[name] = uuid.uuid4()
        elif isinstance(field, (f.IntField, f.SmallIntField, f.BigIntField, f.FloatField)):
            values[name] = 1
    with unscoped():
        return await model.create(**values)


# Helpers for plugin authors ----------------------------------------------------------
#
#   login_as      `client = await login_as("agent", project)`: a new user of that role, logged in
#   frozen_time   core's clock (jobs, outbox, core.api.now()) stands still; `.tick(hours=1)`, `.set(at)`
#   outbox        `await outbox.messages(to=...)`: the email queued so far, rendered
#   run_job       `run = await run_job("plugin.job", project)`: run a job now, fail the test if it failed
#   pending_migrations(...)   migrations `run.py makemigrations` would still write ([] = models match)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "frozen_time(at): the instant (ISO 8601 with offset) the `frozen_time` fixture starts at"
    )


@pytest.fixture
async def login_as(app, make_client):
    """Factory: ``client = await login_as("manager", project)`` creates a user with that role in
    ``project`` (head office when None) and returns a client logged in as them (``client.user``).

    Extra keywords go to the user (``email=``, ``locale=``, ``department=``, ``username=``).
    """
    counter = iter(range(1, 1_000_000))

    async def factory(role: str = "agent", project=None, *, username: str | None = None, **fields) -> Client:
        where = project.code.lower() if project is not None else "hq"
        name = username or f"{role}_{where}_{next(counter)}"
        user = await make_user(name, role, project, **fields)
        logged_in = make_client()
        await logged_in.login(name)
        logged_in.user = user
        return logged_in

    return factory


def _parse_instant(text: str):
    from datetime import datetime

    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise pytest.UsageError(f"frozen_time({text!r}): give a time zone offset, e.g. 2026-05-01T09:00+08:00")
    return at


@pytest.fixture
def frozen_time(request):
    """Freeze core's clock (``core.api.now()``, jobs' ``ctx.now()``, the outbox) for this test.

    Starts at ``@pytest.mark.frozen_time("2026-05-01T23:30+08:00")`` when the test has that
    marker, otherwise at the real current time. The fixture is a ``core.clock.FrozenClock``:
    ``frozen_time.now()``, ``frozen_time.set(at)``, ``frozen_time.tick(hours=2)``.
    """
    from core import clock

    marker = request.node.get_closest_marker("frozen_time")
    at = _parse_instant(marker.args[0]) if marker else clock.now().replace(microsecond=0)
    with clock.frozen(at) as frozen:
        yield frozen


class CapturedEmail:
    """One queued message as the recipient will get it."""

    def __init__(self, row):
        self.id = row.id
        self.to = row.recipient
        self.subject = row.subject
        self.text = row.body_text
        self.html = row.body_html
        self.template = row.template
        self.locale = row.locale
        self.related = row.related
        self.project_id = row.project_id
        self.state = row.state

    def __repr__(self) -> str:
        return f"<email to {self.to!r}: {self.subject!r}>"


class CapturedOutbox:
    """The outbox of the test's database (nothing is ever sent in tests: no SMTP host is set)."""

    async def messages(self, *, to: str | None = None, template: str | None = None, related: str | None = None) -> list[CapturedEmail]:
        """Queued messages, oldest first, optionally only those to an address / of a template / about a record."""
        from core.outbox import OutboxMessage

        query = OutboxMessage.all()
        if to is not None:
            query = query.filter(recipient=to)
        if template is not None:
            query = query.filter(template=template)
        if related is not None:
            query = query.filter(related=related)
        return [CapturedEmail(row) for row in await query.order_by("id")]

    async def clear(self) -> None:
        """Forget what was queued so far (to look at what a later step sends)."""
        from core.outbox import OutboxMessage

        await OutboxMessage.all().delete()


@pytest.fixture
async def outbox(app) -> CapturedOutbox:
    """``await outbox.messages(to="m@example.com")``: email queued through ``core.api.queue_email``."""
    return CapturedOutbox()


@pytest.fixture
async def run_job(app):
    """Factory: ``run = await run_job("visitors.close_open_visits", project)`` runs a job now, in this
    process, with core's clock (frozen when the test uses ``frozen_time``), and returns the finished
    ``JobRun``. The test fails with the job's error unless the run ends in ``expect`` ("done"; None: any).
    """
    from tortoise.exceptions import IntegrityError

    from core.jobs import run_job_now

    async def runner(name: str, project=None, *, expect: str | None = "done", user=None):
        try:
            run = await run_job_now(name, getattr(project, "id", project), getattr(user, "id", user))
        except IntegrityError as exc:
            raise AssertionError(
                f"job {name} already ran at this frozen instant: move time (frozen_time.tick(minutes=1)) between runs"
            ) from exc
        if expect is not None and run.state != expect:
            raise AssertionError(f"job {name} ended {run.state!r}, expected {expect!r}:\n{run.error}\n{run.log}")
        return run

    return runner


@pytest.fixture
async def api_client(app, make_client):
    """Factory: ``client = await api_client([project], ["hotline:write"])`` is an httpx client of the app
    sending a new API token (``client.token`` is its row, ``client.secret`` the token itself).

    Keywords go to ``core.rest.issue_token`` (``expires_at=``, ``rate_limit=``, ``name=``).
    """
    from core.rest import issue_token

    async def factory(projects, scopes, *, name: str = "test integration", **options) -> Client:
        token, secret = await issue_token(name, list(scopes), [getattr(p, "id", p) for p in projects], **options)
        client = make_client()
        client.headers["Authorization"] = f"Bearer {secret}"
        client.token, client.secret = token, secret
        return client

    return factory


async def pending_migrations(*plugin_modules: str) -> list[str]:
    """Migrations ``run.py makemigrations`` would write for the plugins in ``plugin_modules``
    (importable names; none: every installed plugin). ``[]`` means the migrations match the models.

    Uses its own in-memory database: call it from a test that does not use ``app``/``client``.
    """
    from core import db

    host = PluginHost.discover(entry_points=False, extra_modules=plugin_modules)
    labels = {p.name for p in host.plugins if p.module.__name__ in plugin_modules} if plugin_modules else None
    config = await db.init(host, "sqlite://:memory:")
    try:
        writers = await db.pending_model_changes(config)
    finally:
        await db.close()
    return [f"{w.app_label}.{w.name}" for w in writers if labels is None or w.app_label in labels]


def translated(message: str, locale: str | None = None, plugin: str | None = None, **variables) -> str:
    """`message` as users of `locale` see it (default: the installation's default language,
    which jobs, webhooks and pages without a user speak). `plugin`: as that plugin's pages
    and code show it (its own catalog, then core's); without it core's catalog, then any plugin's."""
    from core.i18n import default_locale, dgettext, use_locale

    with use_locale(locale or default_locale()):
        return dgettext(plugin, message, **variables)
