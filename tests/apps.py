"""The App that worker processes in the tests run (``--app tests.apps:app``).

Its handler writes one ledger row per attempt, so tests can count how often each job ran."""

from __future__ import annotations

import os

import anyio

import aqueue
from tests.payloads_pb2 import Task

SCHEMA = os.environ.get("AQUEUE_TEST_SCHEMA", "aqueue")

app = aqueue.App(schema=SCHEMA)

LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.ledger (
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    n bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


@app.job(payload=Task)
async def record(payload: Task) -> None:
    """Write (job id, attempt, pid, n) to the ledger, then sleep ``sleep_s`` on the first
    attempt only (so a rescued job finishes fast), then fail if asked."""
    job = aqueue.current_job()
    assert app.engine is not None
    async with app.engine.begin() as conn:
        await conn.exec_driver_sql(
            f"INSERT INTO {SCHEMA}.ledger (job_id, attempt, pid, n) VALUES ($1, $2, $3, $4)",
            (job.id, job.attempt, os.getpid(), payload.n),
        )
    if payload.sleep_s and job.attempt == 1:
        await anyio.sleep(payload.sleep_s)
    if payload.fail:
        raise RuntimeError(f"task {payload.n} failed on purpose")
