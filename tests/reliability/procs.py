"""Real processes for the reliability tests: app processes, workers, a throwaway PostgreSQL.

Every process is started through `tests/reliability/launch.py`, which is
`run.py` plus test-only slow-downs and clocks chosen by environment variables
(so the product carries no test hooks). Output goes to a log file, never a
pipe: a busy server would block on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
import pytest

from core.settings import ROOT
from core.testing import Client, free_port

LAUNCH = Path(__file__).with_name("launch.py")


def base_env(settings, plugin_modules: list[str] | tuple[str, ...] = (), **extra: Any) -> dict[str, str]:
    """The environment of a production-like process on the test's database (English, as tests assert it)."""
    env = {
        **os.environ,
        "COURTYARD_NO_BOOTSTRAP": "1",
        "COURTYARD_DATABASE_URL": settings["database"]["url"],
        "COURTYARD_SECURITY_SECRET_KEY": settings["security"]["secret_key"],
        "COURTYARD_STORAGE_PATH": str(settings["storage"]["path"]),
        "COURTYARD_SERVER_EMBEDDED_WORKER": "false",
        "COURTYARD_SMTP_HOST": "",
        "COURTYARD_PLUGINS_EXTRA": ",".join(plugin_modules),
        "COURTYARD_I18N_DEFAULT_LOCALE": "en",
        "COURTYARD_REALTIME_BROKER": "postgres" if settings["database"]["url"].startswith("postgres") else "memory",
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


class Proc:
    """One `serve` or `worker` process that can be killed and started again on the same port."""

    def __init__(self, name: str, command: str, env: dict[str, str], logs: Path, port: int | None = None):
        self.name = name
        self.command = command
        self.env = env
        self.port = port or (free_port() if command == "serve" else None)
        self.url = f"http://127.0.0.1:{self.port}" if self.port else ""
        self.log_path = logs / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0

    def start(self, **extra_env: Any) -> "Proc":
        args = [sys.executable, str(LAUNCH), self.command]
        if self.command == "serve":
            args += ["--port", str(self.port)]
        env = {**self.env, **{key: str(value) for key, value in extra_env.items()}}
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            self.process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    async def ready(self, timeout: float = 60) -> "Proc":
        """Wait until an app answers /login (a worker: until it logged that it started)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as probe:
            while True:
                if not self.alive():
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
                if self.command == "serve":
                    with contextlib.suppress(httpx.HTTPError):
                        if (await probe.get(self.url + "/login", timeout=2)).status_code == 200:
                            return self
                elif re.search(r"job worker \S+ started", self.output(20000).rpartition("===== start")[2]):
                    return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not get ready in time:\n{self.output()}")
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine loses power or the OOM killer strikes."""
        assert self.process is not None and self.alive(), f"{self.name} is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.process is None or not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Fleet:
    """The processes of one test, all stopped at the end whatever happens."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.procs: list[Proc] = []
        self.clients: list[Client] = []

    def client(self, url: str) -> Client:
        """A browser for one app process (the test kit's client, over real HTTP)."""
        browser = Client(base_url=url, timeout=30)
        self.clients.append(browser)
        return browser

    def add(self, name: str, command: str, env: dict[str, str], port: int | None = None) -> Proc:
        proc = Proc(name, command, env, self.logs, port)
        self.procs.append(proc)
        return proc

    async def start(self, *procs: Proc) -> None:
        for proc in procs:
            proc.start()
        await asyncio.gather(*(proc.ready() for proc in procs))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.process.terminate()
        for proc in self.procs:
            proc.stop()

    def report(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output(3000)}" for p in self.procs)


@contextlib.asynccontextmanager
async def fleet(tmp_path: Path):
    group = Fleet(tmp_path)
    try:
        yield group
    except BaseException:
        print(group.report())  # shown by pytest for a failing test
        raise
    finally:
        for browser in group.clients:
            await browser.aclose()
        group.stop()


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 60, every: float = 0.2, what: str = "") -> Any:
    """Poll `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what or check}: last value {last!r}")


def figures(name: str, **values: Any) -> None:
    """What docs/reliability.md quotes: printed (pytest -s), and appended to $COURTYARD_FIGURES if set."""
    line = f"FIGURES {name} {json.dumps(values, sort_keys=True, ensure_ascii=False)}"
    print(line)
    if os.environ.get("COURTYARD_FIGURES"):
        with open(os.environ["COURTYARD_FIGURES"], "a", encoding="utf-8") as out:
            out.write(line + "\n")


def postgres_only(db_kind: str) -> None:
    if db_kind != "postgres":
        pytest.skip("several processes writing one database at once: PostgreSQL only (SQLite has one writer)")


# A PostgreSQL server of the test's own ------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _cannot(reason: str) -> None:
    # CI has PostgreSQL installed (.ci/run starts it): there a missing piece is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class ThrowawayPostgres:
    """A PostgreSQL server in a temporary folder on a free port, which a test may stop and restart.

    Never the machine's server on 5432, which the rest of the suite uses. PostgreSQL
    refuses to run as root, so as root it runs as the `postgres` system user.
    """

    def __init__(self) -> None:
        self.bin = _pg_bin()
        if self.bin is None:
            _cannot("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                _cannot("running as root without runuser: cannot start PostgreSQL as another user")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="courtyard-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run([*self.as_user, str(self.bin / program), *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-t", "60", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self, name: str) -> str:
        import asyncpg

        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# An SMTP server that goes down, comes back, or hangs in the middle of a message ----------


class MailServer:
    """aiosmtpd on a fixed port, counting every accepted message by Message-ID.

    hold_at=n: the n-th DATA gets no answer until `release()` (then 451, not accepted):
    the sender is "in the middle of a send". down_after=n: after accepting n messages
    since it was (re)started, the server shuts down (a crash mid-batch).
    """

    def __init__(self, port: int | None = None, *, hold_at: int = 0, down_after: int = 0):
        import threading

        self.port = port or free_port()
        self.accepted: Counter = Counter()
        self.hold_at = hold_at
        self.down_after = down_after
        self.holding = threading.Event()
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.data_commands = 0
        self.down = False
        self.accepted_since_start = 0
        self.controller = None

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        self.data_commands += 1
        if self.down:
            return "421 4.3.2 Shutting down"
        if self.hold_at and self.data_commands == self.hold_at:
            self._loop = asyncio.get_running_loop()
            self._release = asyncio.Event()
            self.holding.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._release.wait(), 120)
            return "451 4.3.0 Try again later"
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.accepted[message["Message-ID"]] += 1
        self.accepted_since_start += 1
        if self.down_after and self.accepted_since_start >= self.down_after:
            import threading

            # Refuse from now on, and go away once this answer is out.
            self.down = True
            threading.Timer(0.5, self.stop).start()
        return "250 Message accepted"

    def release(self) -> None:
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def start(self) -> "MailServer":
        from aiosmtpd.controller import Controller

        self.down = False
        self.accepted_since_start = 0
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self.controller.start()
        return self

    def stop(self) -> None:
        controller, self.controller = self.controller, None
        if controller is not None:
            with contextlib.suppress(Exception):
                controller.stop()

    @property
    def running(self) -> bool:
        return self.controller is not None
