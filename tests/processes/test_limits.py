"""Fleet-wide limits across real worker processes: global_concurrency and rate_limit are
enforced by the claim, atomically, however many workers claim at the same instant."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

import aqueue
from tests import apps
from tests.helpers import WorkerProcess, eventually
from tests.payloads_pb2 import Task

pytestmark = pytest.mark.slow


@pytest.fixture
async def spans(app: aqueue.App, pg: asyncpg.Connection, schema: str) -> None:
    await pg.execute(apps.SPANS_DDL.replace(f"{apps.SCHEMA}.", f"{schema}."))


@contextlib.asynccontextmanager
async def worker_processes(
    dsn: str, schema: str, folder: Path, count: int, *args: str
) -> AsyncIterator[list[WorkerProcess]]:
    """``count`` worker processes started with ``args`` (their logs in ``folder``), killed
    on the way out."""
    workers = [
        WorkerProcess(
            folder / f"worker-{i}.log",
            {"AQUEUE_DSN": dsn, "AQUEUE_TEST_SCHEMA": schema},
            *args,
        )
        for i in range(count)
    ]
    try:
        for worker in workers:
            await worker.wait_started()
        yield workers
    finally:
        for worker in workers:
            worker.kill()


@pytest.fixture
async def four_workers(dsn: str, schema: str, tmp_path: Path) -> AsyncIterator[list[WorkerProcess]]:
    # Workers the limit holds off look again often: every claim competes.
    args = ("--concurrency", "16", "--poll-interval-s", "0.1")
    async with worker_processes(dsn, schema, tmp_path, 4, *args) as workers:
        yield workers


def completed(pg: asyncpg.Connection, schema: str, job_type: str) -> Callable[[], object]:
    async def probe() -> int:
        return int(
            await pg.fetchval(
                f"SELECT count(*) FROM {schema}.background_jobs "
                f"WHERE job_type = $1 AND state = 'completed'",
                job_type,
            )
        )

    return probe


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans (start, end) open at one instant (an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    open_now = peak = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


async def test_global_concurrency_3_holds_across_4_processes_of_16_slots(
    app: aqueue.App,
    pg: asyncpg.Connection,
    schema: str,
    spans: None,
    four_workers: list[WorkerProcess],
) -> None:
    """200 jobs of a type limited to 3, and 64 free slots across 4 processes: never more
    than 3 attempts overlap (each span is recorded inside its claim-to-completion interval),
    and every job completes."""
    await app.enqueue_many(apps.limited, [Task(n=i, sleep_s=0.05) for i in range(200)])
    await eventually(
        completed(pg, schema, "limited"), lambda n: n == 200, timeout_s=90, interval_s=0.2
    )
    rows = await pg.fetch(f"SELECT started, ended, pid FROM {schema}.spans")
    assert len(rows) == 200
    pids = {r["pid"] for r in rows}
    # Every worker claims every 0.1 s at least, so claims of the type meet all the time. The
    # worker whose attempt ends usually takes the freed place itself (its claim completes
    # the attempt and claims in one statement), so how the jobs spread over the processes
    # is left to chance, and only reported.
    assert most_at_once([(r["started"], r["ended"]) for r in rows]) == 3, pids


async def test_rate_limit_20_per_second_holds_across_4_processes(
    app: aqueue.App,
    pg: asyncpg.Connection,
    schema: str,
    spans: None,
    four_workers: list[WorkerProcess],
) -> None:
    """200 jobs at 20 per second: no sliding 1 s window holds more than 20 starts (a start
    is a claim, timed by the database's clock: claimed_at), and all 200 start within 9-12 s
    (the first 20 at once, then 20 more each time the window moves on)."""
    await app.enqueue_many(apps.rated, [Task(n=i) for i in range(200)])
    await eventually(
        completed(pg, schema, "rated"), lambda n: n == 200, timeout_s=60, interval_s=0.2
    )
    rows = await pg.fetch(f"SELECT claimed_at, started FROM {schema}.spans ORDER BY claimed_at")
    assert len(rows) == 200
    starts = [r["claimed_at"] for r in rows]
    assert all(s is not None for s in starts)
    window = dt.timedelta(seconds=1)
    # Any window's count is at most the count of the window that begins at one of its starts.
    busiest = max(sum(1 for t in starts[i:] if t < s + window) for i, s in enumerate(starts))
    assert busiest <= 21, busiest  # 20, and 1 for clock granularity
    assert dt.timedelta(seconds=9) <= starts[-1] - starts[0] <= dt.timedelta(seconds=12)
    # The handlers' own start times (this machine's clock) tell the same story, loosely.
    local = sorted(r["started"] for r in rows)
    assert 8.5 <= local[-1] - local[0] <= 12.5


async def test_sized_queues_hold_in_each_worker_process(
    dsn: str, app: aqueue.App, pg: asyncpg.Connection, schema: str, spans: None, tmp_path: Path
) -> None:
    """Two processes with ``--queue slow=2 --queue fast=1``: in each, at most 2 jobs of slow
    and 1 of fast at once, and fast runs beside a full slow."""
    args = ("--queue", "slow=2", "--queue", "fast=1")
    async with worker_processes(dsn, schema, tmp_path, 2, *args) as workers:
        assert "queues slow=2, fast=1" in workers[0].output()
        await app.enqueue_many(apps.sized, [Task(n=i, sleep_s=0.3) for i in range(12)])
        await app.enqueue_many(
            apps.sized, [Task(n=100 + i, sleep_s=0.05) for i in range(10)], queue="fast"
        )
        await eventually(
            completed(pg, schema, "sized"), lambda n: n == 22, timeout_s=60, interval_s=0.1
        )
    rows = await pg.fetch(
        f"SELECT s.pid, j.queue, s.started, s.ended FROM {schema}.spans AS s "
        f"JOIN {schema}.background_jobs AS j ON j.id = s.job_id"
    )
    assert len(rows) == 22
    for pid in {r["pid"] for r in rows}:
        for queue, most in (("slow", 2), ("fast", 1)):
            spans_ = [
                (r["started"], r["ended"]) for r in rows if r["pid"] == pid and r["queue"] == queue
            ]
            assert most_at_once(spans_) <= most, (pid, queue)
    slow = [r for r in rows if r["queue"] == "slow"]
    fast = [r for r in rows if r["queue"] == "fast"]
    # The fast queue did not wait for the slow one to drain.
    assert min(r["ended"] for r in fast) < max(r["started"] for r in slow)


async def test_handlers_decide_across_worker_processes(
    app: aqueue.App,
    pg: asyncpg.Connection,
    schema: str,
    four_workers: list[WorkerProcess],
) -> None:
    await pg.execute(apps.LEDGER_DDL.replace(f"{apps.SCHEMA}.", f"{schema}."))
    labels = ["snooze", "retry", "discard", "plain"] * 5
    ids = await app.enqueue_many(
        apps.decides, [Task(n=i, label=label) for i, label in enumerate(labels)]
    )

    async def ended() -> int:
        return int(
            await pg.fetchval(
                f"SELECT count(*) FROM {schema}.background_jobs "
                f"WHERE state IN ('completed', 'failed')"
            )
        )

    await eventually(ended, lambda n: n == 20, timeout_s=60, interval_s=0.1)
    rows = {
        r["id"]: r
        for r in await pg.fetch(
            f"SELECT id, state::text AS state, try_count, failure_info "
            f"FROM {schema}.background_jobs"
        )
    }
    for job_id, label in zip(ids, labels, strict=True):
        row = rows[job_id]
        expected = {
            "snooze": ("completed", 1),  # the snoozed run did not count
            "retry": ("completed", 2),
            "discard": ("failed", 1),
            "plain": ("completed", 1),
        }[label]
        assert (row["state"], row["try_count"]) == expected, (label, dict(row))
        if label == "discard":
            assert "Discarded" in row["failure_info"]
        if label == "retry":
            assert "requested a retry" in row["failure_info"]


UNIQUE_ENQUEUER = """
import asyncio, os, sys
import aqueue
from tests import apps
from tests.payloads_pb2 import Task

async def main() -> None:
    async with apps.app:
        ids = await apps.app.enqueue_many(
            apps.record, [Task(n=i) for i in range(50)], unique_keys=[f"k{i}" for i in range(50)]
        )
        print(" ".join(f"{int(i)}:{int(i.duplicate)}" for i in ids))

asyncio.run(main())
"""


async def test_unique_keys_hold_across_enqueuing_processes(
    dsn: str, pg: asyncpg.Connection, schema: str, app: aqueue.App
) -> None:
    """Four processes enqueue the same 50 keys at the same moment: 50 jobs, and every
    process gets the same 50 ids back."""
    import sys

    import anyio

    from tests.helpers import ROOT

    env = {**os.environ, "AQUEUE_DSN": dsn, "AQUEUE_TEST_SCHEMA": schema}
    outputs: list[str] = []

    async def enqueuer() -> None:
        done = await anyio.run_process([sys.executable, "-c", UNIQUE_ENQUEUER], cwd=ROOT, env=env)
        outputs.append(done.stdout.decode())

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(enqueuer)
    results = [[tuple(map(int, x.split(":"))) for x in out.split()] for out in outputs]
    ids = [[i for i, _ in r] for r in results]
    assert all(r == ids[0] for r in ids)
    assert sum(1 for r in results for _, dup in r if not dup) == 50
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 50


async def test_global_concurrency_is_shared_across_processes_of_one_slot_each(
    dsn: str, app: aqueue.App, pg: asyncpg.Connection, schema: str, spans: None, tmp_path: Path
) -> None:
    """Four processes of one slot each, a type limited to 3: the places are held by
    different processes at once (the limit is the fleet's, not one worker's), never more
    than 3 together."""
    args = ("--concurrency", "1", "--poll-interval-s", "0.1")
    async with worker_processes(dsn, schema, tmp_path, 4, *args):
        await app.enqueue_many(apps.limited, [Task(n=i, sleep_s=0.05) for i in range(60)])
        await eventually(
            completed(pg, schema, "limited"), lambda n: n == 60, timeout_s=60, interval_s=0.1
        )
    rows = await pg.fetch(f"SELECT started, ended, pid FROM {schema}.spans")
    assert len(rows) == 60
    assert most_at_once([(r["started"], r["ended"]) for r in rows]) == 3
    assert len({r["pid"] for r in rows}) >= 3
