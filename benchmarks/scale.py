"""Scale: drain throughput with a long queue, and with millions of finished jobs kept in the
table. The claim must stay an index range scan whatever the table holds; :func:`explain`
shows the plans (the claim's own and, through auto_explain, those of the functions it calls).
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from . import ceiling
from .app import noop
from .harness import Bench, WorkerProcess
from .workloads import ENQUEUE_CHUNK, Figures, queue_at_once

MEASURED = 50_000  # the throughput of the first 50,000 jobs drained
FILL_CHUNK = 1_000_000


async def _drain_first(bench: Bench, queued: int, completed_kept: int = 0) -> Figures:
    await bench.reset()
    left = completed_kept
    while left > 0:
        await bench.pg.execute(ceiling.statement("fill_completed"), min(left, FILL_CHUNK))
        left -= FILL_CHUNK
    if completed_kept:
        await bench.vacuum_analyze()  # as autovacuum would
    measured = min(queued, MEASURED)
    worker = WorkerProcess(bench.dsn, 16)
    async with worker.running():
        await anyio.sleep(0.2)
        first, start = await queue_at_once(bench, noop, queued)
        last = first + measured - 1  # claimed in id order: same priority and due time
        while True:
            state = await bench.pg.fetchval(
                f"SELECT state::text FROM {bench.table} WHERE id = $1", last
            )
            if state == "completed":
                break
            await anyio.sleep(0.01)
        end = time.perf_counter()
    behind = await bench.pg.fetchval(
        f"SELECT count(*) FROM {bench.table} WHERE id BETWEEN $1 AND $2 AND state <> 'completed'",
        first,
        last,
    )
    return {"jobs_per_s": (measured - behind) / (end - start), "rows": queued + completed_kept}


async def queued_50k(bench: Bench, _n: int) -> Figures:
    """The baseline the others are read against, measured the same way."""
    return await _drain_first(bench, 50_000)


async def queued_10k(bench: Bench, _n: int) -> Figures:
    return await _drain_first(bench, 10_000)


async def queued_100k(bench: Bench, _n: int) -> Figures:
    return await _drain_first(bench, 100_000)


async def queued_1m(bench: Bench, _n: int) -> Figures:
    return await _drain_first(bench, 1_000_000)


async def completed_5m(bench: Bench, _n: int) -> Figures:
    """50,000 queued beside 5,000,000 completed jobs."""
    return await _drain_first(bench, 50_000, completed_kept=5_000_000)


async def explain(bench: Bench, queued: int, completed_kept: int) -> list[str]:
    """The claim's plan with ``queued`` jobs queued and ``completed_kept`` finished, in a
    transaction that is rolled back. Nested plans come from auto_explain (superuser only)."""
    from google.protobuf.empty_pb2 import Empty

    await bench.reset()
    left = completed_kept
    while left > 0:
        await bench.pg.execute(ceiling.statement("fill_completed"), min(left, FILL_CHUNK))
        left -= FILL_CHUNK
    left = queued
    while left > 0:
        await bench.app.enqueue_many(noop, [Empty()] * min(left, ENQUEUE_CHUNK))
        left -= ENQUEUE_CHUNK
    await bench.vacuum_analyze()
    store = await bench.app._get_store()
    claim = store._sql["claim"]
    nested: list[str] = []

    def on_log(_conn: Any, message: Any) -> None:
        nested.append(str(message.message if hasattr(message, "message") else message))

    bench.pg.add_log_listener(on_log)
    try:
        async with bench.pg.transaction():
            await bench.pg.execute("LOAD 'auto_explain'")
            for setting in (
                "auto_explain.log_min_duration = 0",
                "auto_explain.log_nested_statements = on",
                "auto_explain.log_analyze = on",
                "client_min_messages = log",
            ):
                await bench.pg.execute(f"SET LOCAL {setting}")
            args = store.claim_args(16, ["noop"], None, "explain", 30.0, claim_no=1)
            rows = await bench.pg.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + claim, *args)
            raise _Rollback
    except _Rollback:
        pass
    finally:
        bench.pg.remove_log_listener(on_log)
    # Only the plans of the functions' statements (asyncpg's own introspection is logged too).
    ours = [t for t in nested if "jobs_" in t and "EXPLAIN" not in t]
    return [row[0] for row in rows] + [line for text in ours for line in text.splitlines()]


class _Rollback(Exception):
    pass


async def claim_beside_1m(bench: Bench, _n: int) -> Figures:
    """Claim round trips of a worker serving queues ``a`` and ``b`` (8 slots each) and two
    types, one of them limited to 4 running at once, beside 1,000,000 due jobs it does not
    serve (500,000 in another queue, 500,000 of another type in its own queue). Each claim
    completes the previous claim's jobs, as a worker does."""
    from google.protobuf.empty_pb2 import Empty

    from aqueue._store.records import Limit

    from .app import limited

    await bench.reset()
    chunk = [Empty()] * ENQUEUE_CHUNK
    for _ in range(500_000 // ENQUEUE_CHUNK):
        await bench.app.enqueue_many(noop, chunk, queue="other")
        await bench.app.enqueue_many("foreign", chunk, queue="a")
    for queue in ("a", "b"):
        await bench.app.enqueue_many(noop, [Empty()] * 5_000, queue=queue)
    await bench.app.enqueue_many(limited, [Empty()] * 5_000, queue="a")
    await bench.vacuum_analyze()
    store = await bench.app._get_store()
    times: list[float] = []
    done: list[Any] = []
    cursors: dict[int, int] = {}
    for claim_no in range(1, 1001):
        start = time.perf_counter()
        claim = await store.claim(
            [8, 8],
            ["noop", "limited"],
            ["a", "b"],
            "bench-claimer",
            30.0,
            [j.id for j in done],
            [j.attempt for j in done],
            queue_groups=[1, 2],
            claim_no=claim_no,
            cursors=cursors,
            limits=[Limit("limited", 4, None, None)],
        )
        times.append((time.perf_counter() - start) * 1000)
        cursors.update(claim.cursors)
        done = claim.jobs
    times.sort()
    return {
        "p50_ms": times[len(times) // 2],
        "p99_ms": times[int(len(times) * 0.99)],
        "max_ms": times[-1],
    }
