"""The cost curves' adapter to the storage design: the only code in ``benchmarks/curves*.py``
that knows how aqueue claims, looks up the next due job and rescues (Store methods, their
arguments, the names of the statements in ``aqueue/sql/queries``). Rewrite this module, and
only this one, for another design.

This design (state tables, lane cursors, finished rings; docs/design/storage.md):
``Store.claim`` runs claim.sql, which reads each lane from the caller's cursor and also
answers when the next job is due whenever it claims fewer than asked, so the next-due lookup
is a claim that finds nothing. The measuring worker keeps its cursors, claim numbers and
promotion window between claims as the scheduler does (aqueue/_runtime/scheduler.py), minus
the full sweep it makes every 30 s. ``Store.rescue`` runs rescue.sql.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

import aqueue
from aqueue._runtime.cursors import Cursors
from aqueue._runtime.scheduler import PROMOTE_OVERLAP
from aqueue._store.store import Claim, Store

# Longer than any run: a worker's heartbeats renew its lease (one row per beat, whatever the
# jobs processed); the measuring worker has no heartbeat, and a lease of its that ran out
# would make every claim register the worker again (a new workers row version per claim).
LEASE_S = 86_400.0


@dataclass(frozen=True)
class Served:
    """What the measuring worker serves: its job types, its queues (``None``: every one)."""

    worker_id: str
    job_types: tuple[str, ...]
    queues: tuple[str, ...] | None


@dataclass
class _Claimer:
    """What a worker keeps between claims."""

    cursors: Cursors = field(default_factory=Cursors)
    claim_no: int = 0
    db_now: dt.datetime | None = None

    def promote_since(self) -> dt.datetime | None:
        return None if self.db_now is None else self.db_now - PROMOTE_OVERLAP


_claimers: dict[str, _Claimer] = {}


async def _store(app: aqueue.App) -> Store:
    return await app._get_store()


async def _claim(
    app: aqueue.App, served: Served, limit: int, ids: list[int], attempts: list[int]
) -> Claim:
    store = await _store(app)
    claimer = _claimers.setdefault(served.worker_id, _Claimer())
    claimer.claim_no += 1
    claim = await store.claim(
        limit,
        served.job_types,
        served.queues,
        served.worker_id,
        LEASE_S,
        ids,
        attempts,
        claim_no=claimer.claim_no,
        cursors=claimer.cursors.claim_sent(),
        promote_since=claimer.promote_since(),
    )
    claimer.cursors.claim_done(claim.cursors)
    claimer.db_now = claim.db_now
    return claim


def _claim_args(served: Served, limit: int) -> tuple[Any, ...]:
    """claim.sql's parameters, as Store.claim passes them: nothing to complete."""
    claimer = _claimers.setdefault(served.worker_id, _Claimer())
    queues = None if served.queues is None else list(served.queues)
    cursors = claimer.cursors.positions()
    return Store.claim_args(
        limit,
        served.job_types,
        queues,
        served.worker_id,
        LEASE_S,
        claim_no=claimer.claim_no + 1,
        cursors=cursors,
        promote_since=claimer.promote_since(),
    )


async def process_due(app: aqueue.App, served: Served, batch: int) -> int:
    """Run every due job to completion as a worker with no-op handlers would, through the
    real statements: each claim of up to ``batch`` completes the previous claim's jobs.
    Returns how many were completed."""
    ids: list[int] = []
    attempts: list[int] = []
    completed = 0
    while True:
        claim = await _claim(app, served, batch, ids, attempts)
        completed += len(claim.completed)
        if not claim.jobs:
            return completed
        ids = [job.id for job in claim.jobs]
        attempts = [job.attempt for job in claim.jobs]


async def claim_once(app: aqueue.App, served: Served) -> float:
    """Claim the one due job (timed, ms), then complete it (not timed)."""
    store = await _store(app)
    start = time.perf_counter()
    claim = await _claim(app, served, 1, [], [])
    elapsed = (time.perf_counter() - start) * 1000
    if len(claim.jobs) != 1:
        raise AssertionError(f"expected to claim one due job, claimed {len(claim.jobs)}")
    job = claim.jobs[0]
    done = await store.complete(served.worker_id, [job.id], [job.attempt])
    if done != {job.id}:
        raise AssertionError(f"job {job.id} was claimed but not completed")
    return elapsed


async def next_due_once(app: aqueue.App, served: Served) -> float:
    """Look up when the next job is due, none being due now (ms)."""
    start = time.perf_counter()
    claim = await _claim(app, served, 1, [], [])
    elapsed = (time.perf_counter() - start) * 1000
    if claim.jobs or claim.next_due_s is None or claim.next_due_s <= 0:
        raise AssertionError(f"expected no due job and a later one, got {claim}")
    return elapsed


async def rescue_once(app: aqueue.App, served: Served) -> float:
    """Look for expired leases, there being none (ms)."""
    store = await _store(app)
    start = time.perf_counter()
    rescued = await store.rescue(served.worker_id)
    elapsed = (time.perf_counter() - start) * 1000
    if rescued:
        raise AssertionError(f"expected no expired lease, rescued {rescued}")
    return elapsed


class _Rollback(Exception):
    pass


async def explain_buffers(
    app: aqueue.App, conn: asyncpg.Connection, operation: str, served: Served
) -> int:
    """Shared buffers hit + read by one run of ``operation`` (``claim``, ``next_due`` or
    ``rescue``), from EXPLAIN (ANALYZE, BUFFERS) on ``conn``, rolled back. The top node's
    counts include its children and the plpgsql functions it calls."""
    store = await _store(app)
    if operation in ("claim", "next_due"):
        text, args = store._sql["claim"], _claim_args(served, 1)
    elif operation == "rescue":
        text, args = store._sql["rescue"], (served.worker_id,)
    else:
        raise ValueError(f"unknown operation {operation!r}")
    plan: Any = None
    # Twice: the second run's functions are planned already (no catalog reads counted).
    for _ in range(2):
        try:
            async with conn.transaction():
                raw = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + text, *args)
                plan = json.loads(raw) if isinstance(raw, str) else raw
                raise _Rollback  # EXPLAIN ANALYZE really claims: undo it
        except _Rollback:
            pass
    top = plan[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])
