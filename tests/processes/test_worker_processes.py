"""Real ``python -m aqueue worker`` processes: sharing work, SIGKILL, SIGTERM."""

from __future__ import annotations

import signal
import time
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
async def ledger(app: aqueue.App, pg: asyncpg.Connection, schema: str) -> None:
    await pg.execute(apps.LEDGER_DDL.replace(f"{apps.SCHEMA}.", f"{schema}."))


@pytest.fixture
async def spawn(
    dsn: str, schema: str, tmp_path: Path
) -> AsyncIterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        proc = WorkerProcess(
            tmp_path / f"worker-{len(started)}.log",
            {"AQUEUE_DSN": dsn, "AQUEUE_TEST_SCHEMA": schema, **(env or {})},
            *args,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def count(pg: asyncpg.Connection, sql: str) -> Callable[[], object]:
    async def probe() -> int:
        return int(await pg.fetchval(sql))

    return probe


async def test_two_worker_processes_run_2000_jobs_each_exactly_once(
    dsn: str,
    app: aqueue.App,
    pg: asyncpg.Connection,
    schema: str,
    ledger: None,
    spawn: Callable[..., WorkerProcess],
) -> None:
    workers = [
        spawn("--concurrency", "8"),
        # --dsn wins over $AQUEUE_DSN (which points nowhere here).
        spawn(
            "--concurrency", "8", "--dsn", dsn, env={"AQUEUE_DSN": "postgresql://x@127.0.0.1:1/no"}
        ),
    ]
    for worker in workers:
        await worker.wait_started()
    await app.enqueue_many(apps.record, [Task(n=i) for i in range(2000)])
    await eventually(
        count(pg, f"SELECT count(*) FROM {schema}.background_jobs WHERE state = 'completed'"),
        lambda n: n == 2000,
        timeout_s=60,
    )
    total, distinct, retried = await pg.fetchrow(
        f"SELECT count(*), count(DISTINCT n), count(*) FILTER (WHERE attempt > 1) "
        f"FROM {schema}.ledger"
    )
    assert (total, distinct, retried) == (2000, 2000, 0)
    per_pid = await pg.fetch(f"SELECT pid, count(*) FROM {schema}.ledger GROUP BY pid")
    assert {row["pid"] for row in per_pid} <= {w.pid for w in workers}
    # SIGTERM and SIGINT (Ctrl-C) both stop a worker cleanly.
    for worker, signum in zip(workers, (signal.SIGTERM, signal.SIGINT), strict=True):
        worker.signal(signum)
        assert await worker.wait() == 0
        assert f"received {signal.Signals(signum).name}" in worker.output()


async def test_sigkilled_worker_job_is_rescued_after_the_lease_and_completed_by_another(
    app: aqueue.App,
    pg: asyncpg.Connection,
    schema: str,
    ledger: None,
    spawn: Callable[..., WorkerProcess],
) -> None:
    short = ["--lease-s", "2", "--heartbeat-s", "0.5", "--maintenance-interval-s", "0.5"]
    doomed = spawn(*short)
    await doomed.wait_started()
    job_id = await app.enqueue(apps.record, Task(n=1, sleep_s=60))
    await eventually(
        count(pg, f"SELECT count(*) FROM {schema}.ledger WHERE pid = {doomed.pid}"),
        lambda n: n == 1,
    )
    doomed.kill()  # SIGKILL mid-job: no goodbye, the lease just stops being renewed
    killed_at = time.monotonic()
    survivor = spawn(*short)
    await survivor.wait_started()

    async def job_state() -> tuple[str, int]:
        row = await pg.fetchrow(
            f"SELECT state::text, try_count FROM {schema}.background_jobs WHERE id = $1", job_id
        )
        return (row[0], row[1])

    assert await eventually(job_state, lambda s: s[0] == "completed", timeout_s=20) == (
        "completed",
        2,
    )
    rescued_after = time.monotonic() - killed_at
    ledger_rows = await pg.fetch(f"SELECT attempt, pid FROM {schema}.ledger ORDER BY attempt")
    assert [(r["attempt"], r["pid"]) for r in ledger_rows] == [
        (1, doomed.pid),
        (2, survivor.pid),
    ]
    # Not before the lease could expire; not much after lease + maintenance interval.
    assert 1.0 <= rescued_after <= 2 + 0.5 + 5, rescued_after
    survivor.signal(signal.SIGTERM)
    assert await survivor.wait() == 0


async def test_sigterm_lets_running_jobs_finish_then_exits_0(
    app: aqueue.App,
    pg: asyncpg.Connection,
    schema: str,
    ledger: None,
    spawn: Callable[..., WorkerProcess],
) -> None:
    worker = spawn("--concurrency", "4", "--shutdown-timeout-s", "30")
    await worker.wait_started()
    ids = await app.enqueue_many(apps.record, [Task(n=i, sleep_s=1.5) for i in range(3)])
    await eventually(count(pg, f"SELECT count(*) FROM {schema}.ledger"), lambda n: n == 3)
    worker.signal(signal.SIGTERM)
    stopped_at = time.monotonic()

    async def output() -> str:
        return worker.output()

    await eventually(output, lambda out: "received SIGTERM" in out)
    # Once the signal is in, nothing new is claimed.
    late = await app.enqueue(apps.record, Task(n=99))
    assert await worker.wait() == 0
    assert time.monotonic() - stopped_at < 10
    states = await pg.fetch(
        f"SELECT state::text, try_count FROM {schema}.background_jobs WHERE id = ANY($1)", ids
    )
    assert [(r[0], r[1]) for r in states] == [("completed", 1)] * 3
    assert "stop: waiting up to 30.0 s for 3 running job(s)" in worker.output()
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.ledger") == 3
    late_state = await pg.fetchval(
        f"SELECT state::text FROM {schema}.background_jobs WHERE id = $1", late
    )
    assert late_state == "pending"


async def test_a_handler_ignoring_cancellation_cannot_keep_the_process_alive(
    app: aqueue.App,
    pg: asyncpg.Connection,
    schema: str,
    ledger: None,
    spawn: Callable[..., WorkerProcess],
) -> None:
    worker = spawn("--shutdown-timeout-s", "0.5", "--cancel-grace-s", "1")
    await worker.wait_started()
    job_id = await app.enqueue(apps.stubborn, Task(n=1))
    await eventually(count(pg, f"SELECT count(*) FROM {schema}.ledger"), lambda n: n == 1)
    worker.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert await worker.wait() == 3  # EXIT_ABANDONED
    assert time.monotonic() - stopped_at < 10
    out = worker.output()
    assert "ignored its cancellation" in out
    assert "stubborn" in out
    assert "tests/apps.py:" in out  # the handler's line
    row = await pg.fetchrow(
        f"SELECT state::text, try_count, failure_info FROM {schema}.background_jobs WHERE id = $1",
        job_id,
    )
    assert (row[0], row[1]) == ("error", 1)
    assert "HandlerIgnoredCancellation" in row[2]
