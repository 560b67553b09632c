"""The first run: demo estates with staff for every role, and a living dashboard."""

import os
import subprocess
import sys
from datetime import date

import pytest

from core.demo import DEMO_PASSWORD, load_demo
from core.models import Customer, Project, Unit, User
from core.scope import unscoped
from core.settings import ROOT
from plugins.fees.models import Bill, Payment


@pytest.mark.frozen_time("2025-03-10T10:00+08:00")
async def test_demo_estates_with_staff_for_every_role(client, app, host, frozen_time):
    logins = await load_demo(host)
    assert await Project.all().count() == 2
    assert await Unit.all().count() >= 200
    assert await Customer.all().count() >= 200
    usernames = {name for name, _ in logins}
    for prefix in ("ch", "jx"):
        for role in ("manager", "agent", "staff", "cashier", "readonly"):
            assert f"{prefix}_{role}" in usernames
    assert {"admin", "hotline"} <= usernames
    assert await User.all().count() == len(logins)
    with unscoped():
        periods = sorted(set(await Bill.all().values_list("period", flat=True)))
        latest_payment = max(await Payment.all().values_list("received_at", flat=True))
    # Bills for the six months up to core's (frozen) current month, and no payment from the future.
    assert periods[0] == date(2024, 10, 1) and periods[-1] == date(2025, 3, 1)
    assert latest_payment <= frozen_time.now()
    # Loading twice adds nothing.
    assert await load_demo(host) == []

    await client.login("ch_agent", DEMO_PASSWORD)
    assert (await client.get("/p/CUIHU/")).status_code == 200
    assert (await client.get("/p/JINXIU/")).status_code == 404


def test_demo_command_prints_logins(tmp_path):
    env = {**os.environ, "COURTYARD_NO_BOOTSTRAP": "1", "COURTYARD_DATABASE_URL": f"sqlite://{tmp_path}/demo.sqlite3"}
    result = subprocess.run(
        [sys.executable, "run.py", "demo", "--no-serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "password: demo1234" in result.stdout and "ch_agent" in result.stdout
