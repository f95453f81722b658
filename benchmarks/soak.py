"""The soak benchmark: a producer at a fixed rate and a worker process for many minutes,
through phases that hold PostgreSQL's xmin horizon back, on a cluster with autovacuum at its
defaults; sampled every 5 s. Run as ``python -m benchmarks --soak``:

python -m benchmarks --soak                      # default phases (about 15 minutes), 800/s
python -m benchmarks --soak --rate 3000
python -m benchmarks --soak --phase-s clean=600 idle_in_tx=600
python -m benchmarks --soak --hours 1            # one long clean phase; sizes at 10 min vs end
python -m benchmarks --soak --smoke              # about a minute at 200/s (what the tests run)
python -m benchmarks --soak --worker-arg=--lease-s=60   # extra arguments for the worker
python -m benchmarks --soak --render DIR        # no run: judge DIR/soak.json again

Phases (seconds; ``--phase-s NAME=S`` changes one): clean 180, idle_in_tx 180 (a connection
idle in a transaction that has an xid), after_idle_in_tx 90, readers 180 (four overlapping
REPEATABLE READ transactions, each opened with a read of background_jobs and kept open for half
the phase, started a quarter of the phase apart), after_readers 90, burst 30 (10x the rate),
after_burst 120. Then the producer stops, the worker drains, and every offered job is checked
``completed`` through the ``background_jobs`` view.

Outputs in ``--out`` (default benchmarks/results/soak-<UTC date-time>/): report.md (a table per
phase with its goals, pass or fail), soak.json (config, machine, samples, summaries), and with
matplotlib installed throughput.png, p99.png, dead_tuples.png, sizes.png.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from google.protobuf.wrappers_pb2 import Int64Value

from . import soak_report
from .harness import ROOT, WorkerProcess, machine_facts
from .soak_app import SCHEMA, app, soak
from .soak_stats import Histogram, SeqBitmap

SAMPLE_S = 5.0
WINDOW_SAMPLES = 6  # rolling window: the last six 5 s buckets, 30 s
TICK_S = 0.01  # the producer's period
BURST_FACTOR = 10
SIZES_EARLY_S = 600  # the 1-hour goal compares sizes at the end with those at 10 min

# kind: clean | held (the horizon is held) | recovery (after a held phase) | burst | drain
# Jobs enqueued at once before the phases, whose drain rate the burst's is judged against.
FRESH_DRAIN_JOBS = 50_000
FRESH_DRAIN_SMOKE = 2_000
DEFAULT_PHASES: list[tuple[str, float, str]] = [
    ("clean", 180, "clean"),
    ("idle_in_tx", 180, "held"),
    ("after_idle_in_tx", 90, "recovery"),
    ("readers", 180, "held"),
    ("after_readers", 90, "recovery"),
    ("burst", 30, "burst"),
    ("after_burst", 120, "recovery"),
]
SMOKE_PHASE_S = 8.0
SMOKE_RATE = 200.0

# postgresql.conf additions of the soak's own cluster: nothing about autovacuum (its defaults
# are what is measured).
CLUSTER_CONFIG = """
# aqueue soak benchmark: autovacuum at PostgreSQL's defaults (nothing set here).
max_connections = 200
# A throwaway cluster that lives for one run: fsync would measure the disk, not the queue.
fsync = off
# Every autovacuum run in the server log (pgdata/soak.log), for reading beside the samples.
log_autovacuum_min_duration = 0
"""

SETTINGS_SQL = """
SELECT name, setting, coalesce(unit, '') FROM pg_settings
WHERE name LIKE 'autovacuum%' OR name IN ('fsync', 'synchronous_commit', 'shared_buffers',
    'max_connections', 'log_autovacuum_min_duration', 'vacuum_cost_limit', 'vacuum_cost_delay',
    'maintenance_work_mem')
ORDER BY name
"""

# Every relation of the schema, found by namespace (never by name: the tables behind the
# background_jobs view may change), with its TOAST table and TOAST index.
RELATIONS_SQL = """
WITH rels AS (
    SELECT c.oid, c.relname::text AS name,
        CASE c.relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind
    FROM pg_class c
    WHERE c.relnamespace = $1::text::regnamespace AND c.relkind IN ('r', 'i', 'm')
    UNION ALL
    SELECT c.reltoastrelid, c.relname || ' (toast)', 'toast'
    FROM pg_class c
    WHERE c.relnamespace = $1::text::regnamespace AND c.reltoastrelid <> 0
    UNION ALL
    SELECT i.indexrelid, c.relname || ' (toast index)', 'toast index'
    FROM pg_class c JOIN pg_index i ON i.indrelid = c.reltoastrelid
    WHERE c.relnamespace = $1::text::regnamespace AND c.reltoastrelid <> 0
)
SELECT r.name, r.kind, pg_relation_size(r.oid) AS bytes, s.n_live_tup, s.n_dead_tup,
    s.autovacuum_count, s.autoanalyze_count
FROM rels r LEFT JOIN pg_stat_all_tables s ON s.relid = r.oid
ORDER BY r.name
"""

# The oldest transaction anyone holds open: an xid taken, or a snapshot.
XMIN_SQL = """
SELECT coalesce(max(greatest(age(backend_xid), age(backend_xmin))), 0),
    count(*) FILTER (WHERE backend_type = 'autovacuum worker')
FROM pg_stat_activity WHERE pid <> pg_backend_pid()
"""


@dataclass
class Phase:
    name: str
    seconds: float
    kind: str
    rate: float
    start_s: float = float("nan")
    end_s: float = float("nan")
    offered_start: int = 0
    offered_end: int = 0
    completed_start: int = 0
    completed_end: int = 0
    notes: list[str] = field(default_factory=list)


class Reports(asyncio.DatagramProtocol):
    """The handlers' start reports: a bitmap of the sequence numbers seen, and the pickup
    latency of each in the current 5 s histogram. Cheap per datagram: no per-job dict."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches
        self.seen = SeqBitmap()
        self.received = 0
        self.histogram = Histogram()
        self.malformed = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            seq_text, at_text = data.split()
            seq, at = int(seq_text), float(at_text)
        except ValueError:
            self.malformed += 1
            return
        self.received += 1
        self.seen.add(seq)
        committed = self.batches.committed_at(seq)
        # Started before its enqueue call returned: a negative latency, counted as 0.
        ms = 0.0 if math.isnan(committed) else max(0.0, (at - committed) * 1000)
        self.histogram.record(ms)

    def take(self) -> Histogram:
        """The histogram so far; a new one from now on."""
        taken, self.histogram = self.histogram, Histogram()
        return taken


class Batches:
    """Each enqueue call's first sequence number and the wall-clock moment it returned (NaN
    while it has not): two flat arrays, about 100 entries a second."""

    def __init__(self) -> None:
        self.firsts = array("q")
        self.returned = array("d")

    def begin(self, first: int) -> int:
        self.firsts.append(first)
        self.returned.append(math.nan)
        return len(self.firsts) - 1

    def end(self, index: int, at: float) -> None:
        self.returned[index] = at

    def committed_at(self, seq: int) -> float:
        index = bisect.bisect_right(self.firsts, seq) - 1
        return self.returned[index] if index >= 0 else math.nan


class SoakWorker(WorkerProcess):
    """``python -m aqueue worker --app benchmarks.soak_app:app``."""

    def __init__(self, dsn: str, concurrency: int, udp_port: int, extra: list[str]) -> None:
        super().__init__(dsn, concurrency, udp_port, *extra)
        self.args[self.args.index("benchmarks.app:app")] = "benchmarks.soak_app:app"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Soak:
    def __init__(self, dsn: str, phases: list[Phase], args: argparse.Namespace) -> None:
        self.dsn = dsn
        self.phases = phases
        self.args = args
        self.batches = Batches()
        self.reports = Reports(self.batches)
        self.windows: deque[Histogram] = deque(maxlen=WINDOW_SAMPLES)
        self.offered = 0
        self.rate = 0.0
        self.producing = True
        self.phase = "start"
        self.t0 = 0.0
        self.samples: list[dict[str, Any]] = []
        self.reads_ms: list[float] = []
        self.sampled = anyio.Event()  # set at each sample, then replaced

    def now_s(self) -> float:
        return time.perf_counter() - self.t0

    # --- the producer -------------------------------------------------------------------
    async def produce(self) -> None:
        """Every 10 ms, enqueue in ONE call what is owed on wall-clock time: a slow call means
        a bigger next batch, never fewer jobs."""
        owed = 0.0
        produced = 0  # the fresh drains' jobs are offered too, but not owed
        last = time.perf_counter()
        tick = last
        while self.producing:
            now = time.perf_counter()
            owed += self.rate * (now - last)
            last = now
            due = math.floor(owed) - produced
            if due > 0:
                first = self.offered
                index = self.batches.begin(first)
                produced += due
                self.offered += due  # before the call: a report may arrive before it returns
                payloads = [Int64Value(value=seq) for seq in range(first, first + due)]
                await app.enqueue_many(soak, payloads)
                self.batches.end(index, time.time())
            tick = max(tick + TICK_S, time.perf_counter())
            await anyio.sleep(max(0.0, tick - time.perf_counter()))

    async def fresh_drain(self, *, beside_producer: bool = False) -> dict[str, float]:
        """Before the phases, on the fresh tables: ``FRESH_DRAIN_JOBS`` of the soak's own job
        enqueued at once, and how fast this worker completes jobs until they are done (first
        commit to last report). Alone, or ``beside_producer`` (running at the base rate), as
        the burst's backlog drains: the rate it is judged against. They count as offered."""
        n = FRESH_DRAIN_SMOKE if self.args.smoke else FRESH_DRAIN_JOBS
        received = self.reports.received
        first = self.offered
        self.offered += n
        began = math.nan
        for start in range(first, first + n, 10_000):
            count = min(10_000, first + n - start)
            index = self.batches.begin(start)
            await app.enqueue_many(soak, [Int64Value(value=i) for i in range(start, start + count)])
            self.batches.end(index, time.time())
            if math.isnan(began):
                began = time.perf_counter()  # the first jobs are committed: the drain begins
        last = self.offered  # the producer's jobs offered before the last of these are due too
        with anyio.fail_after(max(60.0, n / 500)):
            # Polled: the report protocol only counts; 10 ms is the measurement's resolution.
            while self.reports.received < last:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        elapsed = time.perf_counter() - began
        completed = self.reports.received - received
        with anyio.fail_after(60):
            # The producer's jobs that queued behind them are done too (within a second's).
            while self.reports.received < self.offered - self.rate:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        self.reports.take()  # its latencies are not the phases'
        what = "fresh drain beside the producer" if beside_producer else "fresh drain"
        print(f"  {what}: {completed / elapsed:,.0f} jobs/s", file=sys.stderr, flush=True)
        return {
            "jobs": n,
            "completed": completed,
            "seconds": elapsed,
            "jobs_per_s": completed / elapsed,
        }

    # --- what holds the horizon -----------------------------------------------------------
    async def hold_idle_in_transaction(self) -> None:
        """BEGIN, take an xid, and stay idle in the transaction until cancelled."""
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("BEGIN")
            xid = await conn.fetchval("SELECT txid_current()")
            print(f"  holder: idle in transaction, xid {xid}", file=sys.stderr, flush=True)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()

    async def reader(self, delay_s: float, hold_s: float) -> None:
        """After ``delay_s``, a REPEATABLE READ transaction whose first statement reads the
        view (its snapshot is taken there), then kept open ``hold_s``."""
        await anyio.sleep(delay_s)
        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction(isolation="repeatable_read"):
                start = time.perf_counter()
                await conn.fetch(
                    f"SELECT state::text, count(*) FROM {SCHEMA}.background_jobs GROUP BY state"
                )
                self.reads_ms.append((time.perf_counter() - start) * 1000)
                await anyio.sleep(hold_s)
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()

    async def readers(self, seconds: float) -> None:
        """Four readers a quarter of the phase apart, each open half of it: from the first
        one on, one or two are always open, and the horizon moves in steps."""
        async with anyio.create_task_group() as tg:
            for k in range(4):
                tg.start_soon(self.reader, k * seconds / 4, seconds / 2)
            await anyio.sleep_forever()

    # --- samples ------------------------------------------------------------------------
    async def sample(self, pg: asyncpg.Connection, t: float, last: dict[str, Any]) -> None:
        self.windows.append(self.reports.take())
        rolling = Histogram.merged(self.windows)
        interval = self.windows[-1]
        rows = await pg.fetch(RELATIONS_SQL, SCHEMA)
        horizon = await pg.fetchrow(XMIN_SQL)
        assert horizon is not None  # an aggregate: always one row
        xmin_age, autovacuum_workers = horizon
        elapsed = t - last["t"]
        relations = {
            r["name"]: {
                "kind": r["kind"],
                "bytes": r["bytes"],
                "n_live_tup": r["n_live_tup"],
                "n_dead_tup": r["n_dead_tup"],
                "autovacuum_count": r["autovacuum_count"],
                "autoanalyze_count": r["autoanalyze_count"],
            }
            for r in rows
        }
        received = self.reports.received
        sample = {
            "t": round(t, 3),
            "phase": self.phase,
            "offered": self.offered,
            "completed": received,
            "offered_per_s": (self.offered - last["offered"]) / elapsed,
            "completed_per_s": (received - last["completed"]) / elapsed,
            "depth": self.offered - received,
            "window_jobs": rolling.count,
            "p50_ms": _finite(rolling.percentile(50)),
            "p90_ms": _finite(rolling.percentile(90)),
            "p99_ms": _finite(rolling.percentile(99)),
            "max_ms": _finite(rolling.max_ms) if rolling.count else None,
            "interval_p99_ms": _finite(interval.percentile(99)),
            "xmin_age": int(xmin_age or 0),
            "autovacuum_workers": int(autovacuum_workers),
            "dead_total": sum(r["n_dead_tup"] or 0 for r in relations.values()),
            "bytes_total": sum(r["bytes"] or 0 for r in relations.values()),
            "autovacuum_total": sum(r["autovacuum_count"] or 0 for r in relations.values()),
            "autoanalyze_total": sum(r["autoanalyze_count"] or 0 for r in relations.values()),
            "loadavg_1m": os.getloadavg()[0],
            "relations": relations,
        }
        self.samples.append(sample)
        self.sampled.set()
        self.sampled = anyio.Event()
        last.update(t=t, offered=self.offered, completed=received)

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        print(
            f"  t={t:6.0f}s {self.phase:<17} offered {sample['offered_per_s']:7.0f}/s "
            f"done {sample['completed_per_s']:7.0f}/s depth {sample['depth']:7d} "
            f"p50 {ms(sample['p50_ms'])} p99 {ms(sample['p99_ms'])} ms "
            f"dead {sample['dead_total']:8d} size {sample['bytes_total'] / 2**20:7.1f} MiB "
            f"autovacuum {sample['autovacuum_total']} xmin age {sample['xmin_age']}",
            file=sys.stderr,
            flush=True,
        )

    async def sampler(self, pg: asyncpg.Connection) -> None:
        """A sample every 5 s on an absolute schedule from the start."""
        last: dict[str, Any] = {
            "t": 0.0,
            "offered": self.offered,
            "completed": self.reports.received,
        }
        k = 1
        while True:
            await anyio.sleep(max(0.0, k * SAMPLE_S - self.now_s()))
            await self.sample(pg, self.now_s(), last)
            k += 1

    # --- the run --------------------------------------------------------------------------
    async def run_phases(self) -> None:
        for phase in self.phases:
            phase.start_s = self.now_s()
            phase.offered_start, phase.completed_start = self.offered, self.reports.received
            self.phase, self.rate = phase.name, phase.rate
            end = phase.start_s + phase.seconds
            async with anyio.create_task_group() as tg:
                if phase.name.startswith("idle_in_tx"):
                    tg.start_soon(self.hold_idle_in_transaction)
                elif phase.name.startswith("readers"):
                    tg.start_soon(self.readers, phase.seconds)
                await anyio.sleep(max(0.0, end - self.now_s()))
                tg.cancel_scope.cancel()
            phase.end_s = self.now_s()
            phase.offered_end, phase.completed_end = self.offered, self.reports.received

    async def unfinished(self, pg: asyncpg.Connection) -> bool:
        table = f"{SCHEMA}.background_jobs"
        return bool(
            await pg.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {table} WHERE state IN ('pending', 'error'))"
                f" OR EXISTS (SELECT 1 FROM {table} WHERE state = 'running')"
            )
        )

    async def drain(self, pg: asyncpg.Connection) -> tuple[float, bool]:
        """Wait (at most --drain-timeout-s) until every offered job has reported its start and
        none is queued or running in the view; return the seconds it took, and whether it
        finished (if not, the verification says what is left)."""
        start = self.now_s()
        self.phase = "drain"
        with anyio.move_on_after(self.args.drain_timeout_s):
            while True:  # the database is polled: nothing tells when it is done
                if self.reports.received >= self.offered and not await self.unfinished(pg):
                    return self.now_s() - start, True
                await anyio.sleep(0.1)
        print("  drain: timed out", file=sys.stderr, flush=True)
        return self.now_s() - start, False

    async def verify(self, pg: asyncpg.Connection) -> dict[str, Any]:
        """Every sequence number reported (each job's handler started), and no job in the
        view in any state but ``completed``; completed jobs may be gone already, removed by
        retention (``--worker-arg=--retention-s=...``), and are counted as such."""
        rows = await pg.fetch(
            f"SELECT state::text, count(*) FROM {SCHEMA}.background_jobs GROUP BY state"
        )
        states = {row[0]: row[1] for row in rows}
        missing, first_missing = self.reports.seen.missing(self.offered)
        in_view = sum(states.values())
        ok = states.get("completed", 0) == in_view and in_view <= self.offered and missing == 0
        return {
            "offered": self.offered,
            "states": states,
            "removed_by_retention": self.offered - in_view,
            "reports_received": self.reports.received,
            "seqs_missing": missing,
            "first_missing": first_missing,
            "duplicate_reports": self.reports.seen.duplicates,
            "malformed_reports": self.reports.malformed,
            "every_job_completed": ok,
        }

    @contextlib.asynccontextmanager
    async def udp(self) -> AsyncIterator[int]:
        """The report socket, with a big receive buffer: a burst must not drop datagrams."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, 32 * 2**20)
                    break
        sock.bind(("127.0.0.1", 0))
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self.reports, sock=sock)
        try:
            yield sock.getsockname()[1]
        finally:
            transport.close()

    async def run(self) -> dict[str, Any]:
        pg = await asyncpg.connect(self.dsn)
        try:
            facts = await machine_facts(pg)
            facts["loadavg_start"] = os.getloadavg()
            settings = {
                row[0]: f"{row[1]}{row[2]}" if row[2] else row[1]
                for row in await pg.fetch(SETTINGS_SQL)
            }
            await pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            app._override_dsn(self.dsn)
            await app.migrate()
            await pg.execute("CHECKPOINT")
            async with self.udp() as port:
                worker = SoakWorker(self.dsn, self.args.concurrency, port, self.args.worker_arg)
                async with worker.running(), anyio.create_task_group() as tg:
                    # A second connection: the sampler's queries must not wait for the drain's.
                    sampler_pg = await asyncpg.connect(self.dsn)
                    try:
                        fresh = await self.fresh_drain()
                        # Then again beside the producer at the base rate, as after the burst:
                        # the producer takes its share of the same cores.
                        self.rate = self.args.rate
                        tg.start_soon(self.produce)
                        fresh_beside = await self.fresh_drain(beside_producer=True)
                        self.t0 = time.perf_counter()
                        tg.start_soon(self.sampler, sampler_pg)
                        self.rate = self.phases[0].rate
                        await self.run_phases()
                        self.producing = False
                        drain_s, drained = await self.drain(pg)
                        self.sampled = anyio.Event()
                        await self.sampled.wait()  # one sample after the drain: final sizes
                        tg.cancel_scope.cancel()
                    finally:
                        with anyio.CancelScope(shield=True):
                            await sampler_pg.close()
                    rss = worker.peak_rss_mib()
            if self.args.out is not None:
                self.args.out.mkdir(parents=True, exist_ok=True)
                (self.args.out / "worker.log").write_text("\n".join(worker.output) + "\n")
            verification = await self.verify(pg)
            facts["loadavg_end"] = os.getloadavg()
        finally:
            await pg.close()
            await app.close()
        return {
            "config": {
                "rate": self.args.rate,
                "concurrency": self.args.concurrency,
                "handler": "await anyio.sleep(0.001)",
                "sample_s": SAMPLE_S,
                "window_s": SAMPLE_S * WINDOW_SAMPLES,
                "burst_factor": BURST_FACTOR,
                "worker_args": self.args.worker_arg,
                "server": "own throwaway cluster" if self.args.dsn is None else "--dsn",
                "cluster_config": CLUSTER_CONFIG if self.args.dsn is None else None,
                "smoke": self.args.smoke,
                "hours": self.args.hours,
            },
            "machine": facts,
            "settings": settings,
            "phases": [asdict(p) for p in self.phases],
            "fresh_drain": fresh,
            "fresh_drain_beside_producer": fresh_beside,
            "drain_s": drain_s,
            "drained": drained,
            "worker_peak_rss_mib": rss,
            "reads_ms": self.reads_ms,
            "verification": verification,
            "samples": self.samples,
        }


def plan(args: argparse.Namespace) -> list[Phase]:
    """The phases: the default plan (or smoke lengths, or one long clean phase for
    --hours), with --phase-s overrides."""
    if args.hours is not None:
        phases = [Phase("clean", args.hours * 3600, "clean", args.rate)]
    else:
        phases = [
            Phase(
                name,
                SMOKE_PHASE_S if args.smoke else seconds,
                kind,
                args.rate * (BURST_FACTOR if kind == "burst" else 1),
            )
            for name, seconds, kind in DEFAULT_PHASES
        ]
    by_name = {p.name: p for p in phases}
    for override in args.phase_s:
        name, _, seconds = override.partition("=")
        if name not in by_name or not seconds:
            raise SystemExit(f"--phase-s {override}: expected NAME=S, NAME one of {list(by_name)}")
        by_name[name].seconds = float(seconds)
    return [p for p in phases if p.seconds > 0]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks --soak",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--dsn", help="an existing server instead of a throwaway cluster")
    parser.add_argument("--rate", type=float, help="jobs/s offered (default 800; smoke 200)")
    parser.add_argument("--concurrency", type=int, default=32, help="the worker's (default 32)")
    parser.add_argument("--phase-s", nargs="+", default=[], metavar="NAME=S")
    parser.add_argument("--hours", type=float, help="one clean phase of H hours instead")
    parser.add_argument("--smoke", action="store_true", help="each phase 8 s, 200/s")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra argument for `python -m aqueue worker` (repeatable), e.g. "
        "--worker-arg=--retention-s=3600 once the worker has that option",
    )
    parser.add_argument(
        "--drain-timeout-s",
        type=float,
        default=600.0,
        help="longest wait for the backlog at the end (default 600); the report says what is left",
    )
    parser.add_argument("--out", type=Path, help="default benchmarks/results/soak-<UTC time>/")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="DIR",
        help="no run: judge DIR/soak.json again and rewrite its report.md and plots",
    )
    args = parser.parse_args(argv)
    if args.rate is None:
        args.rate = SMOKE_RATE if args.smoke else 800.0
    if args.out is None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        args.out = ROOT / "benchmarks" / "results" / f"soak-{stamp}"
    return args


def write_outputs(result: dict[str, Any], out: Path) -> bool:
    """Judge the run, write soak.json, the plots and report.md in ``out`` (and print the
    report); whether every offered job completed."""
    result["summary"] = soak_report.summarize(result)
    with open(out / "soak.json", "w") as f:
        json.dump(result, f, indent=1)
    plots = soak_report.plots(result, out)
    markdown = soak_report.markdown(result, plots)
    (out / "report.md").write_text(markdown)
    print("\n" + markdown)
    return bool(result["verification"]["every_job_completed"])


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.render is not None:
        return (
            0
            if write_outputs(json.loads((args.render / "soak.json").read_text()), args.render)
            else 1
        )
    phases = plan(args)
    total = sum(p.seconds for p in phases)
    print(
        f"soak: {', '.join(f'{p.name} {p.seconds:g} s' for p in phases)} ({total / 60:.1f} min)"
        f" at {args.rate:g}/s, concurrency {args.concurrency}; out: {args.out}",
        file=sys.stderr,
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    # SIGTERM as Ctrl-C: either way the cluster is destroyed on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.ExitStack() as stack:
        dsn = args.dsn
        if dsn is None:
            dsn = stack.enter_context(throwaway_cluster())
        soak_run = Soak(dsn, phases, args)
        result = anyio.run(soak_run.run, backend="asyncio", backend_options={"use_uvloop": True})
    return 0 if write_outputs(result, args.out) else 1


@contextlib.contextmanager
def throwaway_cluster() -> Any:
    """A cluster from the embedded binaries in a temporary folder; destroyed on the way out,
    on failure and Ctrl-C too."""
    from .cluster import Cluster

    folder = Path(tempfile.mkdtemp(prefix="aqueue-soak-"))
    folder.chmod(0o755)  # the server runs as an unprivileged user when we are root
    cluster: Cluster | None = None
    try:
        cluster = Cluster(folder, CLUSTER_CONFIG, log_name="soak.log")
        yield cluster.dsn()
    finally:
        if cluster is not None:
            try:
                cluster.destroy()
            except Exception as exc:  # still remove the folder
                print(f"soak: stopping the cluster: {exc!r}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
