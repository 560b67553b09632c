"""Database: Tortoise configuration built from the plugins, migrations, transactions.

One Tortoise app per plugin (label = plugin name), each with its own
migration history (`migrations/<plugin>/` in this tree, `<package>/migrations`
for installed plugins). Migrations are Tortoise's own (`tortoise.migrations`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Awaitable, Callable

from tortoise import Tortoise, connections
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.transactions import in_transaction

from core import sqlite
from core.plugins import PluginError, PluginHost
from core.scope import install_scoped_managers

log = logging.getLogger("courtyard.db")


def tortoise_config(host: PluginHost, db_url: str) -> dict[str, Any]:
    apps: dict[str, Any] = {}
    for result in host.call_sync("register_models"):
        modules = list(result.value or [])
        if not modules:
            continue
        plugin = host.by_name[result.plugin]
        apps[plugin.name] = {
            "models": modules,
            "default_connection": "default",
            "migrations": plugin.migrations_module,
        }
    return {
        # SQLite through core.sqlite: transactions that wait for another connection's writes.
        "connections": {"default": sqlite.connection_config(with_connect_timeout(db_url))},
        "apps": apps,
        "use_tz": True,
        "timezone": "UTC",
    }


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://", "asyncpg://", "psycopg://"))


CONNECT_TIMEOUT_SECONDS = 10


def with_connect_timeout(url: str) -> str:
    """PostgreSQL: give up connecting after 10 s unless the URL says otherwise (`?timeout=`).

    asyncpg's own default is 60 s: with the server unreachable a page would
    hang that long before it can tell the user to try again.
    """
    if not is_postgres(url) or "timeout=" in url.partition("?")[2]:
        return url
    return f"{url}{'&' if '?' in url else '?'}timeout={CONNECT_TIMEOUT_SECONDS}"


async def init(host: PluginHost, db_url: str) -> dict[str, Any]:
    config = tortoise_config(host, db_url)
    # Tortoise caches INSERT statements per connection name, not per dialect: a
    # process that switches between SQLite and PostgreSQL (the test suite) must
    # not reuse one's statements on the other.
    EXECUTOR_CACHE.clear()
    try:
        await Tortoise.init(config=config, _enable_global_fallback=True)
    except Exception as exc:
        raise PluginError("core", f"database init failed: {type(exc).__name__}: {exc}") from exc
    install_scoped_managers(all_models())
    _check_descriptions(all_models())
    return config


def _check_descriptions(models: list[type]) -> None:
    """Refuse model docs that Tortoise would put into DDL in a way that breaks it.

    Docstrings become SQL comments, and Tortoise's SQLite migrations split
    statements at semicolons: one in a docstring yields a baffling syntax error.
    """
    for model in models:
        texts = [model._meta.table_description or ""]
        texts += [f.description or "" for f in model._meta.fields_map.values()]
        if any(";" in text for text in texts):
            app = model._meta.app or "?"
            raise PluginError(app, f"model {model.__name__}: a docstring or field description contains ';' (use ',' or '.')")


def all_models() -> list[type]:
    models = []
    for app in Tortoise.apps.values():
        models.extend(app.values())
    return models


def model_by_label(label: str):
    """`"hotline.WorkOrder"` -> the model class."""
    app, _, name = label.partition(".")
    return Tortoise.apps[app][name]


async def close() -> None:
    # Also releases the process-wide context, so the app can be initialised again (tests, CLI).
    await Tortoise.close_connections()


def _ensure_migrations_package(module: str) -> None:
    """Create `migrations/<plugin>/__init__.py` on first makemigrations."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return
    try:
        if importlib.util.find_spec(module) is not None:
            return
    except ModuleNotFoundError:
        pass
    parent = importlib.util.find_spec(module.rsplit(".", 1)[0])
    if parent is None or not parent.submodule_search_locations:
        return
    path = Path(list(parent.submodule_search_locations)[0]) / module.rsplit(".", 1)[1]
    path.mkdir(parents=True, exist_ok=True)
    (path / "__init__.py").touch()
    importlib.invalidate_caches()


async def pending_model_changes(config: dict[str, Any]) -> list[Any]:
    """Migration writers for changes in models that no migration covers yet."""
    from tortoise.migrations.autodetector import MigrationAutodetector

    for app in config["apps"].values():
        _ensure_migrations_package(app["migrations"])
    autodetector = MigrationAutodetector(Tortoise.apps, config["apps"])
    return await autodetector.changes()


async def migrate(config: dict[str, Any], progress=None) -> None:
    from tortoise.migrations.api import migrate as migrate_api

    await migrate_api(config=config, progress=progress)


async def unapplied_migrations(config: dict[str, Any]) -> list[str]:
    """`["core.0001_initial", ...]`: migrations the database has not had yet (all of them on a new one)."""
    from tortoise.migrations.executor import MigrationExecutor

    steps = await MigrationExecutor(connection(), config["apps"]).plan()
    return [f"{step.migration.app_label}.{step.migration.name}" for step in steps if not step.backward]


# Callbacks waiting for the transaction they were registered in: one list per
# open `transaction()` block of this task, merged into the enclosing block's
# list when a savepoint is released and dropped when it rolls back.
_after_commit: ContextVar[list[Callable[[], Awaitable[Any]]] | None] = ContextVar("courtyard_after_commit", default=None)


@contextlib.asynccontextmanager
async def transaction():
    """`async with transaction():` — one database transaction (nested ones are savepoints).

    Callbacks given to `after_commit` inside it run once the outermost block has committed.
    """
    enclosing = _after_commit.get()
    pending: list[Callable[[], Awaitable[Any]]] = []
    token = _after_commit.set(pending)
    try:
        async with in_transaction("default") as client:
            yield client
    finally:
        _after_commit.reset(token)
    if enclosing is not None:
        enclosing.extend(pending)
        return
    for callback in pending:
        try:
            await callback()
        except Exception:  # the change is committed: a failing follow-up must not undo the caller's success
            log.exception("after-commit callback %r failed", callback)


async def after_commit(callback: Callable[[], Awaitable[Any]]) -> None:
    """Run `callback()` after the enclosing `transaction()` commits (nothing if it rolls back).

    Outside a `transaction()` block it runs at once. For effects outside the
    database that must not happen for a change that is rolled back, e.g.
    waking other processes (`core.realtime.publish`).
    """
    pending = _after_commit.get()
    if pending is None:
        await callback()
    else:
        pending.append(callback)


def connection():
    return connections.get("default")


_long_writes = 0  # own_connection blocks open in this process, each holding SQLite's write lock


def long_write_in_progress() -> bool:
    """Whether this process is in a long SQLite write (an import): others' writes wait for its commit.

    Writes that may as well be skipped (a session's "last seen" touch) are, so
    that reading pages and progress polls keep answering meanwhile.
    """
    return _long_writes > 0


def _in_memory(filename: str) -> bool:
    return filename == ":memory:" or "mode=memory" in filename or filename.startswith("file::memory:")


@contextlib.asynccontextmanager
async def own_connection():
    """`async with own_connection(), transaction():` — a long transaction that does not stall the app.

    SQLite: Tortoise keeps one connection per database and a transaction holds
    it until it ends, so every other request's queries would wait behind a long
    one (an import). Inside this block the task talks to the same file over a
    second connection of its own: other requests keep reading the last committed
    data meanwhile (WAL), and their writes wait for the commit (busy timeout).
    PostgreSQL (a pool), in-memory SQLite, or inside a transaction already:
    the usual connection.
    """
    from tortoise.backends.base.client import TransactionalDBClient
    from tortoise.connection import get_connections

    main = connection()
    if main.capabilities.dialect != "sqlite" or isinstance(main, TransactionalDBClient) or _in_memory(main.filename):
        yield main
        return
    own = type(main)(main.filename, connection_name=main.connection_name, fetch_inserted=main.fetch_inserted, **main.pragmas)
    global _long_writes
    await own.create_connection(with_db=True)
    token = get_connections().set(main.connection_name, own)
    _long_writes += 1
    try:
        yield own
    finally:
        _long_writes -= 1
        get_connections().reset(token)
        await own.close()


# The database cannot be reached ----------------------------------------------


def _unavailable_types() -> tuple[type[BaseException], ...]:
    """Errors that only ever mean "no usable connection", whoever raised them."""
    from tortoise.exceptions import DBConnectionError

    types: list[type[BaseException]] = [DBConnectionError]
    with contextlib.suppress(ImportError):
        import asyncpg.exceptions as pg

        # Refused or lost connections, a server shutting down or starting up, no connection slot left.
        types += [pg.PostgresConnectionError, pg.CannotConnectNowError, pg.AdminShutdownError,
                  pg.CrashShutdownError, pg.TooManyConnectionsError]
    return tuple(types)


def _raised_by_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith(("asyncpg", "tortoise.backends")):
            return True
        tb = tb.tb_next
    return False


def unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) means the database cannot be reached right now.

    A refused or reset connection or a connect timeout counts only when raised
    while talking to the database, not, say, to an SMTP server. Callers answer
    "try again later" instead of reporting a bug; the pool reconnects by itself
    once the server is back.
    """
    definite = _unavailable_types()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, definite):
            return True
        if isinstance(current, (ConnectionError, TimeoutError)) and _raised_by_driver(current):
            return True
        if type(current).__name__ == "InterfaceError" and "closed" in str(current) and _raised_by_driver(current):
            return True  # asyncpg: "connection is closed" (the server went away between queries)
        current = current.__cause__ or current.__context__
    return False


async def claim_rows(model, due, *, order_by: tuple[str, ...], limit: int, values: dict[str, Any]) -> list[Any]:
    """Mark up to `limit` rows matching `due` (a `Q`) with `values` so no other process gets the same ones.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: a compare-and-set UPDATE per
    row (`due` is re-checked). `values` must name this claimer (e.g. a worker
    id and a lease); returns the rows claimed, re-read, in id order.
    """
    if connection().capabilities.dialect == "postgres":
        async with transaction():
            locked = await model.filter(due).order_by(*order_by).limit(limit).select_for_update(skip_locked=True)
            ids = [row.id for row in locked]
            if ids:
                await model.filter(id__in=ids).update(**values)
    else:
        candidates = await model.filter(due).order_by(*order_by).limit(limit).values_list("id", flat=True)
        ids = [pk for pk in candidates if await model.filter(due, id=pk).update(**values)]
    return list(await model.filter(id__in=list(ids)).order_by("id"))
