"""The claim of a job type with a fleet-wide limit while a transaction holds the vacuum
horizon: ``python -m benchmarks.limited_horizon [--max N] [--out FOLDER]``.

A limited type's claim counts the type's running attempts through jobs_running_type_idx
under the type's job_limits row lock. Every attempt of the type leaves a dead entry there
that VACUUM cannot remove while the horizon is held, and the count walks them: this measures
how much that costs as jobs of the type are processed, on a throwaway cluster with
autovacuum at PostgreSQL's defaults (the one the cost curves use), beside the claim of a
rate-limited type (whose job_limits row every claim that starts it rewrites: a longer
version chain while the horizon is held) and of an unlimited type.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from google.protobuf.empty_pb2 import Empty

import aqueue
from aqueue._runtime.cursors import Cursors
from aqueue._store.records import Limit
from aqueue._store.store import Store

from .cluster import Cluster
from .curves import CONFIG

SCHEMA = "limited_horizon"
LEASE_S = 86_400.0
LIMITS = [Limit("lim", 4, None, None)]
# A rate that never bites (1,000 per 10 ms) but is recorded by every claim that starts one.
RATED = [Limit("rated", None, 1000, 0.01)]
REPEAT = 20


class Claimer:
    """A worker's claims, with its lane cursors, as the scheduler makes them."""

    def __init__(self, store: Store, job_type: str, limits: list[Limit]) -> None:
        self.store, self.job_type, self.limits = store, job_type, limits
        self.cursors = Cursors()
        self.claim_no = 0
        self.worker_id = f"bench-{job_type}"

    def _request(self, free: int, ids: list[int], cursors: dict[int, int]) -> dict[str, Any]:
        """The arguments Store.claim and Store.claim_args share, for the next claim."""
        self.claim_no += 1
        return {
            "free": free,
            "job_types": [self.job_type],
            "queues": None,
            "worker_id": self.worker_id,
            "lease_s": LEASE_S,
            "complete_ids": ids,
            "claim_no": self.claim_no,
            "cursors": cursors,
            "limits": self.limits,
        }

    def args(self, free: int, ids: list[int], attempts: list[int]) -> tuple[Any, ...]:
        request = self._request(free, ids, self.cursors.positions())
        return self.store.claim_args(**request, complete_attempts=attempts)

    async def claim(self, free: int, ids: list[int], attempts: list[int]) -> list[Any]:
        request = self._request(free, ids, self.cursors.claim_sent())
        claim = await self.store.claim(**request, complete_attempts=attempts)
        self.cursors.claim_done(claim.cursors)
        return claim.jobs

    async def process(self) -> int:
        """Claim (4 at a time) and complete every due job of the type."""
        done, ids, attempts = 0, [], []
        while True:
            jobs = await self.claim(4, ids, attempts)
            done += len(ids)
            if not jobs:
                return done
            ids, attempts = [j.id for j in jobs], [j.attempt for j in jobs]

    async def timed_claim(self, app: aqueue.App) -> float:
        await app.enqueue(self.job_type, Empty())
        start = time.perf_counter()
        jobs = await self.claim(1, [], [])
        elapsed = (time.perf_counter() - start) * 1000
        assert len(jobs) == 1, jobs
        await self.store.complete(self.worker_id, [jobs[0].id], [jobs[0].attempt])
        return elapsed

    async def buffers(self, app: aqueue.App, pg: asyncpg.Connection) -> int:
        one = await app.enqueue(self.job_type, Empty())
        text = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + self.store._sql["claim"]
        counts = []
        for _ in range(2):  # the second: its functions are planned already
            tx = pg.transaction()
            await tx.start()
            try:
                raw = await pg.fetchval(text, *self.args(1, [], []))
            finally:
                await tx.rollback()
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
            counts.append(plan["Shared Hit Blocks"] + plan["Shared Read Blocks"])
        await app.cancel(one)
        return counts[-1]


async def run(dsn: str, steps: list[int]) -> list[dict[str, Any]]:
    pg = await asyncpg.connect(dsn)
    await pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    app = aqueue.App(dsn, schema=SCHEMA)
    await app.migrate()
    store = await app._get_store()
    limited = Claimer(store, "lim", LIMITS)
    rated = Claimer(store, "rated", RATED)
    free = Claimer(store, "free", [])
    claimers = (("limited", limited), ("rated", rated), ("unlimited", free))
    holder = await asyncpg.connect(dsn)
    await holder.execute("BEGIN")
    await holder.fetchval("SELECT txid_current()")  # held until the end
    points = []
    processed = 0
    try:
        for target in steps:
            left = target - processed
            while left > 0:
                for _, claimer in claimers:
                    await app.enqueue_many(claimer.job_type, [Empty()] * min(left, 10_000))
                left -= 10_000
            for _, claimer in claimers:
                assert await claimer.process() == target - processed
            processed = target
            point: dict[str, Any] = {"processed": target}
            for name, claimer in claimers:
                times = [await claimer.timed_claim(app) for _ in range(REPEAT)]
                point[f"{name}_ms"] = round(statistics.median(times), 3)
                point[f"{name}_buffers"] = await claimer.buffers(app, pg)
            point["dead_tuples"] = await pg.fetchval(  # int: sum() is numeric
                "SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables "
                "WHERE schemaname = $1",
                SCHEMA,
            )
            print(point, file=sys.stderr, flush=True)
            points.append(point)
    finally:
        await holder.close()
        await app.close()
        await pg.close()
    return points


def markdown(points: list[dict[str, Any]]) -> str:
    lines = [
        "| jobs of each type processed | global_concurrency claim ms | buffers | rate_limit "
        "claim ms | buffers | unlimited claim ms | buffers | dead tuples |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p['processed']:,} | {p['limited_ms']:.2f} | {p['limited_buffers']} | "
            f"{p['rated_ms']:.2f} | {p['rated_buffers']} | "
            f"{p['unlimited_ms']:.2f} | {p['unlimited_buffers']} | {p['dead_tuples']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.limited_horizon")
    parser.add_argument("--max", type=int, default=200_000, help="jobs of each type")
    parser.add_argument("--out", default="benchmarks/results/limited-horizon")
    args = parser.parse_args()
    steps = [0] + [args.max * k // 4 for k in range(1, 5)]
    folder = Path(tempfile.mkdtemp(prefix="aqueue-limited-"))
    folder.chmod(0o755)  # the server runs as an unprivileged user when we are root
    try:
        cluster = Cluster(folder, CONFIG, log_name="limited.log")
        try:
            points = anyio.run(
                run, cluster.dsn(), steps, backend="asyncio", backend_options={"use_uvloop": True}
            )
        finally:
            cluster.destroy()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "limited.json").write_text(json.dumps(points, indent=2) + "\n")
    (out / "limited.md").write_text(markdown(points))
    print(markdown(points))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
