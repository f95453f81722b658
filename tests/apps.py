"""The App that worker processes in the tests run (``--app tests.apps:app``).

Its handlers write one ledger row per attempt (job id, attempt, pid), so tests can count how
often each job ran and where."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import anyio
import sqlalchemy.exc

import aqueue
from tests.payloads_pb2 import Task

SCHEMA = os.environ.get("AQUEUE_TEST_SCHEMA", "aqueue")

app = aqueue.App(schema=SCHEMA)

# (job_id, attempt, pid) is unique: a ledger write retried after a lost connection may have
# landed already. An attempt number repeats only after a shutdown handed the job back.
LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.ledger (
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    n bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (job_id, attempt, pid)
)
"""
LEDGER_WRITE_PATIENCE_S = 120.0


async def write_ledger(n: int) -> bool:
    """Record this attempt; return whether it is the job's first run anywhere. Retried
    through database outages (the fault tests cause them), so that an outage is not mistaken
    for a failing handler."""
    job = aqueue.current_job()
    assert app.engine is not None
    deadline = time.monotonic() + LEDGER_WRITE_PATIENCE_S
    while True:
        try:
            async with app.engine.begin() as conn:
                await conn.exec_driver_sql(
                    f"INSERT INTO {SCHEMA}.ledger (job_id, attempt, pid, n) "
                    f"VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    (job.id, job.attempt, os.getpid(), n),
                )
                result = await conn.exec_driver_sql(
                    f"SELECT count(*) FROM {SCHEMA}.ledger WHERE job_id = $1", (job.id,)
                )
                return int(result.scalar_one()) == 1
        except (sqlalchemy.exc.SQLAlchemyError, OSError):
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.2)


@app.job(payload=Task)
async def record(payload: Task) -> None:
    """Write the ledger, then sleep ``sleep_s`` on the job's first run only (so a rescued or
    handed-back job finishes fast), then fail if asked."""
    if await write_ledger(payload.n) and payload.sleep_s:
        await anyio.sleep(payload.sleep_s)
    if payload.fail:
        raise RuntimeError(f"task {payload.n} failed on purpose")


@app.job(payload=Task)
async def block(payload: Task) -> None:
    """Write the ledger, then block the whole event loop for ``sleep_s`` (a handler bug), on
    the job's first run only."""
    if await write_ledger(payload.n):
        time.sleep(payload.sleep_s)  # noqa: ASYNC251 - the bug under test


@app.job(payload=Task, timeout_s=1.0)
async def timed(payload: Task) -> None:
    """Write the ledger, then sleep ``sleep_s`` under a 1 s timeout."""
    await write_ledger(payload.n)
    await anyio.sleep(payload.sleep_s)


@app.job(payload=Task, max_tries=1)
async def leak(payload: Task) -> None:
    """Fail with an error that quotes the DSN, password included (``label`` holds it)."""
    await write_ledger(payload.n)
    raise ConnectionError(f"could not reach {payload.label}")


@app.job(payload=Task)
async def stubborn(payload: Task) -> None:
    """Write the ledger, then ignore every cancellation (a handler bug)."""
    await write_ledger(payload.n)
    while True:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)


# One row per attempt of the flow-control handlers: when it started and ended here (the
# epoch, this machine's clock) and when its claim took it (the database's clock).
SPANS_DDL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.spans (
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    started float8 NOT NULL,
    ended float8 NOT NULL,
    claimed_at timestamptz,
    UNIQUE (job_id, attempt)
)
"""


async def write_span(started: float) -> None:
    job = aqueue.current_job()
    assert app.engine is not None
    async with app.engine.begin() as conn:
        await conn.exec_driver_sql(
            f"INSERT INTO {SCHEMA}.spans (job_id, attempt, pid, started, ended, claimed_at) "
            f"SELECT $1, $2, $3, $4, $5, (SELECT r.claimed_at FROM {SCHEMA}.jobs_running AS r "
            f"WHERE r.id = $1) ON CONFLICT DO NOTHING",
            (job.id, job.attempt, os.getpid(), started, time.time()),
        )


@app.job(payload=Task, global_concurrency=3)
async def limited(payload: Task) -> None:
    """At most 3 attempts at once across the fleet: sleep ``sleep_s``, record the span."""
    started = time.time()
    await anyio.sleep(payload.sleep_s)
    await write_span(started)


@app.job(payload=Task, rate_limit=aqueue.RateLimit(count=20, period_s=1.0))
async def rated(payload: Task) -> None:
    """At most 20 starts a second across the fleet: record the span and the claim's time."""
    await write_span(time.time())


@app.job(payload=Task, queue="slow")
async def sized(payload: Task) -> None:
    """Sleep ``sleep_s`` in whatever queue it was enqueued in; record the span."""
    started = time.time()
    await anyio.sleep(payload.sleep_s)
    await write_span(started)


@app.job(payload=Task, backoff=lambda attempt: 0.1)
async def decides(payload: Task) -> None:
    """``label`` decides: "snooze" snoozes its first run, "retry" asks for a retry on its
    first attempt, "discard" discards; then it completes."""
    first = await write_ledger(payload.n)
    if payload.label == "snooze" and first:
        raise aqueue.Snooze(0.1)
    if payload.label == "retry" and aqueue.current_job().attempt == 1:
        raise aqueue.Retry("asked to", delay=0.1)
    if payload.label == "discard":
        raise aqueue.Discard("asked to")
