"""A `run.py worker` whose clock runs fast, so a test sees many cron minutes in seconds.

Every process started with the same CHORES_CLOCK_BASE (ISO time), CHORES_CLOCK_T0
(a time.time() value) and CHORES_CLOCK_SPEED shares the same fake time:
BASE + (now - T0) * SPEED. Settings come from the environment as for run.py.
"""

import asyncio
import logging
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import settings as settings_module  # noqa: E402
from core.jobs import run_worker  # noqa: E402
from core.plugins import PluginHost, use_host  # noqa: E402


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    base = datetime.fromisoformat(os.environ["CHORES_CLOCK_BASE"])
    t0 = float(os.environ["CHORES_CLOCK_T0"])
    speed = float(os.environ.get("CHORES_CLOCK_SPEED", "60"))

    def clock() -> datetime:
        return base + timedelta(seconds=(time.time() - t0) * speed)

    settings = settings_module.use(settings_module.load())
    host = use_host(PluginHost.discover(extra_modules=settings.get("plugins.extra", [])))
    asyncio.run(run_worker(host, settings, clock=clock))


if __name__ == "__main__":
    main()
