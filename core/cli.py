"""`run.py` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import subprocess
import sys
from typing import Any

from core import settings as settings_module
from core.plugins import PluginError, PluginHost
from core.settings import ROOT

log = logging.getLogger("courtyard")


def _host() -> PluginHost:
    from core.plugins import use_host
    from core.settings import current

    host = use_host(PluginHost.discover(extra_modules=current().get("plugins.extra", [])))
    host.apply_settings(current())
    return host


async def _with_db(host: PluginHost, settings, work) -> Any:
    from core import db

    config = await db.init(host, settings.database_url)
    try:
        return await work(config)
    finally:
        await db.close()


async def _unapplied(host: PluginHost, settings) -> list[str]:
    from core import db

    return await _with_db(host, settings, db.unapplied_migrations)


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def not_migrated(host: PluginHost, settings) -> str | None:
    """Why commands that need the database cannot run yet (a new or not yet upgraded database), or None."""
    missing = asyncio.run(_unapplied(host, settings))
    if not missing:
        return None
    if "core.0001_initial" in missing:
        state = "has no tables yet"
    else:
        state = f"lacks {len(missing)} migration(s) of this version (first: {missing[0]})"
    return (
        f"The database ({_without_password(settings.database_url)}) {state}: run `python3 run.py migrate` first "
        "(or `python3 run.py demo` to try Courtyard with demo estates)."
    )


async def migrate_database(host: PluginHost, settings, quiet: bool = False) -> None:
    from core import db
    from core.shell import sync_permissions

    def progress(event: str, app: str, name: str) -> None:
        if event == "apply_done" and not quiet:
            print(f"  applied {app}.{name}")

    async def work(config):
        await db.migrate(config, progress=progress)
        await sync_permissions(host)

    await _with_db(host, settings, work)


def cmd_migrate(args, settings) -> int:
    host = _host()
    print(f"Migrating {settings.database_url} ...")
    asyncio.run(migrate_database(host, settings))
    print("Database is up to date.")
    return 0


def cmd_makemigrations(args, settings) -> int:
    from core import db

    host = _host()

    async def work(config):
        # Every app stays in the config even when only some are asked for: a
        # plugin's migrations must see core's to depend on them.
        writers = await db.pending_model_changes(config)
        if not writers:
            print("No changes detected.")
        for writer in writers:
            if args.plugin and writer.app_label not in args.plugin:
                continue
            print(f"Created {writer.app_label}.{writer.name}: {writer.write()}")

    settings.data["database"]["url"] = "sqlite://:memory:"
    asyncio.run(_with_db(host, settings, work))
    return 0


def cmd_createsuperuser(args, settings) -> int:
    from core.accounts import create_user

    username = args.username or input("Username: ").strip()
    password = args.password or os.environ.get("COURTYARD_SUPERUSER_PASSWORD") or getpass.getpass("Password: ")
    host = _host()

    async def work(config):
        await create_user(username, password, display_name=username, role="admin", project=None)

    asyncio.run(migrate_database(host, settings, quiet=True))
    asyncio.run(_with_db(host, settings, work))
    print(f"Created head-office administrator {username!r}.")
    return 0


async def _where_enabled(host: PluginHost) -> dict[str, str]:
    from core.models import Project, ProjectModule

    projects = await Project.all().order_by("code")
    enabled: dict[str, set[int]] = {}
    for row in await ProjectModule.filter(enabled=True).values("project_id", "module"):
        enabled.setdefault(row["module"], set()).add(row["project_id"])
    where = {}
    for plugin in host.plugins:
        if not plugin.manifest.per_project:
            where[plugin.name] = "always on"
        else:
            on = [p.code for p in projects if p.id in enabled.get(plugin.name, set())]
            where[plugin.name] = "enabled in: " + (", ".join(on) if on else "(none)")
    return where


def cmd_plugins(args, settings) -> int:
    host = _host()
    # What is installed needs no database; where it is enabled does.
    problem = not_migrated(host, settings)
    where = {} if problem else asyncio.run(_with_db(host, settings, lambda config: _where_enabled(host)))
    for plugin in host.plugins:
        m = plugin.manifest
        place = f" {where[m.name]}" if m.name in where else ""
        deps = f" depends: {', '.join(m.depends)}" if m.depends else ""
        print(f"{m.name:14} {m.version:8} [{plugin.origin}]{place}{deps}")
    if problem:
        print(f"\nWhere each module is enabled is not shown. {problem}", file=sys.stderr)
    return 0


def cmd_demo(args, settings) -> int:
    from core.demo import load_demo

    host = _host()
    asyncio.run(migrate_database(host, settings, quiet=True))
    logins = asyncio.run(_with_db(host, settings, lambda config: load_demo(host)))
    base = settings["server"]["base_url"]
    print()
    if logins:
        print("Demo estates loaded. Log in with any of these (password: demo1234):")
        for username, role in logins:
            print(f"  {username:16} {role}")
    else:
        print("Demo data already present (log in as admin / demo1234).")
    print()
    if args.no_serve:
        return 0
    print(f"Courtyard is at {base}/")
    return cmd_serve(args, settings)


def cmd_serve(args, settings) -> int:
    import uvicorn

    from core.app import create_app

    problem = not_migrated(_host(), settings)
    if problem:
        print(f"Cannot serve: {problem}", file=sys.stderr)
        return 2
    host = settings["server"]["host"] if not getattr(args, "host", None) else args.host
    port = int(getattr(args, "port", None) or settings["server"]["port"])
    app = create_app(settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            # Open event streams (/events) never finish by themselves and would keep a
            # graceful shutdown waiting forever: end them; browsers reconnect elsewhere.
            from core import realtime

            realtime.end_streams_soon()
            super().handle_exit(sig, frame)

    Server(uvicorn.Config(app, host=host, port=port, log_level="info", proxy_headers=True)).run()
    return 0


def cmd_worker(args, settings) -> int:
    from core.jobs import run_worker

    host = _host()
    problem = not_migrated(host, settings)
    if problem:
        print(f"Cannot run jobs: {problem}", file=sys.stderr)
        return 2
    asyncio.run(run_worker(host, settings, once=args.once))
    return 0


def cmd_i18n(args, settings) -> int:
    from core import i18n_tools

    host = _host()
    wanted = set(getattr(args, "plugin", None) or [])
    unknown = wanted - set(host.names)
    if unknown:
        print(f"No such plugin: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for plugin in host.plugins:
        # Without names: this tree's own plugins; name an installed plugin to update its catalogs.
        if (plugin.name not in wanted) if wanted else plugin.origin not in ("core", "builtin"):
            continue
        missing = i18n_tools.update(plugin)
        print(f"{plugin.name:14} untranslated: " + ", ".join(f"{k} {v}" for k, v in missing.items()))
    return 0


def cmd_hookdoc(args, settings) -> int:
    from core.hookdoc import write

    print(f"Wrote {write()}")
    return 0


def cmd_new_plugin(args, settings) -> int:
    from pathlib import Path

    from core.scaffold import ScaffoldError, create

    try:
        target = create(args.name, Path(args.dir), label=args.label, description=args.description)
    except ScaffoldError as exc:
        print(f"Cannot create the plugin: {exc}", file=sys.stderr)
        return 2
    print(f"Created {target}")
    print("Next steps:")
    print(f"  {sys.executable} -m pip install -e {target}    # into Courtyard's environment")
    print(f"  cd {target} && PYTHONPATH={ROOT} {sys.executable} -m pytest")
    print("  python3 run.py migrate && python3 run.py plugins   # then enable it on an estate's Modules page")
    return 0


def cmd_test(args, settings) -> int:
    command = [sys.executable, "-m", "pytest", *args.pytest_args]
    if not any(a.startswith("-n") for a in args.pytest_args):
        command[3:3] = ["-n", os.environ.get("COURTYARD_TEST_WORKERS", "auto")]
    return subprocess.call(command, cwd=ROOT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Courtyard — modular customer-service suite for estates. Without a command: serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="serve the web app (and run jobs in-process unless disabled)")
    p.add_argument("--host", help="bind address (default from settings.toml)")
    p.add_argument("--port", type=int, help="port (default from settings.toml)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="create the database, load the demo estates, print logins and serve")
    p.add_argument("--no-serve", action="store_true", help="load the demo data and exit")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("migrate", help="create or upgrade the database schema in place")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("makemigrations", help="write migrations for model changes (developers)")
    p.add_argument("plugin", nargs="*", help="only these plugins")
    p.set_defaults(func=cmd_makemigrations)

    p = sub.add_parser("createsuperuser", help="create a head-office administrator")
    p.add_argument("--username")
    p.add_argument("--password", help="(or COURTYARD_SUPERUSER_PASSWORD; asked when missing)")
    p.set_defaults(func=cmd_createsuperuser)

    p = sub.add_parser("plugins", help="list installed plugins and where each is enabled")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("worker", help="run scheduled jobs and send email, without serving pages")
    p.add_argument("--once", action="store_true", help="run what is due now and exit")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("i18n", help="extract translatable strings into each plugin's catalogs (developers)")
    p.add_argument("plugin", nargs="*", help="only these plugins (installed ones too); default: this tree's")
    p.set_defaults(func=cmd_i18n)

    p = sub.add_parser("hookdoc", help="regenerate docs/hooks.md from core/hookspecs.py (developers)")
    p.set_defaults(func=cmd_hookdoc)

    p = sub.add_parser("new-plugin", help="create a new plugin package outside this tree, ready to install (developers)")
    p.add_argument("name", help="plugin name: lowercase letters, digits, '_' (e.g. parcels)")
    p.add_argument("--dir", default=".", help="where to create courtyard-<name>/ (default: the current folder)")
    p.add_argument("--label", help="human name (default from the name)")
    p.add_argument("--description", help="one line about the plugin")
    p.set_defaults(func=cmd_new_plugin)

    p = sub.add_parser("test", help="run the whole test suite (SQLite, and PostgreSQL when reachable)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    p.set_defaults(func=cmd_test)
    return parser


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tortoise").setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv or ["serve"])
    if args.command is None:
        args = parser.parse_args(["serve", *argv])
    settings = settings_module.use(settings_module.load())
    from core import i18n

    i18n.set_default_locale(settings["i18n"]["default_locale"])
    try:
        return args.func(args, settings)
    except PluginError as exc:
        print(f"Courtyard cannot start: {exc}", file=sys.stderr)
        return 2
