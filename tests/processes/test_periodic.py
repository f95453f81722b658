"""Periodic jobs and leadership across real worker processes: one job per tick whatever the
number of workers, no burst after every worker was down, and leadership passing on within
about one maintenance interval after the leader is killed."""

from __future__ import annotations

import contextlib
import itertools
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import pytest

import aqueue
from tests.helpers import WorkerProcess, eventually

pytestmark = pytest.mark.slow

APP = "tests.periodic_app:app"
LEADS = "now leads rescue, retention and periodic jobs"
INTERVAL_S = 1.0


def start(dsn: str, schema: str, path: Path, *args: str) -> WorkerProcess:
    return WorkerProcess(
        path,
        {"AQUEUE_DSN": dsn, "AQUEUE_TEST_SCHEMA": schema},
        "--maintenance-interval-s",
        str(INTERVAL_S),
        *args,
        app=APP,
    )


@contextlib.asynccontextmanager
async def fleet(
    dsn: str, schema: str, folder: Path, count: int, *args: str
) -> AsyncIterator[list[WorkerProcess]]:
    """``count`` started worker processes, killed (and resumed, if stopped) on the way out."""
    workers = [start(dsn, schema, folder / f"worker-{i}.log", *args) for i in range(count)]
    try:
        for worker in workers:
            await worker.wait_started()
        yield workers
    finally:
        for worker in workers:
            worker.signal(signal.SIGCONT)
            worker.kill()


async def the_leader(workers: list[WorkerProcess]) -> WorkerProcess:
    """The one worker whose log says it leads (waiting for it)."""

    async def leaders() -> list[WorkerProcess]:
        return [w for w in workers if LEADS in w.output()]

    (leader,) = await eventually(leaders, lambda found: len(found) == 1, timeout_s=10)
    return leader


async def ticks(pg: asyncpg.Connection, schema: str) -> list[float]:
    """When each periodic job was enqueued, in seconds since the epoch (database clock)."""
    rows = await pg.fetch(
        f"SELECT extract(epoch FROM queued)::float8 FROM {schema}.background_jobs "
        "WHERE job_type = 'tick' ORDER BY queued"
    )
    return [r[0] for r in rows]


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


async def test_three_workers_make_one_job_per_tick_and_no_burst_after_downtime(
    dsn: str, schema: str, app: aqueue.App, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    workers = [start(dsn, schema, tmp_path / f"worker-{i}.log") for i in range(3)]
    try:
        for worker in workers:
            await worker.wait_started()
        await anyio.sleep(8.0)  # the condition under test is time itself: 8 ticks
        for worker in workers:
            worker.signal(signal.SIGTERM)
        for worker in workers:
            assert await worker.wait() == 0, worker.output()
        during = await ticks(pg, schema)
        leaders = [w for w in workers if LEADS in w.output()]
        print(f"periodic: {len(during)} jobs in 8 s with 3 workers; gaps {gaps(during)}")
        assert 6 <= len(during) <= 10, gaps(during)
        assert all(g > 0.5 for g in gaps(during)), gaps(during)  # no tick twice
        assert len(leaders) == 1, [w.output() for w in workers]

        await anyio.sleep(5.0)  # every worker down for 5 ticks
        restarted = start(dsn, schema, tmp_path / "restarted.log")
        try:
            await restarted.wait_started()

            async def new_jobs() -> list[float]:
                return (await ticks(pg, schema))[len(during) :]

            first = await eventually(new_jobs, lambda new: len(new) >= 1, timeout_s=10)
            # One catch-up job for the five ticks missed, not five.
            assert len(first) == 1, gaps(first)
            await anyio.sleep(2.5)
            after = await new_jobs()
        finally:
            restarted.signal(signal.SIGTERM)
            await restarted.wait()
        print(f"periodic: after 5 s down, jobs in the restart's first 2.5 s: {gaps(after)}")
        assert 2 <= len(after) <= 5, gaps(after)  # the catch-up, then one a second
        # The catch-up is for the latest tick missed: the next one may follow it closely.
        assert all(g > 0.5 for g in gaps(after)[1:]), gaps(after)
    finally:
        for worker in workers:
            worker.kill()


async def test_leadership_passes_within_an_interval_after_the_leader_is_killed(
    dsn: str, schema: str, app: aqueue.App, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    async with fleet(dsn, schema, tmp_path, 3) as workers:
        leader = await the_leader(workers)
        before = len(await ticks(pg, schema))
        leader.kill()  # SIGKILL: no goodbye, its backend notices the closed socket
        killed_at = time.monotonic()
        others = [w for w in workers if w is not leader]

        async def successors() -> list[WorkerProcess]:
            return [w for w in others if LEADS in w.output()]

        (successor,) = await eventually(successors, lambda found: len(found) >= 1, timeout_s=10)
        passed_s = time.monotonic() - killed_at
        print(f"leader: leadership passed {passed_s:.2f} s after SIGKILL (interval {INTERVAL_S} s)")
        # One interval (with its jitter of 20%), plus the log's polling and slack.
        assert passed_s < INTERVAL_S * 1.2 + 1.5
        # The successor carries on ticking.

        async def count() -> int:
            return len(await ticks(pg, schema))

        await eventually(count, lambda n: n >= before + 2, timeout_s=10)
        assert LEADS not in next(w for w in others if w is not successor).output()


async def test_a_stopped_leader_whose_lease_expires_is_replaced(
    dsn: str, schema: str, app: aqueue.App, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    """SIGSTOP: the process, and its heartbeats, stop; its connection, and so the lock, stay
    up. Once its lease has expired, the next worker that tries to lead ends that backend."""
    lease_s = 2.0
    args = ("--lease-s", str(lease_s))
    async with fleet(dsn, schema, tmp_path, 2, *args) as workers:
        leader = await the_leader(workers)
        (other,) = [w for w in workers if w is not leader]
        leader.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        out = await other.wait_output(LEADS, timeout_s=20)
        passed_s = time.monotonic() - stopped_at
        print(f"leader: a SIGSTOPped leader replaced after {passed_s:.2f} s (lease {lease_s} s)")
        assert "ended its backend" in out
        # Its lease, then a try that ends its backend, then a try that takes the lock.
        assert passed_s < lease_s + 3 * INTERVAL_S * 1.2 + 1.5
        before = len(await ticks(pg, schema))

        async def count() -> int:
            return len(await ticks(pg, schema))

        await eventually(count, lambda n: n >= before + 2, timeout_s=10)
        leader.signal(signal.SIGCONT)  # it finds its connection gone, and leads no more
        await leader.wait_output("no longer leads", "listen: reconnected", timeout_s=20)
