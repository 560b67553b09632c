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
        "connections": {"default": db_url},
        "apps": apps,
        "use_tz": True,
        "timezone": "UTC",
    }


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://", "asyncpg://", "psycopg://"))


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
