"""Cost curves: claim, next-due lookup, rescue and pickup time against (1) jobs processed
while a transaction holds the xmin horizon (vacuum can remove nothing), and (2) due rows the
measuring worker must not take (another queue, a job type no worker has). Each should be
flat; ``python -m benchmarks --curves`` draws them.

Figures come from a throwaway cluster built from the embedded binaries, autovacuum at
PostgreSQL's defaults. How each operation runs is :mod:`benchmarks.curves_ops`' business;
this module reads job state only through the ``background_jobs`` view and the public App
API, and relations by schema, so it does not depend on the table layout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from google.protobuf.empty_pb2 import Empty

import aqueue

from . import curves_ops as ops
from . import curves_report

# The throwaway cluster (shared with the fault suite and the soak).
from .cluster import Cluster
from .curves_report import OPERATIONS
from .harness import ROOT, machine_facts

# The throwaway cluster's additions to postgresql.conf: autovacuum stays at its defaults.
# fsync off: the disk is not what is measured.
CONFIG = """
fsync = off
"""

log = logging.getLogger("benchmarks.curves")

SERVED_TYPE = "served"  # the measuring worker's job type ...
SERVED_QUEUE = "mine"  # ... and its queue
FOREIGN_QUEUE = "other"  # due jobs of the served type in a queue it does not serve
FOREIGN_TYPE = "nobody_serves"  # due jobs in its queue of a type no worker has
ENQUEUE_CHUNK = 10_000
PROCESS_BATCH = 1_000  # jobs per claim while processing a step (each claim completes the last)
PICKUP_CONCURRENCY = 16
DELAY_S = 3600.0  # the one job the next-due lookup finds


@dataclass(frozen=True)
class Plan:
    held_steps: list[int]  # jobs processed at each checkpoint
    foreign_steps: list[int]  # foreign due rows at each checkpoint
    repeat: int  # timings of claim, next-due and rescue per checkpoint (median taken)
    pickup_repeat: int


def make_plan(smoke: bool, max_processed: int | None) -> Plan:
    if smoke:
        top, points, foreign = max_processed or 4_000, 2, [0, 1_000, 5_000]
        return Plan([top * i // points for i in range(points + 1)], foreign, 5, 3)
    top, points = max_processed or 500_000, 20
    foreign = [0, 10_000, 100_000, 300_000, 1_000_000]
    return Plan([top * i // points for i in range(points + 1)], foreign, 20, 10)


class Subject:
    """An App on its own schema with the measuring worker's job type: its handler notes
    when it starts (the pickup latency's end)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.schema = schema
        self.app = aqueue.App(dsn, schema=schema)
        self.served = ops.Served(f"curves-{schema}", (SERVED_TYPE,), (SERVED_QUEUE,))
        self.starts: list[float] = []
        self._started = anyio.Event()

        async def served(payload: Empty) -> None:
            self.starts.append(time.perf_counter())
            self._started.set()

        self.job = self.app.job(payload=Empty, name=SERVED_TYPE, queue=SERVED_QUEUE)(served)

    @property
    def view(self) -> str:
        return f"{self.schema}.background_jobs"

    async def enqueue_many(self, n: int, *, job: Any = None, queue: str | None = None) -> None:
        """``n`` due jobs (of the served type unless ``job`` names another), in chunks."""
        left = n
        while left > 0:
            chunk = min(left, ENQUEUE_CHUNK)
            await self.app.enqueue_many(job or self.job, [Empty()] * chunk, queue=queue)
            left -= chunk

    async def pickup(self, repeat: int) -> list[float]:
        """Enqueue call to handler start (ms) on an idle in-process worker, one job at a
        time, each finished before the next. Timed from the call, not its return: the worker
        may start the job (woken by the commit's NOTIFY) before this task resumes."""
        out = []
        async with self.app.worker(PICKUP_CONCURRENCY, queues=[SERVED_QUEUE]) as worker:
            await worker.wait_ready()
            for i in range(repeat):
                self._started = anyio.Event()
                called = time.perf_counter()
                await self.app.enqueue(self.job, Empty())
                with anyio.fail_after(120):
                    await self._started.wait()
                    await worker.wait_processed(i + 1)
                out.append((self.starts[-1] - called) * 1000)
        return out


async def _facts(pg: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """Job counts by state (the view) and the schema's relations: size, dead tuples,
    autovacuum runs (the statistics may lag by a second)."""
    states = await pg.fetch(
        f"SELECT state::text, count(*) FROM {schema}.background_jobs GROUP BY 1"
    )
    size = await pg.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(oid)), 0) FROM pg_class"
        " WHERE relnamespace = $1::regnamespace AND relkind IN ('r', 'p', 'm')",
        schema,
    )
    stats = await pg.fetchrow(
        "SELECT coalesce(sum(n_live_tup), 0) AS live, coalesce(sum(n_dead_tup), 0) AS dead,"
        " coalesce(sum(autovacuum_count), 0) AS autovacuums,"
        " coalesce(sum(autoanalyze_count), 0) AS autoanalyzes"
        " FROM pg_stat_user_tables WHERE schemaname = $1",
        schema,
    )
    assert stats is not None  # an aggregate: always one row
    return {
        "jobs": {row[0]: row[1] for row in states},
        "relations_mib": round(int(size) / 2**20, 1),
        **{key: int(stats[key]) for key in ("live", "dead", "autovacuums", "autoanalyzes")},
    }


async def _due_served(pg: asyncpg.Connection, schema: str) -> int:
    return int(
        await pg.fetchval(
            f"SELECT count(*) FROM {schema}.background_jobs WHERE state IN ('pending', 'error')"
            " AND next_attempt_after <= now() AND job_type = $1 AND queue = $2",
            SERVED_TYPE,
            SERVED_QUEUE,
        )
    )


async def _times(repeat: int, once: Callable[[], Awaitable[float]]) -> list[float]:
    return [await once() for _ in range(repeat)]


async def measure_point(subject: Subject, pg: asyncpg.Connection, plan: Plan) -> dict[str, Any]:
    """The four timings and three buffer counts, starting with no job of the served type
    due (each measurement adds and removes its own)."""
    due = await _due_served(pg, subject.schema)
    if due:
        raise AssertionError(f"{due} served jobs due before measuring: expected none")
    app, served = subject.app, subject.served
    ms: dict[str, list[float]] = {}
    buffers: dict[str, int] = {}
    ms["rescue"] = await _times(plan.repeat, lambda: ops.rescue_once(app, served))
    buffers["rescue"] = await ops.explain_buffers(app, pg, "rescue", served)
    later = await app.enqueue(subject.job, Empty(), delay=DELAY_S)
    ms["next_due"] = await _times(plan.repeat, lambda: ops.next_due_once(app, served))
    buffers["next_due"] = await ops.explain_buffers(app, pg, "next_due", served)
    await app.cancel(later)

    async def claim_one() -> float:
        await app.enqueue(subject.job, Empty())
        return await ops.claim_once(app, served)

    ms["claim"] = await _times(plan.repeat, claim_one)
    one = await app.enqueue(subject.job, Empty())
    buffers["claim"] = await ops.explain_buffers(app, pg, "claim", served)
    await app.cancel(one)
    ms["pickup"] = await subject.pickup(plan.pickup_repeat)
    return {
        "ms": {op: summary(values) for op, values in ms.items()},
        "buffers": buffers,
        "raw_ms": {op: [round(v, 3) for v in values] for op, values in ms.items()},
    }


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "min": min(values), "max": max(values)}


async def held_horizon(dsn: str, pg: asyncpg.Connection, plan: Plan) -> list[dict[str, Any]]:
    """Process jobs in steps while an idle transaction with an xid holds the horizon."""
    subject = Subject(dsn, "curves_horizon")
    await pg.execute(f"DROP SCHEMA IF EXISTS {subject.schema} CASCADE")
    await subject.app.migrate()
    holder = await asyncpg.connect(dsn)
    points = []
    try:
        await holder.execute("BEGIN")  # left open and idle until the end
        xid = await holder.fetchval("SELECT txid_current()")
        processed = 0
        for target in plan.held_steps:
            start = time.perf_counter()
            await subject.enqueue_many(target - processed)
            done = await ops.process_due(subject.app, subject.served, PROCESS_BATCH)
            if done != target - processed:
                raise AssertionError(f"processed {done} of {target - processed} jobs")
            took = time.perf_counter() - start
            processed = target
            held = await pg.fetchval(
                "SELECT backend_xid::text::bigint FROM pg_stat_activity WHERE pid = $1",
                holder.get_server_pid(),
            )
            if held != xid % 2**32:
                raise AssertionError(f"the horizon is no longer held (xid {xid}, now {held})")
            point: dict[str, Any] = {"processed": target, "step_s": round(took, 2)}
            point.update(await measure_point(subject, pg, plan))
            point["facts"] = await _facts(pg, subject.schema)
            points.append(point)
            _progress("held horizon", target, point)
    finally:
        await holder.close()
        await subject.app.close()
    await pg.execute(f"DROP SCHEMA {subject.schema} CASCADE")
    return points


async def foreign_rows(
    dsn: str, pg: asyncpg.Connection, plan: Plan, kind: str
) -> list[dict[str, Any]]:
    """Due rows the worker must skip, ``kind`` ``queue`` (the served type in another queue)
    or ``job_type`` (a type nobody serves, in the served queue), added up to each step."""
    subject = Subject(dsn, f"curves_foreign_{kind}")
    await pg.execute(f"DROP SCHEMA IF EXISTS {subject.schema} CASCADE")
    await subject.app.migrate()
    points = []
    try:
        inserted = 0
        for target in plan.foreign_steps:
            if kind == "queue":
                await subject.enqueue_many(target - inserted, queue=FOREIGN_QUEUE)
            else:
                await subject.enqueue_many(target - inserted, job=FOREIGN_TYPE)
            inserted = target
            await _analyze(pg, subject.schema)
            point: dict[str, Any] = {"foreign": target}
            point.update(await measure_point(subject, pg, plan))
            point["facts"] = await _facts(pg, subject.schema)
            points.append(point)
            _progress(f"foreign {kind}", target, point)
    finally:
        await subject.app.close()
    await pg.execute(f"DROP SCHEMA {subject.schema} CASCADE")
    return points


async def _analyze(pg: asyncpg.Connection, schema: str) -> None:
    """ANALYZE every table of ``schema``, whatever they are."""
    tables = await pg.fetch(
        "SELECT oid::regclass::text FROM pg_class"
        " WHERE relnamespace = $1::regnamespace AND relkind IN ('r', 'p')",
        schema,
    )
    for (table,) in tables:
        await pg.execute(f"ANALYZE {table}")


def _progress(curve: str, n: int, point: dict[str, Any]) -> None:
    ms = ", ".join(f"{op} {point['ms'][op]['p50']:.2f}" for op in OPERATIONS)
    print(f"  {curve} {n:,}: p50 ms {ms}; buffers {point['buffers']}", file=sys.stderr, flush=True)


async def run(dsn: str, plan: Plan) -> dict[str, Any]:
    pg = await asyncpg.connect(dsn)
    try:
        facts = await machine_facts(pg)
        facts["loadavg_start"] = os.getloadavg()
        names = ("autovacuum", "autovacuum_naptime", "autovacuum_vacuum_scale_factor", "fsync")
        facts["settings"] = {name: await pg.fetchval(f"SHOW {name}") for name in names}
        facts["cluster_config"] = CONFIG.strip()
        out: dict[str, Any] = {"machine": facts, "plan": plan.__dict__}
        out["held_horizon"] = await held_horizon(dsn, pg, plan)
        out["foreign_rows"] = {
            kind: await foreign_rows(dsn, pg, plan, kind) for kind in ("queue", "job_type")
        }
        facts["loadavg_end"] = os.getloadavg()
        return out
    finally:
        await pg.close()


def default_out() -> Path:
    return ROOT / "benchmarks" / "results" / time.strftime("curves-%Y%m%dT%H%M%SZ", time.gmtime())


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks --curves``: start the cluster, measure, write the results."""
    plan = make_plan(args.curves_smoke, args.curves_max)
    out_dir = Path(args.curves_out) if args.curves_out else default_out()
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="aqueue-curves-"))
    folder.chmod(0o755)  # the server runs as an unprivileged user when we are root
    try:
        cluster = Cluster(folder, CONFIG, log_name="curves.log")
        try:
            result = anyio.run(
                run, cluster.dsn(), plan, backend="asyncio", backend_options={"use_uvloop": True}
            )
        finally:
            cluster.destroy()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    (out_dir / "curves.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "curves.md").write_text(curves_report.markdown(result))
    for message in curves_report.plots(result, out_dir):
        print(message, file=sys.stderr)
    print(curves_report.markdown(result))
    print(f"results in {out_dir}", file=sys.stderr)
    return 0
