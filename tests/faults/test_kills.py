"""Workers killed, stopped, blocked and shut down: no job lost, none run twice without cause."""

from __future__ import annotations

import datetime as dt
import random
import signal
import time
from collections.abc import Callable

import anyio
import asyncpg
import pytest

import aqueue
from tests.faults.checks import attempts_by_job, completed, ledger_rows_of
from tests.faults.conftest import LEASE_S, MAINTENANCE_INTERVAL_S
from tests.faults.report import record_figure
from tests.helpers import WorkerProcess, eventually
from tests.payloads_pb2 import Task


async def test_sigkill_mid_job_reruns_only_its_jobs_each_rescued_in_time(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    workers = [spawn("--concurrency", "16") for _ in range(4)]
    for worker in workers:
        await worker.wait_started()
    await fapp.enqueue_many("record", [Task(n=i, sleep_s=1.0) for i in range(200)])
    victim = workers[0]
    await eventually(lambda: ledger_rows_of(db, fschema, victim.pid), lambda n: n >= 8)
    victim.kill()
    killed_at: dt.datetime = await db.fetchval("SELECT clock_timestamp()")
    await completed(db, fschema, 200, timeout_s=60)

    runs = await attempts_by_job(db, fschema)
    assert len(runs) == 200
    rerun = {job_id: rows for job_id, rows in runs.items() if len(rows) > 1}
    assert rerun, "the victim was killed mid-job, so some jobs must have run again"
    for rows in rerun.values():
        assert [r["pid"] for r in rows[:-1]] == [victim.pid] * (len(rows) - 1)
    # Every job the victim was running when it died: rescued in time, and started again.
    rescued = await db.fetch(
        f"SELECT extract(epoch FROM substring(failure_info FROM 'rescued at (.*)$')::timestamptz"
        f" - $1::timestamptz) AS rescue_s FROM {fschema}.background_jobs WHERE id = ANY($2)",
        killed_at,
        list(rerun),
    )
    rescue_s = [float(r["rescue_s"]) for r in rescued]
    restart_s = [(rows[1]["at"] - killed_at).total_seconds() for rows in rerun.values()]
    record_figure("1 SIGKILL: jobs rerun", len(rerun))
    record_figure("1 SIGKILL: kill to rescue, max s", max(rescue_s))
    record_figure("1 SIGKILL: kill to second start, max s", max(restart_s))
    assert min(rescue_s) > 0
    assert max(rescue_s) <= LEASE_S + MAINTENANCE_INTERVAL_S + 2, sorted(rescue_s)


async def test_sigstopped_owner_loses_its_job_and_its_late_writes_change_nothing(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    owner = spawn("--concurrency", "1")
    await owner.wait_started()
    # Long enough to be running still when the owner is stopped, short enough to end while it
    # is stopped: on SIGCONT its handler returns and it tries to complete the job.
    job_id = await fapp.enqueue("record", Task(n=1, sleep_s=2 * LEASE_S))
    await eventually(lambda: ledger_rows_of(db, fschema, owner.pid), lambda n: n == 1)
    owner.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    other = spawn("--concurrency", "1")
    await other.wait_started()

    async def job() -> tuple[object, ...]:
        row = await db.fetchrow(
            f"SELECT state::text, try_count, worker_id, failure_info, next_attempt_after "
            f"FROM {fschema}.background_jobs WHERE id = $1",
            job_id,
        )
        return tuple(row)

    final = await eventually(job, lambda r: r[0] == "completed", timeout_s=20)
    assert final[1] == 2
    # The scenario: stopped for twice the lease, then resumed (time itself is the condition).
    await anyio.sleep(max(0.0, stopped_at + 2 * LEASE_S - time.monotonic()))
    owner.signal(signal.SIGCONT)
    resumed = time.monotonic()
    # Whichever comes first: the handler returns and its write changes nothing, or a
    # heartbeat finds the lease gone and cancels it.
    out = await owner.wait_output("came after their lease was lost", "lost the lease")
    record_figure(
        "2 SIGSTOP: resumed owner noticed the lost lease after s", time.monotonic() - resumed
    )
    assert await job() == final, out
    pids = [r["pid"] for r in await db.fetch(f"SELECT pid FROM {fschema}.ledger ORDER BY at")]
    assert pids == [owner.pid, other.pid]


@pytest.mark.timeout(240)  # its own limit (180 s for the jobs) speaks first
async def test_eight_workers_by_32_run_10000_jobs_exactly_once(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    workers = [spawn("--concurrency", "32") for _ in range(8)]
    for worker in workers:
        await worker.wait_started()
    started = time.monotonic()
    await fapp.enqueue_many("record", [Task(n=i) for i in range(10_000)])
    await completed(db, fschema, 10_000, timeout_s=180)
    record_figure("3 8x32: 10,000 jobs, s", round(time.monotonic() - started, 1))
    total, distinct, later = await db.fetchrow(
        f"SELECT count(*), count(DISTINCT job_id), count(*) FILTER (WHERE attempt > 1) "
        f"FROM {fschema}.ledger"
    )
    assert (total, distinct, later) == (10_000, 10_000, 0)
    rescued = await db.fetchval(
        f"SELECT count(*) FROM {fschema}.background_jobs "
        f"WHERE try_count <> 1 OR failure_info IS NOT NULL"
    )
    assert rescued == 0
    pids = {r["pid"] for r in await db.fetch(f"SELECT DISTINCT pid FROM {fschema}.ledger")}
    assert len(pids) >= 2, "the work was shared"


@pytest.mark.timeout(300)  # its own limit (fail_after(240)) speaks first
async def test_a_random_worker_killed_every_5_s_loses_nothing(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    workers = [spawn("--concurrency", "32") for _ in range(8)]
    for worker in workers:
        await worker.wait_started()
    await fapp.enqueue_many("record", [Task(n=i, sleep_s=0.5) for i in range(10_000)])
    rng = random.Random(7)
    killed: set[int] = set()

    async def remaining() -> int:
        return int(
            await db.fetchval(
                f"SELECT count(*) FROM {fschema}.background_jobs WHERE state <> 'completed'"
            )
        )

    with anyio.fail_after(240):
        while await remaining():
            with anyio.move_on_after(5):
                await eventually(remaining, lambda n: n == 0, timeout_s=10, interval_s=0.2)
                break
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            killed.add(victim.pid)
            replacement = spawn("--concurrency", "32")
            workers.append(replacement)
            await replacement.wait_started()

    runs = await attempts_by_job(db, fschema)
    assert len(runs) == 10_000
    rerun = {job_id: rows for job_id, rows in runs.items() if len(rows) > 1}
    for rows in rerun.values():
        # Every attempt before the last ran on a worker that was killed.
        assert {r["pid"] for r in rows[:-1]} <= killed
    record_figure("4 random kills: workers killed", len(killed))
    record_figure("4 random kills: jobs rerun", len(rerun))
    assert killed
    states = await db.fetch(
        f"SELECT state::text, count(*) FROM {fschema}.background_jobs GROUP BY 1"
    )
    assert [tuple(r) for r in states] == [("completed", 10_000)]


async def test_sigterm_hands_long_jobs_back_at_the_deadline_not_counted(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn("--concurrency", "4", "--shutdown-timeout-s", "2")
    await worker.wait_started()
    ids = await fapp.enqueue_many("record", [Task(n=i, sleep_s=10) for i in range(4)])
    await eventually(lambda: ledger_rows_of(db, fschema, worker.pid), lambda n: n == 4)
    asked = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert await worker.wait(timeout_s=10) == 0
    took = time.monotonic() - asked
    record_figure("9 SIGTERM: exit after s", round(took, 2))
    assert took <= 4.0
    rows = await db.fetch(
        f"SELECT state::text, try_count, worker_id, next_attempt_after <= now() AS due "
        f"FROM {fschema}.background_jobs WHERE id = ANY($1)",
        ids,
    )
    assert [tuple(r) for r in rows] == [("pending", 0, None, True)] * 4
    other = spawn("--concurrency", "4")
    await other.wait_started()
    await completed(db, fschema, 4, timeout_s=10)
    tries = await db.fetch(f"SELECT try_count FROM {fschema}.background_jobs")
    assert [r[0] for r in tries] == [1] * 4  # the interrupted attempt did not count


async def test_a_handler_blocking_its_loop_for_3_leases_keeps_its_job(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    owner = spawn("--concurrency", "2")
    await owner.wait_started()
    job_id = await fapp.enqueue("block", Task(n=1, sleep_s=3 * LEASE_S))
    await eventually(lambda: ledger_rows_of(db, fschema, owner.pid), lambda n: n == 1)
    other = spawn("--concurrency", "2")  # would take the job if the lease lapsed
    await other.wait_started()
    await completed(db, fschema, 1, timeout_s=30)
    row = await db.fetchrow(
        f"SELECT try_count, failure_info FROM {fschema}.background_jobs WHERE id = $1", job_id
    )
    assert tuple(row) == (1, None)
    assert await db.fetchval(f"SELECT count(*) FROM {fschema}.ledger") == 1
    assert "blocked for" in owner.output()
    assert "by handler 'block'" in owner.output()


async def test_a_loop_blocked_past_the_limit_stops_heartbeating_and_is_rescued(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    owner = spawn("--concurrency", "1", "--loop-block-limit-s", "2")
    await owner.wait_started()
    job_id = await fapp.enqueue("block", Task(n=1, sleep_s=8))
    await eventually(lambda: ledger_rows_of(db, fschema, owner.pid), lambda n: n == 1)
    other = spawn("--concurrency", "1")
    await other.wait_started()
    await completed(db, fschema, 1, timeout_s=30)
    row = await db.fetchrow(
        f"SELECT try_count, failure_info FROM {fschema}.background_jobs WHERE id = $1", job_id
    )
    assert row["try_count"] == 2
    assert "WorkerLost" in row["failure_info"]
    pids = [r["pid"] for r in await db.fetch(f"SELECT pid FROM {fschema}.ledger ORDER BY at")]
    assert pids == [owner.pid, other.pid]
    await owner.wait_output("over loop_block_limit_s")
