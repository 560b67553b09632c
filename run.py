#!/usr/bin/env python3
"""Courtyard command line: `python3 run.py --help`.

On a fresh machine with only Python 3.11+, the first run creates `.venv/`
beside this file, installs Courtyard and its dependencies into it, and
re-runs itself there. Later runs start at once.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("COURTYARD_VENV", ROOT / ".venv"))


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _bootstrap() -> None:
    """Install into .venv when the pyproject changed since the last install, then re-exec."""
    if sys.version_info < (3, 11):
        sys.exit("Courtyard needs Python 3.11 or newer.")
    if os.environ.get("COURTYARD_NO_BOOTSTRAP"):
        return
    python = _venv_python()
    inside = Path(sys.prefix).resolve() == VENV.resolve()
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    marker = VENV / ".courtyard-installed"
    if inside and marker.is_file() and marker.read_text().strip() == wanted:
        return
    if not python.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not (marker.is_file() and marker.read_text().strip() == wanted):
        print("Installing Courtyard and its dependencies (first run only) ...", flush=True)
        subprocess.check_call(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f"{ROOT}[test]"]
        )
        marker.write_text(wanted)
    os.execv(str(python), [str(python), str(ROOT / "run.py"), *sys.argv[1:]])


if __name__ == "__main__":
    _bootstrap()
    sys.path.insert(0, str(ROOT))
    from core.cli import main

    sys.exit(main(sys.argv[1:]))
