"""`run.py` for the reliability tests, with test-only slow-downs chosen by environment variables.

    python tests/reliability/launch.py serve --port 8001
    python tests/reliability/launch.py worker

COURTYARD_TEST_SLOW_BILL_CHUNK=0.8   seconds added to each bill-run chunk (inside its transaction)
COURTYARD_TEST_BILL_CHUNK_SIZE=500   units per bill-run chunk (more chunks in a small test estate)
COURTYARD_TEST_SLOW_IMPORT_ROW=0.004 seconds added to each imported row (inside the import's transaction)
COURTYARD_TEST_CLOCK_SPEED=20        the process's clock (core.clock) runs this many times faster: it shows
                                     COURTYARD_TEST_CLOCK_BASE (ISO time, default: the real time then) at
                                     COURTYARD_TEST_CLOCK_T0 (a time.time() value, default: the start)

They make "kill it in the middle" deterministic: the test waits until the work is
visibly half done, then sends SIGKILL. The product carries no hooks for this.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _slow(owner, name: str, seconds: float) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    async def slowed(*args, **kwargs):
        result = await original(*args, **kwargs)
        await asyncio.sleep(seconds)
        return result

    setattr(owner, name, slowed)


def patch() -> None:
    speed = float(os.environ.get("COURTYARD_TEST_CLOCK_SPEED") or 0)
    if speed:
        from core import clock

        t0 = float(os.environ.get("COURTYARD_TEST_CLOCK_T0") or time.time())
        start = os.environ.get("COURTYARD_TEST_CLOCK_BASE")
        base = datetime.fromisoformat(start) if start else datetime.fromtimestamp(t0, timezone.utc)
        clock.now = lambda: base + timedelta(seconds=(time.time() - t0) * speed)
    bill = float(os.environ.get("COURTYARD_TEST_SLOW_BILL_CHUNK") or 0)
    if bill:
        from plugins.fees import billing

        _slow(billing, "_bill_chunk", bill)
    chunk = int(os.environ.get("COURTYARD_TEST_BILL_CHUNK_SIZE") or 0)
    if chunk:
        from plugins.fees import billing

        billing.run_bill_run.__kwdefaults__["chunk_size"] = chunk  # the job calls it with the default
    row = float(os.environ.get("COURTYARD_TEST_SLOW_IMPORT_ROW") or 0)
    if row:
        from core import importer

        _slow(importer.Writer, "write", row)


if __name__ == "__main__":
    patch()
    from core.cli import main

    sys.exit(main(sys.argv[1:]))
