"""Memory and CPU time of processes, read from Linux's /proc (no dependency; 0 elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path


def status_mib(pid: int | str = "self", field: str = "VmRSS") -> float:
    """A memory figure of /proc/<pid>/status in MiB: VmRSS (resident now) or VmHWM (resident at its peak)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time a process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct child processes (uvicorn's workers), without multiprocessing's resource tracker."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"resource_tracker" not in command:
            kids.append(int(stat.parent.name))
    return kids
