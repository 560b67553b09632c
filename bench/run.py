#!/usr/bin/env python3
"""Courtyard's benchmark: every figure in docs/benchmarks.md comes from one run of this.

    .venv/bin/python bench/run.py --scale full            # generates the data first when the database is missing
    .venv/bin/python bench/run.py --scale small --quick   # minutes, for development
    .venv/bin/python bench/run.py --scale ci --quick --generate --db postgres://.../courtyard_bench_ci_x  # the CI test

Courtyard runs as in production: `uvicorn core.app:create_app --factory --workers N` on PostgreSQL, jobs
in no web process, the realtime broker on PostgreSQL (LISTEN/NOTIFY). The load generator (bench/loadgen.py)
runs in this process on the same machine. Measured, with the baselines in the same run:

* start-up time (process start to first page) and memory per worker at rest and under load;
* work-order list (one estate, one state, newest first, 50 rows) and a work order's page: latency
  p50/p95/p99 unloaded and at rising fixed rates, the rate at which p50 doubles, the saturated
  throughput; the same list from bench/baseline_app.py (bare Starlette + asyncpg + Jinja2);
* global search by phone (several spellings, last digits), pinyin, initials and unit code for a
  head-office agent (every estate); the screen pop of a call and the customer 360 page;
* a PBX webhook posted to one process until the screen pop arrives over SSE at another process;
* the bill run for 100,000 units (bench/billrun.py, own process) against a raw COPY insert;
* SQL statements per list page for every list page of every plugin, at 25 and 100 rows.

Results: a table on stdout and JSON in bench/results/<scale>.json; `--markdown <json>` prints it for the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("COURTYARD_NO_BOOTSTRAP", "1")

from bench import loadgen  # noqa: E402
from bench.loader import asyncpg_dsn  # noqa: E402
from bench.procstat import children, cpu_seconds, status_mib  # noqa: E402
from bench.generate import PASSWORD, PBX_NAME, SCALES, database_url, is_postgres  # noqa: E402

HOST = "127.0.0.1"
RESULTS = ROOT / "bench" / "results"

TARGETS = {
    "list_p50_ms": 10.0,
    "list_throughput_ratio": 0.60,
    "screen_pop_p50_ms": 20.0,
    "call_to_pop_p95_ms": 300.0,
    "bills_per_second": 10_000.0,
    "startup_seconds": 1.5,
    "queries_per_list_page": 5,
}


@dataclass
class Plan:
    """How long each measurement runs; --quick shortens everything (CI, development)."""

    sequential: int = 300
    step_seconds: float = 6.0
    max_steps: int = 14
    saturate_seconds: float = 12.0
    clients: int = 16
    calls: int = 100
    startups: int = 3
    bill_units: int = 100_000

    @classmethod
    def quick(cls) -> "Plan":
        return cls(sequential=30, step_seconds=1.0, max_steps=2, saturate_seconds=4.0, clients=4, calls=10, startups=1,
                   bill_units=10_000)

    @classmethod
    def smoke(cls) -> "Plan":
        """Every part once, as briefly as it can run: the CI test (`--scale ci --quick`)."""
        return cls(sequential=8, step_seconds=0.3, max_steps=1, saturate_seconds=0.5, clients=2, calls=3, startups=1,
                   bill_units=10_000)


def log(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# Servers ------------------------------------------------------------------------------


class Server:
    """A uvicorn process (with its workers) on a port of 127.0.0.1."""

    def __init__(self, target: str, env: dict[str, str], *, workers: int = 1, factory: bool = False, name: str = ""):
        self.port = free_port()
        self.name = name or target
        self.command = [sys.executable, "-m", "bench.serve", target, "--host", HOST, "--port", str(self.port),
                        "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        if factory:
            self.command.append("--factory")
        self.workers = workers
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    def start(self, probe: str = "/login", timeout: float = 120) -> float:
        """Start and wait until `probe` answers 200; returns the seconds that took."""
        import httpx

        started = time.perf_counter()
        self.process = subprocess.Popen(self.command, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        url = f"http://{HOST}:{self.port}{probe}"
        with httpx.Client(timeout=5) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()[-3000:]}")
                try:
                    if client.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.output()[-3000:]}")
                time.sleep(0.01)
        seconds = time.perf_counter() - started
        if self.workers > 1:  # every worker up, not just the first
            deadline = time.perf_counter() + timeout
            while len(self.worker_pids()) < self.workers and time.perf_counter() < deadline:
                time.sleep(0.1)
        return seconds

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        return children(self.process.pid) if self.workers > 1 else [self.process.pid]

    def worker_rss(self) -> list[float]:
        return [round(status_mib(pid), 1) for pid in self.worker_pids()]

    def cpu_seconds(self) -> float:
        """CPU time of the workers so far: per request it stays meaningful on a busy shared machine."""
        return sum(cpu_seconds(pid) for pid in self.worker_pids())

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:  # an open event stream can hold a worker: end it
            for pid in self.worker_pids():
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            self.process.kill()
            self.process.wait(5)


def courtyard_env(url: str, broker: str = "postgres") -> dict[str, str]:
    return {
        "COURTYARD_NO_BOOTSTRAP": "1",
        "COURTYARD_DATABASE_URL": url,
        "COURTYARD_SECURITY_SECRET_KEY": "bench-secret-key-not-for-production",
        "COURTYARD_SERVER_EMBEDDED_WORKER": "false",
        "COURTYARD_REALTIME_BROKER": broker,
        "COURTYARD_STORAGE_PATH": str(Path(tempfile.gettempdir()) / "courtyard-bench-files"),
    }


def login(port: int, username: str) -> dict[str, str]:
    """A logged-in session's cookies as a Cookie header."""
    import httpx

    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as client:
        client.get("/login")
        token = client.cookies.get("csrftoken")
        response = client.post("/login", data={"username": username, "password": PASSWORD, "csrftoken": token})
        if response.status_code != 303:
            raise RuntimeError(f"login of {username} failed: {response.status_code} {response.text[:300]}")
        cookies = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return {"Cookie": cookies}


# The data the measurements use ----------------------------------------------------------


async def fixtures(url: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        estate = await conn.fetchrow(
            "SELECT p.id, p.code, p.name, count(u.id) AS units FROM core_project p JOIN core_unit u ON u.project_id = p.id "
            "GROUP BY p.id ORDER BY count(u.id) DESC, p.id LIMIT 1")
        order = await conn.fetchval(
            "SELECT o.id FROM hotline_work_order o WHERE o.project_id = $1 AND o.status = 'closed' AND o.level = 2 "
            "ORDER BY o.received_at DESC LIMIT 1", estate["id"])
        customer = await conn.fetchrow(
            "SELECT c.id, c.name, c.name_pinyin, c.name_initials, ph.number FROM core_customer c "
            "JOIN core_customer_phone ph ON ph.customer_id = c.id "
            "WHERE c.project_id = $1 AND EXISTS (SELECT 1 FROM hotline_work_order o WHERE o.customer_id = c.id) "
            "AND EXISTS (SELECT 1 FROM fees_bill b WHERE b.customer_id = c.id) ORDER BY c.id LIMIT 1", estate["id"])
        unit = await conn.fetchval("SELECT code FROM core_unit WHERE project_id = $1 AND use = 'residential' ORDER BY id LIMIT 1",
                                   estate["id"])
        call = await conn.fetchval("SELECT id FROM hotline_call WHERE customer_id IS NOT NULL ORDER BY id DESC LIMIT 1")
        pbx = await conn.fetchrow("SELECT id, secret FROM hotline_pbx_integration WHERE name = $1", PBX_NAME)
        manager = await conn.fetchval(
            "SELECT u.username FROM core_user u JOIN core_membership m ON m.user_id = u.id JOIN core_role r ON r.id = m.role_id "
            "WHERE m.project_id = $1 AND r.code = 'manager' ORDER BY u.id LIMIT 1", estate["id"])
        counts = {}
        for table in ("core_project", "core_unit", "core_customer", "hotline_work_order", "fees_bill", "fees_bill_line"):
            counts[table] = await conn.fetchval(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = $1", table)
        server = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    national = customer["number"][3:]  # +86 13812345678 -> 138 1234 5678
    return {
        "estate": dict(estate), "order_id": order, "customer": dict(customer), "unit_code": unit, "call_id": call,
        "pbx_id": pbx["id"], "pbx_secret": pbx["secret"], "manager": manager, "agent": "bench_hotline1",
        "extension": "8001", "phone_spaced": f"{national[:3]} {national[3:7]} {national[7:]}",
        "phone_plus": customer["number"], "phone_last4": national[-4:], "counts": counts, "postgres": server,
    }


def machine() -> dict[str, Any]:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
        model = [l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")]
        info["cpu"] = model[0].split(":", 1)[1].strip() if model else ""
    except (OSError, ValueError):
        pass
    for module in ("uvicorn", "uvloop", "httptools", "starlette", "tortoise", "asyncpg", "jinja2"):
        try:
            imported = __import__(module)
            info[module] = getattr(imported, "__version__", "yes")
        except ImportError:
            info[module] = None
    return info


# Measurements -----------------------------------------------------------------------------


def _summary(result: loadgen.Result) -> dict:
    return result.summary()


async def latency_profile(server: "Server", paths, headers, plan: Plan, label: str) -> dict:
    """Unloaded latency, the knee (p50 doubled), the saturated throughput and the CPU time per request of one page."""
    port = server.port
    unloaded = await loadgen.sequential(HOST, port, paths, count=plan.sequential, headers=headers)
    base = unloaded.summary()
    log(f"  {label}: unloaded p50 {base['p50_ms']} ms, p95 {base['p95_ms']} ms, p99 {base['p99_ms']} ms")
    cpu_before = server.cpu_seconds()
    saturated = await loadgen.saturate(HOST, port, paths, clients=plan.clients, seconds=plan.saturate_seconds,
                                       headers=headers, warmup=0)
    cpu = server.cpu_seconds() - cpu_before
    sat = saturated.summary()
    sat["cpu_ms_per_request"] = round(cpu * 1000 / max(saturated.count, 1), 2)
    log(f"  {label}: saturated {sat['throughput']}/s with {plan.clients} clients (p50 {sat['p50_ms']} ms), "
        f"{sat['cpu_ms_per_request']} ms of web-process CPU per request")
    start = max(1.0, sat["throughput"] * 0.2)
    steps, knee = await loadgen.knee(HOST, port, paths, unloaded_p50=base["p50_ms"], start_rate=start, headers=headers,
                                     step_seconds=plan.step_seconds, max_steps=plan.max_steps, log=log)
    return {"unloaded": base, "saturated": sat, "steps": steps, "knee_rate": knee}


async def measure_pages(server: Server, baseline: Server, fx: dict, plan: Plan) -> dict:
    code = fx["estate"]["code"]
    list_path = f"/p/{code}/hotline/?status=closed&per=50"
    detail_path = f"/p/{code}/hotline/orders/{fx['order_id']}"
    headers = login(server.port, fx["manager"])
    out: dict[str, Any] = {"list_path": list_path, "detail_path": detail_path}
    log(f"Work-order list {list_path} (as {fx['manager']})")
    rest = server.worker_rss()
    out["list"] = await latency_profile(server, list_path, headers, plan, "Courtyard list")
    log(f"Baseline list (bare Starlette + asyncpg + Jinja2, {baseline.workers} workers)")
    base_path = f"/orders?project={code}&status=closed&per=50"
    out["list_baseline"] = await latency_profile(baseline, base_path, {}, plan, "baseline list")
    log(f"Work-order page {detail_path}")
    out["detail"] = await latency_profile(server, detail_path, headers, plan, "Courtyard detail")
    out["detail_baseline"] = await latency_profile(baseline, f"/orders/{fx['order_id']}", {}, plan, "baseline detail")
    # Memory: at rest (after start and a login) and at its highest while saturated.
    peak = [0.0] * len(rest)
    stop = asyncio.Event()

    async def sample():
        while not stop.is_set():
            for i, rss in enumerate(server.worker_rss()[: len(peak)]):
                peak[i] = max(peak[i], rss)
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    await loadgen.saturate(HOST, server.port, [list_path, detail_path], clients=plan.clients,
                           seconds=plan.saturate_seconds, headers=headers)
    stop.set()
    await sampler
    out["memory"] = {"rest_mib": rest, "load_mib": peak}
    return out


async def measure_search(server: Server, fx: dict, plan: Plan) -> dict:
    headers = login(server.port, fx["agent"])
    code = fx["estate"]["code"]
    customer = fx["customer"]
    queries = {
        "phone_spaced": fx["phone_spaced"],
        "phone_e164": fx["phone_plus"],
        "phone_last4": fx["phone_last4"],
        "pinyin_full": customer["name_pinyin"],
        "pinyin_initials": customer["name_initials"],
        "name": customer["name"],
        "unit_code": fx["unit_code"],
    }
    out: dict[str, Any] = {}
    count = max(plan.sequential // 3, min(20, plan.sequential))
    log(f"Global search as head-office agent {fx['agent']} (every estate)")
    for label, text in queries.items():
        path = f"/search?q={quote(text)}"
        result = await loadgen.sequential(HOST, server.port, path, count=count, headers={**headers, "HX-Request": "true"})
        out[label] = {"query": text, **result.summary()}
        log(f"  {label:16} {text!r:24} p50 {out[label]['p50_ms']} ms, p95 {out[label]['p95_ms']} ms")
    pop = f"/hotline/calls/{fx['call_id']}/pop"
    result = await loadgen.sequential(HOST, server.port, pop, count=count, headers={**headers, "HX-Request": "true"})
    out["screen_pop"] = {"path": pop, **result.summary()}
    log(f"  screen pop lookup {pop}: p50 {out['screen_pop']['p50_ms']} ms, p95 {out['screen_pop']['p95_ms']} ms")
    out["queries"] = queries
    page = f"/p/{code}/customers/{customer['id']}"
    result = await loadgen.sequential(HOST, server.port, page, count=count, headers=headers)
    out["customer_360"] = {"path": page, **result.summary()}
    log(f"  customer 360 {page}: p50 {out['customer_360']['p50_ms']} ms, p95 {out['customer_360']['p95_ms']} ms")
    return out


def _sign(secret: str, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


async def _sse_messages(port: int, headers: dict[str, str], queue: asyncio.Queue, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET /events HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    ready.set()
    buffer = b""
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            arrived = time.perf_counter()
            buffer += chunk
            for match in re.finditer(rb"data: (\{.*?\})\n", buffer):
                await queue.put((arrived, json.loads(match.group(1))))
            buffer = buffer[buffer.rfind(b"\n") + 1:]
    finally:
        writer.close()


async def measure_call_to_pop(url: str, fx: dict, plan: Plan, broker: str) -> dict:
    """Webhook to process B, SSE stream on process A, as a browser tab of the agent whose phone rings."""
    env = courtyard_env(url, broker)
    browser_side = Server("core.app:create_app", env, factory=True, name="courtyard A (browser)")
    pbx_side = Server("core.app:create_app", env, factory=True, name="courtyard B (webhook)")
    startups = [browser_side.start(), pbx_side.start()]
    try:
        headers = login(browser_side.port, fx["agent"])
        queue: asyncio.Queue = asyncio.Queue()
        ready = asyncio.Event()
        stream = asyncio.create_task(_sse_messages(browser_side.port, headers, queue, ready))
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.5)
        while not queue.empty():
            queue.get_nowait()  # replayed messages of earlier runs
        hook = loadgen.Connection(HOST, pbx_side.port, {"Content-Type": "application/json"})
        fetch = loadgen.Connection(HOST, browser_side.port, {**headers, "HX-Request": "true"})
        event_ms, pop_ms = [], []
        run = secrets.token_hex(4)
        for i in range(plan.calls + 3):
            body = json.dumps({"event_id": f"bench-{run}-{i}", "event": "ringing", "call_id": f"bench-{run}-{i}",
                               "caller": fx["phone_spaced"], "extension": fx["extension"],
                               "timestamp": datetime.now(timezone.utc).isoformat()}).encode()
            stamp = int(time.time())
            sent = time.perf_counter()
            status, answer = await hook.request("POST", f"/hooks/hotline/pbx/{fx['pbx_id']}", body, {
                "X-Courtyard-Timestamp": str(stamp), "X-Courtyard-Signature": _sign(fx["pbx_secret"], stamp, body)})
            if status != 200:
                raise RuntimeError(f"webhook answered {status}: {answer[:300]!r}")
            arrived, message = await asyncio.wait_for(queue.get(), 30)
            status, html = await fetch.request("GET", message["payload"]["fragment"])
            done = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"screen pop answered {status}")
            if i >= 3:  # the first calls warm both processes up
                event_ms.append((arrived - sent) * 1000)
                pop_ms.append((done - sent) * 1000)
            await asyncio.sleep(0.05)
        stream.cancel()
        await hook.close()
        await fetch.close()
    finally:
        browser_side.stop()
        pbx_side.stop()
    await _forget_bench_calls(url)

    def pct(values, p):
        result = loadgen.Result(latencies=values)
        return round(result.percentile(p), 1)

    return {"broker": broker, "calls": len(event_ms), "startup_seconds": [round(s, 3) for s in startups],
            "event_p50_ms": pct(event_ms, 50), "event_p95_ms": pct(event_ms, 95),
            "pop_p50_ms": pct(pop_ms, 50), "pop_p95_ms": pct(pop_ms, 95)}


async def _forget_bench_calls(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("DELETE FROM hotline_call WHERE external_id LIKE 'bench-%'")
        await conn.execute("DELETE FROM hotline_pbx_event_receipt WHERE event_id LIKE 'bench-%'")
        await conn.execute("DELETE FROM core_realtime_message WHERE event = 'screen_pop' AND payload::text LIKE '%pop%' "
                           "AND created_at > now() - interval '1 day'")
    finally:
        await conn.close()


def measure_startup(url: str, plan: Plan) -> dict:
    """Wall time from process start to the first page, and the CPU time the process used for it (on a busy
    machine the wall time mostly measures waiting for a core; the CPU time is what a quiet one would take)."""
    seconds, cpu = [], []
    for _ in range(plan.startups):
        server = Server("core.app:create_app", courtyard_env(url), factory=True, name="courtyard start-up")
        try:
            seconds.append(round(server.start(), 3))
            cpu.append(round(server.cpu_seconds(), 3))
        finally:
            server.stop()
    return {"seconds": seconds, "median": statistics.median(seconds), "cpu_seconds": cpu,
            "cpu_median": statistics.median(cpu)}


def measure_bill_run(url: str, plan: Plan) -> dict:
    out = {}
    for mode in ("courtyard", "raw"):
        log(f"Bill run ({mode}) for up to {plan.bill_units:,} units ...")
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "billrun.py"), "--db", url, "--units",
                               str(plan.bill_units), "--mode", mode], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"bill run ({mode}) failed:\n{done.stderr[-3000:]}")
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        log(f"  {out[mode]['bills']:,} bills in {out[mode]['seconds']}s: {out[mode]['bills_per_second']:,}/s, "
            f"memory {out[mode]['rss_start_mib']} -> peak {out[mode]['rss_peak_mib']} MiB")
    return out


async def measure_queries(url: str, fx: dict) -> dict:
    """In process: statements per request of every list page, as the estate's manager."""
    import httpx

    from bench.pages import list_page_queries
    from core import settings as settings_module
    from core.app import create_app
    from core.plugins import PluginHost
    from core.testing import Client

    settings = settings_module.load(environ={})
    settings.data["database"]["url"] = url
    settings.data["server"]["embedded_worker"] = False
    app = create_app(settings, PluginHost.discover(entry_points=False), run_jobs=False)
    async with app.router.lifespan_context(app.starlette):
        async with Client(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            await client.login(fx["manager"], PASSWORD)
            pages = await list_page_queries(client, fx["estate"]["code"])
    return {"pages": [p.as_dict() for p in pages], "max": max((max(p.queries) for p in pages), default=0),
            "grows": [p.path for p in pages if p.grows]}


async def measure_search_providers(url: str, fx: dict, queries: dict[str, str]) -> dict:
    """In process: how long each plugin's `search` hook takes for each query (the search page waits for all)."""
    import httpx

    from core import settings as settings_module
    from core.app import create_app
    from core.plugins import PluginHost, resolve
    from core.testing import Client

    settings = settings_module.load(environ={})
    settings.data["database"]["url"] = url
    settings.data["server"]["embedded_worker"] = False
    host = PluginHost.discover(entry_points=False)
    spent: dict[str, float] = {}

    def timed(function, plugin):
        def wrapper(**kwargs):
            started = time.perf_counter()

            async def finish():
                try:
                    return await resolve(function(**kwargs))
                finally:
                    spent[plugin] = min(spent.get(plugin, 1e9), (time.perf_counter() - started) * 1000)
            return finish()
        return wrapper

    for impl in host.pm.hook.search.get_hookimpls():
        impl.function = timed(impl.function, impl.plugin_name)
    app = create_app(settings, host, run_jobs=False)
    out: dict[str, dict[str, float]] = {}
    async with app.router.lifespan_context(app.starlette):
        async with Client(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            await client.login(fx["agent"], PASSWORD)
            for label, text in queries.items():
                spent.clear()
                for _ in range(3):  # the fastest of three: the provider's own cost, not the machine's noise
                    await client.get("/search", params={"q": text}, headers={"HX-Request": "true"})
                out[label] = {plugin: round(ms, 1) for plugin, ms in sorted(spent.items(), key=lambda kv: -kv[1])}
                log(f"  {label:16} " + ", ".join(f"{k} {v} ms" for k, v in out[label].items()))
    return out


# Report -------------------------------------------------------------------------------------


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a and b else None


def targets(results: dict) -> list[dict]:
    rows = []

    def add(name, value, target, better, baseline=None, note=""):
        met = None if value is None or target is None else (value <= target if better == "lower" else value >= target)
        rows.append({"name": name, "value": value, "target": target, "baseline": baseline,
                     "ratio": _ratio(value, baseline) if baseline else None, "met": met, "note": note})

    pages = results.get("pages")
    if pages:
        add("list page p50 unloaded (ms)", pages["list"]["unloaded"]["p50_ms"], TARGETS["list_p50_ms"], "lower",
            pages["list_baseline"]["unloaded"]["p50_ms"])
        ratio = _ratio(pages["list"]["saturated"]["throughput"], pages["list_baseline"]["saturated"]["throughput"])
        add("list page throughput / baseline", ratio, TARGETS["list_throughput_ratio"], "higher",
            note=f"{pages['list']['saturated']['throughput']}/s vs {pages['list_baseline']['saturated']['throughput']}/s")
        add("list page web CPU per request (ms)", pages["list"]["saturated"]["cpu_ms_per_request"], None, None,
            pages["list_baseline"]["saturated"]["cpu_ms_per_request"], note="no target: explains the throughput")
        add("work-order page p50 unloaded (ms)", pages["detail"]["unloaded"]["p50_ms"], None, None,
            pages["detail_baseline"]["unloaded"]["p50_ms"])
    search = results.get("search")
    if search:
        add("screen-pop lookup p50 (ms)", search["screen_pop"]["p50_ms"], TARGETS["screen_pop_p50_ms"], "lower")
        add("customer 360 page p50 (ms)", search["customer_360"]["p50_ms"], None, None)
        for key in ("phone_spaced", "phone_last4", "pinyin_full", "pinyin_initials", "name", "unit_code"):
            add(f"search {key} p50 (ms)", search[key]["p50_ms"], None, None, note=f"p95 {search[key]['p95_ms']} ms")
    call = results.get("call_to_pop")
    if call:
        add("call event to screen pop p95 (ms)", call["pop_p95_ms"], TARGETS["call_to_pop_p95_ms"], "lower",
            note=f"event over SSE p95 {call['event_p95_ms']} ms")
    bills = results.get("bill_run")
    if bills:
        add("bill run (bills/s)", bills["courtyard"]["bills_per_second"], TARGETS["bills_per_second"], "higher",
            bills["raw"]["bills_per_second"],
            note=f"peak {bills['courtyard']['rss_peak_mib']} MiB (raw {bills['raw']['rss_peak_mib']} MiB)")
    startup = results.get("startup")
    if startup:
        add("start-up with all plugins (s)", startup["median"], TARGETS["startup_seconds"], "lower",
            note=f"CPU time {startup.get('cpu_median')} s")
    queries = results.get("queries")
    if queries:
        add("SQL statements on a list page (max)", queries["max"], TARGETS["queries_per_list_page"], "lower",
            note="grows with rows: " + (", ".join(queries["grows"]) or "none"))
    return rows


def print_table(results: dict) -> None:
    log("")
    log(f"{'measure':42} {'Courtyard':>12} {'baseline':>10} {'ratio':>7} {'target':>8}  met")
    for row in results["targets"]:
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        log(f"{row['name']:42} {str(row['value']):>12} {str(row['baseline'] or ''):>10} {str(row['ratio'] or ''):>7} "
            f"{str(row['target'] if row['target'] is not None else ''):>8}  {met}  {row['note']}")
    pages = results.get("pages")
    if pages:
        log("")
        for key in ("list", "list_baseline", "detail", "detail_baseline"):
            p = pages[key]
            log(f"{key:16} unloaded p50/p95/p99 {p['unloaded']['p50_ms']}/{p['unloaded']['p95_ms']}/{p['unloaded']['p99_ms']} ms"
                f"  saturated {p['saturated']['throughput']}/s  p50 doubles at {p['knee_rate'] or '>' + str(p['steps'][-1]['rate'])}/s")
        log(f"memory per worker: at rest {pages['memory']['rest_mib']} MiB, under load {pages['memory']['load_mib']} MiB")


def markdown(results: dict) -> str:
    """The figures of a run as the Markdown docs/benchmarks.md quotes (`bench/run.py --markdown results.json`)."""
    m = results.get("machine", {})
    lines = [
        f"Run of {results.get('started_at', '?')}, scale `{results.get('scale')}`"
        f"{' (--quick)' if results.get('quick') else ''}, {results.get('workers')} workers, "
        f"{m.get('cpus')} CPUs ({m.get('cpu', '')}), load average at start {m.get('load_average')}, "
        f"PostgreSQL {results.get('dataset', {}).get('postgres', '?')}, uvicorn {m.get('uvicorn')} "
        f"(uvloop {m.get('uvloop') or 'no'}, httptools {m.get('httptools') or 'no'}). "
        f"Rows: {results.get('dataset', {}).get('rows')}.",
        "",
        "| measure | Courtyard | baseline | ratio | target | met | note |",
        "| --- | ---: | ---: | ---: | ---: | :---: | --- |",
    ]
    for row in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        lines.append(f"| {row['name']} | {row['value']} | {row['baseline'] or ''} | {row['ratio'] or ''} | "
                     f"{'' if row['target'] is None else row['target']} | {met} | {row['note']} |")
    pages = results.get("pages")
    if pages:
        lines += ["", "| page | unloaded p50 / p95 / p99 (ms) | saturated (req/s) | p50 doubles at (req/s) | web CPU per request (ms) |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for key, label in (("list", "work-order list"), ("list_baseline", "list, bare baseline"),
                           ("detail", "work-order page"), ("detail_baseline", "order page, bare baseline")):
            p = pages[key]
            u = p["unloaded"]
            knee = p["knee_rate"] or f"> {p['steps'][-1]['rate']}"
            lines.append(f"| {label} | {u['p50_ms']} / {u['p95_ms']} / {u['p99_ms']} | {p['saturated']['throughput']} | "
                         f"{knee} | {p['saturated'].get('cpu_ms_per_request')} |")
        lines.append("")
        lines.append(f"Memory per worker (MiB): at rest {pages['memory']['rest_mib']}, under load {pages['memory']['load_mib']}.")
    search = results.get("search")
    if search:
        lines += ["", "| search (head-office agent, every estate) | query | p50 / p95 (ms) | slowest providers, in process (ms) |",
                  "| --- | --- | --- | --- |"]
        for key, text in search.get("queries", {}).items():
            providers = search.get("providers", {}).get(key, {})
            top = ", ".join(f"{k} {v}" for k, v in list(providers.items())[:3])
            lines.append(f"| {key} | `{text}` | {search[key]['p50_ms']} / {search[key]['p95_ms']} | {top} |")
        for key in ("screen_pop", "customer_360"):
            lines.append(f"| {key.replace('_', ' ')} | `{search[key]['path']}` | {search[key]['p50_ms']} / {search[key]['p95_ms']} | |")
    call = results.get("call_to_pop")
    if call:
        lines += ["", f"Call event to screen pop ({call['calls']} calls, broker {call['broker']}): event over SSE p50 "
                  f"{call['event_p50_ms']} ms, p95 {call['event_p95_ms']} ms; pop shown p50 {call['pop_p50_ms']} ms, "
                  f"p95 {call['pop_p95_ms']} ms."]
    bills = results.get("bill_run")
    if bills:
        c, r = bills["courtyard"], bills["raw"]
        lines += ["", "| bill run | units | bills | seconds | bills/s | CPU ms per bill (this process) | memory start → peak (MiB) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for label, b in (("Courtyard (`run_bill_run`)", c), ("raw COPY baseline", r)):
            lines.append(f"| {label} | {b['units']} | {b['bills']} | {b['seconds']} | {b['bills_per_second']} | "
                         f"{b.get('cpu_ms_per_bill')} | {b['rss_start_mib']} → {b['rss_peak_mib']} |")
    startup = results.get("startup")
    if startup:
        lines += ["", f"Start-up to the first page: {startup['seconds']} s wall, {startup.get('cpu_seconds')} s CPU."]
    queries = results.get("queries")
    if queries:
        lines += ["", f"SQL statements per list page: at most {queries['max']}; growing with the rows shown: "
                  f"{', '.join(queries['grows']) or 'none'} ({len(queries['pages'])} list pages)."]
    return "\n".join(lines) + "\n"


# Main ------------------------------------------------------------------------------------------


async def database_ready(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
    except Exception:
        return False
    try:
        return bool(await conn.fetchval("SELECT to_regclass('public.hotline_work_order') IS NOT NULL")) and bool(
            await conn.fetchval("SELECT EXISTS (SELECT 1 FROM hotline_pbx_integration WHERE name = $1)", PBX_NAME))
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--db", help="PostgreSQL URL (default: courtyard_bench_<scale>)")
    parser.add_argument("--generate", action="store_true", help="generate the data first even if the database exists")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="uvicorn workers (default: CPU count)")
    parser.add_argument("--quick", action="store_true", help="short measurements (CI, development)")
    parser.add_argument("--broker", default="postgres", help="realtime broker for the screen pop (postgres or a redis:// URL)")
    parser.add_argument("--only", help="comma-separated parts: startup,pages,search,call,bills,queries")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/<scale>.json)")
    parser.add_argument("--markdown", metavar="JSON", help="print the figures of an earlier run as Markdown and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())), end="")
        return 0
    url = database_url(args.scale, args.db)
    if not is_postgres(url):
        parser.error("the benchmark runs on PostgreSQL (the generator also fills SQLite: bench/generate.py --db sqlite://...)")
    plan = (Plan.smoke() if args.scale == "ci" else Plan.quick()) if args.quick else Plan()
    parts = set((args.only or "startup,pages,search,call,bills,queries").split(","))
    started = time.perf_counter()
    results: dict[str, Any] = {"scale": args.scale, "quick": args.quick, "workers": args.workers,
                               "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine()}
    if args.generate or not asyncio.run(database_ready(url)):
        log(f"Generating the {args.scale} data set into {url} ...")
        cmd = [sys.executable, str(ROOT / "bench" / "generate.py"), "--scale", args.scale, "--db", url]
        subprocess.run(cmd, cwd=ROOT, check=True)
        generated = RESULTS / f"generate-{args.scale}.json"
        if generated.exists():
            results["generate"] = json.loads(generated.read_text())
    # As a deployment would: the schema of the code being measured (plugins add tables and indexes over time).
    subprocess.run([sys.executable, str(ROOT / "run.py"), "migrate"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, **courtyard_env(url)})
    fx = asyncio.run(fixtures(url))
    results["dataset"] = {"estate": fx["estate"], "rows": fx["counts"], "postgres": fx["postgres"]}
    log(f"Data: {fx['counts']}; largest estate {fx['estate']['code']} ({fx['estate']['units']} units)")

    if "startup" in parts:
        log("Start-up (process start to first page, 1 worker, all plugins) ...")
        results["startup"] = measure_startup(url, plan)
        log(f"  {results['startup']['seconds']} s (CPU {results['startup']['cpu_seconds']} s)")
    if parts & {"pages", "search"}:
        env = courtyard_env(url, args.broker)
        server = Server("core.app:create_app", env, workers=args.workers, factory=True, name="courtyard")
        baseline = Server("bench.baseline_app:app", {"BENCH_DATABASE_URL": url}, workers=args.workers, name="baseline")
        server.start()
        baseline.start(probe=f"/orders?project={fx['estate']['code']}&status=closed&per=50")
        try:
            if "pages" in parts:
                results["pages"] = asyncio.run(measure_pages(server, baseline, fx, plan))
            if "search" in parts:
                results["search"] = asyncio.run(measure_search(server, fx, plan))
                log("Search providers, in process (fastest of 3, ms):")
                results["search"]["providers"] = asyncio.run(
                    measure_search_providers(url, fx, results["search"]["queries"]))
        finally:
            server.stop()
            baseline.stop()
    if "call" in parts:
        log(f"Call event to screen pop (webhook on one process, SSE on another, broker {args.broker}) ...")
        results["call_to_pop"] = asyncio.run(measure_call_to_pop(url, fx, plan, args.broker))
        c = results["call_to_pop"]
        log(f"  event p50/p95 {c['event_p50_ms']}/{c['event_p95_ms']} ms; screen pop shown p50/p95 {c['pop_p50_ms']}/{c['pop_p95_ms']} ms")
    if "bills" in parts:
        results["bill_run"] = measure_bill_run(url, plan)
    if "queries" in parts:
        log("SQL statements per list page (25 and 100 rows) ...")
        results["queries"] = asyncio.run(measure_queries(url, fx))
        for page in results["queries"]["pages"]:
            log(f"  {page['path']:44} rows {page['rows']} statements {page['queries']}{'  GROWS' if page['grows'] else ''}")
    results["targets"] = targets(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        (RESULTS / f"{args.scale}.json").write_text(text)
    log(f"Done in {results['seconds']}s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
