"""Commands on a fresh checkout, before `run.py migrate`: a clear next step, never a traceback."""

import os
import subprocess
import sys

from core.settings import ROOT

MIGRATE_FIRST = "has no tables yet: run `python3 run.py migrate` first"


def run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COURTYARD_NO_BOOTSTRAP": "1", "COURTYARD_DATABASE_URL": f"sqlite://{tmp_path}/new.sqlite3"}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_plugins_lists_what_is_installed_and_says_to_migrate(tmp_path):
    result = run(tmp_path, "plugins")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert names[0] == "core" and {"hotline", "fees", "complaints", "handover", "activities"} <= set(names)
    assert MIGRATE_FIRST in result.stderr


def test_worker_and_serve_refuse_an_unmigrated_database_in_one_line(tmp_path):
    for command in (["worker", "--once"], ["serve", "--port", "8799"]):
        result = run(tmp_path, *command)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert "Traceback" not in result.stdout + result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
        assert len(lines) == 1 and MIGRATE_FIRST in lines[0], lines


def test_createsuperuser_sets_the_database_up_first_then_plugins_shows_where_modules_are_on(tmp_path):
    created = run(tmp_path, "createsuperuser", "--username", "boss", "--password", "Str0ng-enough-pw")
    assert created.returncode == 0, created.stderr[-2000:]
    assert "Created head-office administrator 'boss'." in created.stdout
    listed = run(tmp_path, "plugins")
    assert listed.returncode == 0 and "run.py migrate" not in listed.stderr
    assert listed.stdout.splitlines()[0].endswith("[core] always on") and "enabled in: (none)" in listed.stdout
