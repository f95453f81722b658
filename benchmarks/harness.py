"""What every workload needs: the database, a fresh schema, worker processes, latency
reports over UDP, and facts about the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import psutil
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

import aqueue

from .app import SCHEMA, app

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Bench:
    """One database for the whole run: a control connection and the producer's App."""

    dsn: str
    pg: asyncpg.Connection
    app: aqueue.App
    table: str = f"{SCHEMA}.background_jobs"

    async def release_app(self) -> None:
        """Close the producer's App (its pool's connections go), and put a new one on the
        same database in its place: a closed App is never used again."""
        await self.app.close()
        replacement = aqueue.App(self.dsn, schema=SCHEMA)
        replacement.registry = self.app.registry  # the same job types
        self.app = replacement

    async def reset(self) -> None:
        """A fresh, empty schema (dropped and migrated again), then a checkpoint so that
        one workload's dirty pages are not written during the next."""
        await self.pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await self.app.migrate()
        await self.pg.execute("CHECKPOINT")

    async def vacuum_analyze(self) -> None:
        """VACUUM ANALYZE every table of the benchmark's schema (as autovacuum would)."""
        tables = await self.pg.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1", SCHEMA
        )
        for (name,) in tables:
            await self.pg.execute(f"VACUUM ANALYZE {SCHEMA}.{name}")

    async def unfinished(self) -> bool:
        """Whether any job is still queued or running (two partial-index probes)."""
        return bool(
            await self.pg.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {self.table} WHERE state IN ('pending', 'error'))"
                f" OR EXISTS (SELECT 1 FROM {self.table} WHERE state = 'running')"
            )
        )

    async def wait_finished(self, timeout_s: float, interval_s: float = 0.02) -> float:
        """Wait until nothing is queued or running; return ``time.perf_counter()`` then."""
        deadline = time.perf_counter() + timeout_s
        while await self.unfinished():
            if time.perf_counter() > deadline:
                raise TimeoutError(f"jobs still unfinished after {timeout_s} s")
            await anyio.sleep(interval_s)
        return time.perf_counter()

    async def aqueue_connections(self, conn: asyncpg.Connection) -> int:
        """Backends named ``aqueue`` (over TCP or a Unix socket alike): while the producer's
        pool is closed, those of the worker process."""
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aqueue'"
            )
        )

    async def counts(self) -> dict[str, int]:
        rows = await self.pg.fetch(f"SELECT state::text, count(*) FROM {self.table} GROUP BY state")
        return {row[0]: row[1] for row in rows}


@contextlib.asynccontextmanager
async def open_bench(dsn: str | None) -> AsyncIterator[Bench]:
    """The database (``dsn``, else the embedded server), with ``app`` connected to it."""
    if dsn is None:
        from aqueue._store.embedded import embedded_home, start_embedded

        dsn = await anyio.to_thread.run_sync(start_embedded, embedded_home(None))
    app._override_dsn(dsn)
    pg = await asyncpg.connect(dsn)
    bench = Bench(dsn, pg, app)
    try:
        yield bench
    finally:
        await pg.close()
        await bench.app.close()


class WorkerProcess:
    """``python -m aqueue worker --app benchmarks.app:app`` (on uvloop), its log collected."""

    def __init__(self, dsn: str, concurrency: int, udp_port: int = 0, *extra: str) -> None:
        self.args = [
            sys.executable,
            "-m",
            "aqueue",
            "worker",
            "--app",
            "benchmarks.app:app",
            "--dsn",
            dsn,
            "--concurrency",
            str(concurrency),
            *extra,
        ]
        self.env = {**os.environ, "AQUEUE_BENCH_UDP_PORT": str(udp_port)}
        self.output: list[str] = []
        self.proc: Process | None = None

    async def _read(self, stream: Any, started: anyio.Event) -> None:
        async for text in TextReceiveStream(stream, errors="replace"):
            self.output.extend(text.splitlines())
            if " started (concurrency" in text:
                started.set()
        started.set()  # exited: the caller sees its return code

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WorkerProcess]:
        """Start it, wait until it has started, and stop it (SIGTERM) on the way out."""
        started = anyio.Event()
        async with (
            await anyio.open_process(self.args, cwd=ROOT, env=self.env, stdout=None) as proc,
            anyio.create_task_group() as tg,
        ):
            self.proc = proc
            tg.start_soon(self._read, proc.stderr, started)
            try:
                with anyio.fail_after(60):
                    await started.wait()
                if proc.returncode is not None:
                    raise RuntimeError("worker exited:\n" + "\n".join(self.output[-20:]))
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGTERM)
                        with anyio.move_on_after(30):
                            await proc.wait()
                        if proc.returncode is None:
                            proc.kill()
                    await proc.wait()

    def _status(self, field_name: str) -> float:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return float("nan")
        for line in status.splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def peak_rss_mib(self) -> float:
        """The worker's peak resident memory so far (Linux: VmHWM)."""
        return self._status("VmHWM")


@dataclass
class StartTimes:
    """Handler start times reported over UDP by the ``timed`` job: ``{seq: time.time()}``."""

    port: int = 0
    started: dict[int, float] = field(default_factory=dict)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as udp:
            self.port = udp.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started()
            async for data, _ in udp:
                seq, at = data.decode().split()
                self.started[int(seq)] = float(at)
                self._changed.set()
                self._changed = anyio.Event()

    async def wait_for(self, count: int, timeout_s: float) -> None:
        with anyio.fail_after(timeout_s):
            while len(self.started) < count:
                await self._changed.wait()


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100), nearest-rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def pace(rate_per_s: float, count: int, action: Callable[[int], Awaitable[None]]) -> float:
    """Call ``action(i)`` ``count`` times at ``rate_per_s`` on an absolute schedule (a late
    call is not made up by sleeping less later, it just goes at once); return the rate
    reached."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate_per_s - time.perf_counter()
        if delay > 0:
            await anyio.sleep(delay)
        await action(i)
    return count / (time.perf_counter() - start)


async def machine_facts(pg: asyncpg.Connection) -> dict[str, Any]:
    import importlib.metadata as md

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in (await anyio.Path("/proc/cpuinfo").read_text()).splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = psutil.virtual_memory().total / 2**30
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": await pg.fetchval("SHOW server_version"),
        "versions": {
            name: version(name)
            for name in (
                "aqueue",
                "asyncpg",
                "sqlalchemy",
                "anyio",
                "uvloop",
                "protobuf",
                "pgqueuer",
                "procrastinate",
            )
        },
    }
