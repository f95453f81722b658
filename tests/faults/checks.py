"""What the fault tests read back: the jobs table and the ledger (one row per attempt)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import asyncpg

from tests.helpers import eventually


async def completed_count(db: asyncpg.Connection, schema: str) -> int:
    return int(
        await db.fetchval(
            f"SELECT count(*) FROM {schema}.background_jobs WHERE state = 'completed'"
        )
    )


async def completed(db: asyncpg.Connection, schema: str, n: int, timeout_s: float) -> None:
    """Wait until exactly ``n`` jobs are completed."""
    await eventually(
        lambda: completed_count(db, schema),
        lambda done: done == n,
        timeout_s=timeout_s,
        interval_s=0.1,
    )


async def wait_job_state(
    db: asyncpg.Connection, schema: str, job_id: int, state: str, timeout_s: float = 15.0
) -> None:
    await eventually(
        lambda: db.fetchval(
            f"SELECT state::text FROM {schema}.background_jobs WHERE id = $1", job_id
        ),
        lambda now: now == state,
        timeout_s=timeout_s,
    )


async def first_run_at(db: asyncpg.Connection, schema: str, job_id: int) -> dt.datetime:
    """Wait for the job's first ledger row; return when it was written (database clock)."""
    row = await eventually(
        lambda: db.fetchrow(
            f"SELECT min(at) AS at FROM {schema}.ledger WHERE job_id = $1 HAVING count(*) > 0",
            job_id,
        ),
        lambda found: found is not None,
    )
    at: dt.datetime = row["at"]
    return at


async def attempts_by_job(db: asyncpg.Connection, schema: str) -> dict[int, list[asyncpg.Record]]:
    """Ledger rows per job, in the order they ran."""
    runs: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for row in await db.fetch(f"SELECT * FROM {schema}.ledger ORDER BY at"):
        runs[row["job_id"]].append(row)
    return runs


async def ledger_rows_of(db: asyncpg.Connection, schema: str, pid: int) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {schema}.ledger WHERE pid = $1", pid))
