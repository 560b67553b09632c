"""A small HTTP/1.1 load generator for the benchmark (asyncio, keep-alive connections, no dependencies).

Two ways to load a server:

* `fixed_rate(...)`: open loop. Requests are due at a fixed rate whatever the
  server does; each latency runs from the moment its request was due, so a
  server that falls behind shows it in the latencies (no coordinated omission).
* `saturate(...)`: closed loop. A number of clients send their next request as
  soon as the previous answer arrived: the highest throughput the server
  sustains.

Both only ever talk to the address given (the benchmark starts the servers on
127.0.0.1) and stop after the given duration.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence


class HttpError(RuntimeError):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int, headers: dict[str, str]):
        self.host, self.port = host, port
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = f"Host: {host}:{port}\r\n{extra}"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        self.writer.write(f"{method} {path} HTTP/1.1\r\n{self.head}{extra}{length}\r\n".encode() + body)
        try:
            return await self._response()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            raise HttpError(f"{method} {path}: connection lost ({exc})") from exc

    async def _response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body


@dataclass
class Result:
    """Latencies in milliseconds of one load step."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    offered_rate: float | None = None

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[index]

    def summary(self) -> dict:
        return {
            "requests": self.count,
            "errors": self.errors,
            "rate": round(self.offered_rate, 1) if self.offered_rate is not None else None,
            "throughput": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "mean_ms": round(statistics.fmean(self.latencies), 2) if self.latencies else None,
        }


def _paths(paths: Sequence[str] | str) -> Iterable[str]:
    return itertools.cycle([paths] if isinstance(paths, str) else list(paths))


async def _check(status: int, path: str) -> None:
    if status >= 400:
        raise HttpError(f"GET {path} answered {status}")


async def sequential(host: str, port: int, paths: Sequence[str] | str, *, count: int, headers: dict[str, str],
                     warmup: int = 5) -> Result:
    """One request at a time: latency without load."""
    conn = Connection(host, port, headers)
    result = Result()
    source = _paths(paths)
    try:
        for _ in range(warmup):
            path = next(source)
            status, _ = await conn.request("GET", path)
            await _check(status, path)
        started = time.perf_counter()
        for _ in range(count):
            path = next(source)
            t0 = time.perf_counter()
            status, _ = await conn.request("GET", path)
            result.latencies.append((time.perf_counter() - t0) * 1000)
            await _check(status, path)
        result.seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return result


async def fixed_rate(host: str, port: int, paths: Sequence[str] | str, *, rate: float, seconds: float,
                     headers: dict[str, str], connections: int = 32) -> Result:
    """Requests due `rate` times a second for `seconds`; latency counted from when each was due."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(host, port, headers))
    result = Result(offered_rate=rate)
    source = _paths(paths)
    total = max(1, int(rate * seconds))
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = []

    async def one(due: float, path: str) -> None:
        conn = await pool.get()
        try:
            status, _ = await conn.request("GET", path)
            if status >= 400:
                result.errors += 1
            else:
                result.latencies.append((loop.time() - due) * 1000)
        except HttpError:
            result.errors += 1
        finally:
            pool.put_nowait(conn)

    for i in range(total):
        due = started + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, next(source))))
    # Requests still waiting at the end are counted when they finish (bounded: at most a minute more).
    await asyncio.wait(tasks, timeout=60)
    result.seconds = loop.time() - started
    while not pool.empty():
        await pool.get_nowait().close()
    return result


async def saturate(host: str, port: int, paths: Sequence[str] | str, *, clients: int, seconds: float,
                   headers: dict[str, str], warmup: float = 1.0) -> Result:
    """`clients` clients in a closed loop for `seconds` (after `warmup`): the sustained throughput."""
    result = Result()
    source = _paths(paths)
    loop = asyncio.get_running_loop()
    started = loop.time()
    measure_from = started + warmup
    stop_at = measure_from + seconds

    async def client() -> None:
        conn = Connection(host, port, headers)
        try:
            while loop.time() < stop_at:
                path = next(source)
                t0 = loop.time()
                try:
                    status, _ = await conn.request("GET", path)
                except HttpError:
                    result.errors += 1
                    continue
                if t0 >= measure_from:
                    if status >= 400:
                        result.errors += 1
                    else:
                        result.latencies.append((loop.time() - t0) * 1000)
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = seconds
    return result


async def knee(host: str, port: int, paths: Sequence[str] | str, *, unloaded_p50: float, start_rate: float,
               headers: dict[str, str], step_seconds: float = 5.0, factor: float = 1.25, max_steps: int = 20,
               connections: int = 32, log=print) -> tuple[list[dict], float | None]:
    """Raise the rate step by step until p50 is twice the unloaded p50; returns the steps and that rate."""
    steps = []
    rate = start_rate
    for _ in range(max_steps):
        result = await fixed_rate(host, port, paths, rate=rate, seconds=step_seconds, headers=headers,
                                  connections=connections)
        summary = result.summary()
        steps.append(summary)
        log(f"    {rate:7.1f}/s offered: p50 {summary['p50_ms']:7.2f} ms, p95 {summary['p95_ms']:8.2f} ms, "
            f"{summary['throughput']:.1f}/s done")
        if result.errors > result.count * 0.05 or summary["p50_ms"] >= 2 * unloaded_p50:
            return steps, rate
        rate *= factor
    return steps, None
