"""Load and soak: a real `run.py serve` process on PostgreSQL (the production database)
with the demo-plus estates, driven over loopback by an open-loop load generator.

The generator (asyncio + httpx, no extra tool) starts requests at a fixed rate whatever
the server's speed, like a front desk that does not wait, bounded by time and by a
request count. Every virtual user logs in as one of the demo's front-desk, cashier and
manager accounts and does the day's mix: dashboards, work-order and customer lists,
search, detail pages, taking a work order at the intake form, posting a payment, adding
a note, and now and then a fresh login.

- the load test: zero errors (no 4xx/5xx, no timeout) at the target rate;
- the soak: the same mix at a steady rate for COURTYARD_SOAK_SECONDS (CI: 120; the
  recorded run in docs/reliability.md: 600 and more), sampling the server's resident
  memory (/proc/<pid>/status) and showing it does not grow after the warm-up.

Knobs (environment): COURTYARD_LOAD_RATE (requests/s, default 4), COURTYARD_LOAD_SECONDS
(default 20), COURTYARD_SOAK_RATE (default 2), COURTYARD_SOAK_SECONDS (default 120),
COURTYARD_LOAD_REPORT (a file to append the figures to, as JSON lines).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from core.scope import unscoped
from core.testing import LiveServer
from tests.reliability import walk
from tests.reliability.walk import ESTATE_A, ESTATE_B, PASSWORD

EXTRA_CUSTOMERS = int(os.environ.get("COURTYARD_LOAD_EXTRA_CUSTOMERS", "3000"))  # per estate: "demo-plus"
USERS = [f"{p}_{r}" for p in ("ch", "jx") for r in ("agent", "agent", "manager", "cashier")] + ["hotline"]


@pytest.fixture
async def database_url(db_kind_ok, database_factory, host, tmp_path):
    if db_kind_ok != "postgres":
        pytest.skip("load is measured on PostgreSQL, the production database")
    return await walk.demo_database(db_kind_ok, database_factory, host, tmp_path)


async def add_demo_plus() -> dict[str, int]:
    """The demo estates plus EXTRA_CUSTOMERS owners each (with phones and units): lists and search at scale."""
    from core.models import Customer, CustomerPhone, CustomerUnit, Project, Unit
    from core.people import pinyin_keys

    rng = random.Random(14)
    from core.demo import GIVEN, SURNAMES

    counts = {}
    with unscoped():
        for project in await Project.all().order_by("id"):
            units = await Unit.filter(project_id=project.id).values_list("id", flat=True)
            names = [rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))) for _ in range(EXTRA_CUSTOMERS)]
            customers = []
            for name in names:
                full, initials = pinyin_keys(name)
                customers.append(Customer(project_id=project.id, name=name, name_pinyin=full, name_initials=initials, note="demo-plus"))
            await Customer.bulk_create(customers, batch_size=500)
            ids = await Customer.filter(project_id=project.id, note="demo-plus").order_by("id").values_list("id", flat=True)
            await CustomerPhone.bulk_create(
                [CustomerPhone(project_id=project.id, customer_id=i, number=f"1{rng.choice('3589')}{rng.randint(100000000, 999999999)}") for i in ids],
                batch_size=500,
            )
            await CustomerUnit.bulk_create(
                [CustomerUnit(project_id=project.id, customer_id=i, unit_id=rng.choice(units), relation="tenant") for i in ids],
                batch_size=500,
            )
            counts[project.code] = await Customer.filter(project_id=project.id).count()
    return counts


@dataclass
class Stats:
    started: float = 0.0
    ended: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def all(self) -> list[float]:
        return sorted(x for v in self.latencies.values() for x in v)

    def percentile(self, p: float) -> float:
        values = self.all()
        return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else 0.0

    def summary(self) -> dict:
        seconds = self.ended - self.started
        return {
            "requests": self.requests,
            "seconds": round(seconds, 1),
            "rate": round(self.requests / seconds, 1) if seconds else 0,
            "p50_ms": round(self.percentile(0.50), 1),
            "p95_ms": round(self.percentile(0.95), 1),
            "p99_ms": round(self.percentile(0.99), 1),
            "errors": len(self.errors),
            "by_action": {k: len(v) for k, v in sorted(self.latencies.items())},
            "p50_ms_by_action": {k: round(statistics.median(v) * 1000) for k, v in sorted(self.latencies.items())},
        }


class FrontDesk:
    """Virtual users of both estates doing the front desk's mix of work."""

    # (action, weight) by role: what each desk does all day, within its permissions.
    MIX = {
        "agent": [
            ("dashboard", 10), ("work_orders", 14), ("customers", 8), ("search", 14), ("customer", 12), ("work_order", 12),
            ("complaints", 4), ("intake", 12), ("note", 6), ("units", 4), ("login", 2),
        ],
        "manager": [
            ("dashboard", 16), ("work_orders", 12), ("complaints", 10), ("customers", 6), ("search", 6), ("customer", 6),
            ("work_order", 10), ("arrears", 8), ("fees_unit", 4), ("note", 4), ("login", 2),
        ],
        "cashier": [
            ("dashboard", 8), ("search", 12), ("customers", 6), ("customer", 8), ("fees_unit", 20), ("payment", 14),
            ("arrears", 6), ("units", 4), ("login", 2),
        ],
    }

    def __init__(self, base_url: str, stats: Stats, seed: int = 14):
        self.base = base_url
        self.stats = stats
        self.rng = random.Random(seed)
        self.sessions: list[tuple[str, str, httpx.AsyncClient]] = []
        self.ids: dict[tuple[str, str], list[int]] = {}
        self.words: list[str] = []

    async def start(self) -> None:
        from core.models import Customer, Project, Unit
        from plugins.fees.models import Bill
        from plugins.hotline.models import WorkOrder

        with unscoped():
            for code in (ESTATE_A, ESTATE_B):
                project = await Project.get(code=code)
                self.ids[(code, "customer")] = await Customer.filter(project_id=project.id).limit(2000).values_list("id", flat=True)
                self.ids[(code, "unit")] = await Unit.filter(project_id=project.id).values_list("id", flat=True)
                self.ids[(code, "order")] = await WorkOrder.filter(project_id=project.id).values_list("id", flat=True)
                # Payments are taken where bills are open (the form shows there).
                self.ids[(code, "billed")] = sorted(set(
                    await Bill.filter(project_id=project.id, status="open").values_list("unit_id", flat=True)
                )) or self.ids[(code, "unit")]
            self.words = [n for n in await Customer.all().limit(300).values_list("name", flat=True)]
        for username in USERS:
            client = httpx.AsyncClient(base_url=self.base, timeout=60)
            await self._login(client, username)
            estate = ESTATE_B if username.startswith("jx_") else ESTATE_A
            self.sessions.append((username, estate, client))

    async def stop(self) -> None:
        for _, _, client in self.sessions:
            await client.aclose()

    async def _login(self, client: httpx.AsyncClient, username: str) -> httpx.Response:
        await client.get("/login")
        response = await client.post(
            "/login", data={"csrftoken": client.cookies.get("csrftoken", ""), "username": username, "password": PASSWORD}
        )
        assert response.status_code == 303, f"login of {username}: {response.status_code}"
        return response

    def _pick(self, estate: str, kind: str) -> int:
        return self.rng.choice(self.ids[(estate, kind)])

    async def _timed(self, action: str, call) -> httpx.Response | None:
        at = time.perf_counter()
        try:
            response = await call()
        except Exception as exc:  # timeouts, refused connections: errors too
            self.stats.errors.append(f"{action}: {type(exc).__name__}: {exc}")
            self.stats.latencies.setdefault(action, []).append(time.perf_counter() - at)
            return None
        self.stats.latencies.setdefault(action, []).append(time.perf_counter() - at)
        self.stats.statuses[response.status_code] = self.stats.statuses.get(response.status_code, 0) + 1
        if response.status_code >= 400:
            self.stats.errors.append(f"{action} {response.request.method} {response.request.url.path}: {response.status_code}")
        return response

    async def _form_post(self, action: str, client: httpx.AsyncClient, page: str, target: str, fill: dict) -> None:
        """Open the page with the form (as staff do), then post it with the fields filled."""
        shown = await self._timed(action + "_page", lambda: client.get(page))
        if shown is None or shown.status_code != 200:
            return
        forms = [f for f in walk.parse_page(page, shown.text)[1] if f.action.split("?")[0].endswith(target)]
        if not forms:
            self.stats.errors.append(f"{action}: no form for {target} on {page}")
            return
        data = {"csrftoken": client.cookies.get("csrftoken", ""), **forms[0].defaults(), **fill}
        await self._timed(action, lambda: client.post(forms[0].action, data=data))

    async def one(self) -> None:
        username, estate, client = self.rng.choice(self.sessions)
        mix = self.MIX[username.rpartition("_")[2] if username != "hotline" else "agent"]
        action = self.rng.choices([a for a, _ in mix], [w for _, w in mix])[0]
        p = f"/p/{estate}"
        if action == "dashboard":
            await self._timed(action, lambda: client.get(f"{p}/"))
        elif action == "work_orders":
            await self._timed(action, lambda: client.get(f"{p}/hotline/", params={"page": self.rng.randint(1, 3)}))
        elif action == "customers":
            await self._timed(action, lambda: client.get(f"{p}/customers", params={"page": self.rng.randint(1, 20)}))
        elif action == "search":
            await self._timed(action, lambda: client.get("/search", params={"q": self.rng.choice(self.words)}))
        elif action == "customer":
            await self._timed(action, lambda: client.get(f"{p}/customers/{self._pick(estate, 'customer')}"))
        elif action == "work_order":
            await self._timed(action, lambda: client.get(f"{p}/hotline/orders/{self._pick(estate, 'order')}"))
        elif action == "complaints":
            await self._timed(action, lambda: client.get(f"{p}/complaints/"))
        elif action == "units":
            await self._timed(action, lambda: client.get(f"{p}/units", params={"q": f"{self.rng.randint(1, 3)}-1"}))
        elif action == "arrears":
            await self._timed(action, lambda: client.get(f"{p}/fees/arrears"))
        elif action == "fees_unit":
            await self._timed(action, lambda: client.get(f"{p}/fees/units/{self._pick(estate, 'unit')}"))
        elif action == "intake":
            await self._form_post(action, client, f"{p}/hotline/intake?customer={self._pick(estate, 'customer')}", "/hotline/intake", {
                "subject": f"负载测试 {self.rng.randint(1, 10**6)}", "description": "厨房水龙头漏水，请派人维修。",
                "kind": "repair", "channel": "phone", "confirmed": "1",
            })
        elif action == "payment":
            unit = self._pick(estate, "billed")
            await self._form_post(action, client, f"{p}/fees/units/{unit}", f"/units/{unit}/payments", {
                "amount": f"{self.rng.randint(1, 300)}.00", "method": "cash", "payer": "业主",
            })
        elif action == "note":
            order = self._pick(estate, "order")
            await self._timed(action, lambda: client.post(
                f"{p}/timeline/hotline.WorkOrder/{order}/notes",
                data={"csrftoken": client.cookies.get("csrftoken", ""), "body": "已电话联系业主，约好明天上门。"},
            ))
        elif action == "login":
            async with httpx.AsyncClient(base_url=self.base, timeout=60) as fresh:
                await fresh.get("/login")
                await self._timed(action, lambda: fresh.post("/login", data={
                    "csrftoken": fresh.cookies.get("csrftoken", ""), "username": username, "password": PASSWORD,
                }))


async def drive(desk: FrontDesk, rate: float, seconds: float, max_requests: int, concurrency: int = 64, every=None) -> None:
    """Start one piece of work every 1/rate seconds (open loop) until time or count runs out."""
    limit = asyncio.Semaphore(concurrency)
    tasks = []
    desk.stats.started = time.perf_counter()
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while loop.time() - start < seconds and n < max_requests:
        due = start + n / rate
        if due > loop.time():
            await asyncio.sleep(due - loop.time())

        async def work():
            async with limit:
                await desk.one()

        tasks.append(asyncio.create_task(work()))
        n += 1
        if every is not None:
            every(loop.time() - start)
    await asyncio.gather(*tasks)
    desk.stats.ended = time.perf_counter()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def server_errors(server: LiveServer) -> str:
    """The tracebacks the server logged (for the failure report)."""
    log = server.output()
    start = log.find("Traceback")
    return log[start : start + 4000] if start >= 0 else ""


def report(name: str, figures: dict) -> None:
    print(f"\n{name}: {json.dumps(figures, ensure_ascii=False)}")
    path = os.environ.get("COURTYARD_LOAD_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"test": name, **figures}, ensure_ascii=False) + "\n")


@pytest.fixture
async def server(app, settings, plugin_modules):
    scale = await add_demo_plus()
    live = LiveServer(settings, plugin_modules)
    try:
        await live.wait(60)
        live.scale = scale
        yield live
    finally:
        live.stop()


async def test_the_front_desk_mix_at_the_target_rate_has_no_errors(server):
    rate = float(os.environ.get("COURTYARD_LOAD_RATE", "4"))
    seconds = float(os.environ.get("COURTYARD_LOAD_SECONDS", "20"))
    stats = Stats()
    desk = FrontDesk(server.url, stats)
    await desk.start()
    try:
        await drive(desk, rate, seconds, max_requests=int(rate * seconds))
    finally:
        await desk.stop()
    figures = {**stats.summary(), "target_rate": rate, "customers": server.scale}
    report("load", figures)
    assert stats.requests >= 0.9 * rate * seconds
    assert not stats.errors, "\n".join(stats.errors[:20]) + "\n" + server_errors(server)
    # Every piece of work that changes data was done: work orders and payments were written.
    assert stats.summary()["by_action"].get("intake", 0) > 0


async def test_memory_does_not_grow_during_a_soak(server):
    rate = float(os.environ.get("COURTYARD_SOAK_RATE", "2"))
    seconds = float(os.environ.get("COURTYARD_SOAK_SECONDS", "120"))
    pid = server.process.pid
    stats = Stats()
    desk = FrontDesk(server.url, stats, seed=15)
    await desk.start()
    samples: list[tuple[float, float]] = []
    next_sample = [0.0]

    def sample(elapsed: float) -> None:
        if elapsed >= next_sample[0]:
            samples.append((elapsed, rss_mb(pid)))
            next_sample[0] = elapsed + max(1.0, seconds / 120)

    try:
        await drive(desk, rate, seconds, max_requests=int(rate * seconds), every=sample)
    finally:
        await desk.stop()
    samples.append((seconds, rss_mb(pid)))
    quarter = max(1, len(samples) // 4)
    warm = statistics.median(m for _, m in samples[quarter : 2 * quarter])
    last = statistics.median(m for _, m in samples[-quarter:])
    figures = {
        **stats.summary(), "soak_rate": rate, "rss_start_mb": round(samples[0][1], 1),
        "rss_after_warmup_mb": round(warm, 1), "rss_end_mb": round(last, 1), "rss_peak_mb": round(max(m for _, m in samples), 1),
        "growth_mb": round(last - warm, 1), "samples": len(samples),
    }
    report("soak", figures)
    assert not stats.errors, "\n".join(stats.errors[:20]) + "\n" + server_errors(server)
    # After the warm-up (caches, pools, compiled templates) memory stays flat: what a leak
    # of a few KB per request would add over the run shows up well above this bound.
    assert last - warm < max(16.0, 0.08 * warm), figures
