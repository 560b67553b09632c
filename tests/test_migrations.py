"""Migrations match the models, and `run.py migrate` upgrades a database in place."""

import os
import subprocess
import sys

from core import db
from core.plugins import PluginHost
from core.settings import ROOT


async def test_every_model_change_has_a_migration():
    host = PluginHost.discover(entry_points=False)
    config = await db.init(host, "sqlite://:memory:")
    try:
        pending = await db.pending_model_changes(config)
    finally:
        await db.close()
    assert not pending, "models changed without a migration; run `python3 run.py makemigrations`: " + ", ".join(
        f"{w.app_label}.{w.name}" for w in pending
    )


def test_each_plugin_has_its_own_migration_history():
    host = PluginHost.discover(entry_points=False)
    for plugin in host.plugins:
        results = [r for r in host.call_sync("register_models") if r.plugin == plugin.name]
        if results and results[0].value:
            folder = ROOT / "migrations" / plugin.name
            assert (folder / "0001_initial.py").is_file(), f"{plugin.name} has no migrations/{plugin.name}/0001_initial.py"


def test_migrate_command_creates_then_upgrades_in_place(tmp_path):
    env = {**os.environ, "COURTYARD_NO_BOOTSTRAP": "1", "COURTYARD_DATABASE_URL": f"sqlite://{tmp_path}/c.sqlite3"}
    first = subprocess.run([sys.executable, "run.py", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "applied core.0001_initial" in first.stdout
    again = subprocess.run([sys.executable, "run.py", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "applied" not in again.stdout and "Database is up to date." in again.stdout
