"""Retention: finished jobs are kept retention_s (failed ones failed_retention_s), then
removed a whole ring slot at a time by TRUNCATE, never waiting long on a lock."""

from __future__ import annotations

import time

import anyio
import asyncpg

import aqueue
from aqueue._store.store import Store
from tests.helpers import eventually, sqlalchemy_dsn
from tests.payloads_pb2 import Task


async def ring_slot(pg: asyncpg.Connection, schema: str, ring: str) -> int:
    return int(await pg.fetchval(f"SELECT slot FROM {schema}.rings WHERE ring = $1", ring))


async def test_finished_jobs_go_a_slot_at_a_time_after_their_retention(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def ok(payload: Task) -> None: ...

    @app.job(payload=Task)
    async def bad(payload: Task) -> None:
        raise ValueError("always")

    store = app._store
    assert isinstance(store, Store)
    old = await app.enqueue(ok, Task())
    failed = await app.enqueue(bad, Task(), max_tries=1)
    assert await app.drain() == 2
    finished = await pg.fetchval(f"SELECT finished_at FROM {schema}.jobs_done WHERE id = $1", old)
    assert await pg.fetchval(f"SELECT slot FROM {schema}.jobs_done WHERE id = $1", old) == 0
    retention_s = 0.6
    await store.prune("done", retention_s)  # may move on from the slot migrate started
    slot = await ring_slot(pg, schema, "done")
    # Too soon: the current slot is younger than a sixth of the retention.
    assert await store.prune("done", 60) == 0
    assert await ring_slot(pg, schema, "done") == slot

    async def prune_until_gone() -> bool:
        await store.prune("done", retention_s)
        return not await pg.fetchval(
            f"SELECT count(*) FROM {schema}.background_jobs WHERE id = $1", old
        )

    await eventually(prune_until_gone, bool, timeout_s=15, interval_s=0.02)
    gone_at = await pg.fetchval("SELECT now()")
    assert (gone_at - finished).total_seconds() >= retention_s
    assert await ring_slot(pg, schema, "done") == 0  # all the way round: slot 0 emptied
    # A job finished a moment ago is in the current slot, kept.
    new = await app.enqueue(ok, Task())
    assert await app.drain() == 1
    await store.prune("done", retention_s)
    assert (
        await pg.fetchval(f"SELECT state::text FROM {schema}.background_jobs WHERE id = $1", new)
        == "completed"
    )
    # The failed ring has its own (longer) retention: untouched.
    row = await pg.fetchrow(
        f"SELECT state::text, failure_info FROM {schema}.background_jobs WHERE id = $1", failed
    )
    assert row["state"] == "failed"
    assert "ValueError: always" in row["failure_info"]
    assert await ring_slot(pg, schema, "failed") == 0


async def test_a_reader_holding_the_slot_makes_prune_give_up_at_once(
    app: aqueue.App, dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    store = app._store
    assert isinstance(store, Store)
    await eventually(
        lambda: pg.fetchval(
            f"SELECT now() - started_at > interval '0.2 s' FROM {schema}.rings WHERE ring = 'done'"
        ),
        bool,
        timeout_s=5,
    )
    reader = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    try:
        async with reader.transaction():
            await reader.fetch(f"SELECT count(*) FROM {schema}.background_jobs")
            t0 = time.perf_counter()
            assert await store.prune("done", 1.0) is None  # its lock wait timed out
            assert time.perf_counter() - t0 < 2.0
            assert await ring_slot(pg, schema, "done") == 0
        assert await store.prune("done", 1.0) == 0  # the reader is gone: it moves on
        assert await ring_slot(pg, schema, "done") == 1
    finally:
        await reader.close()


async def test_a_worker_prunes_with_its_retention_settings(
    dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    app = aqueue.App(dsn, schema=schema, maintenance_interval_s=0.05)

    @app.job(payload=Task)
    async def ok(payload: Task) -> None: ...

    try:
        await app.migrate()
        job_id = await app.enqueue(ok, Task())
        async with app.worker(retention_s=0.5, failed_retention_s=3600) as worker:
            await eventually(
                lambda: pg.fetchval(
                    f"SELECT count(*) FROM {schema}.background_jobs WHERE id = $1", job_id
                ),
                lambda n: n == 0,
                timeout_s=15,
            )
            with anyio.fail_after(5):
                await worker.wait_until(lambda s: s.completed == 1)
    finally:
        await app.close()
