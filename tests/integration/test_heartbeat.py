"""Heartbeats against row locks and a LISTEN connection that failed a beat: no lock held on
a job's row holds up any lease, and beats go back to the LISTEN connection."""

from __future__ import annotations

import logging

import anyio
import asyncpg
import pytest

import aqueue
from aqueue._store.store import Store
from tests.helpers import eventually, sqlalchemy_dsn
from tests.payloads_pb2 import Task


async def lease_left_s(pg: asyncpg.Connection, schema: str, job_id: int) -> float | None:
    """Seconds left on a job's lease by the database's clock (negative: expired; None: the
    job holds no lease)."""
    left = await pg.fetchval(
        f"SELECT extract(epoch FROM lease_expires_at - clock_timestamp()) "
        f"FROM {schema}.background_jobs WHERE id = $1",
        job_id,
    )
    return None if left is None else float(left)


async def rows(
    pg: asyncpg.Connection, schema: str, ids: list[int]
) -> dict[int, tuple[object, ...]]:
    found = await pg.fetch(
        f"SELECT id, state::text, try_count, worker_id FROM {schema}.background_jobs "
        f"WHERE id = ANY($1)",
        ids,
    )
    return {r["id"]: (r["state"], r["try_count"], r["worker_id"]) for r in found}


async def test_a_running_row_locked_elsewhere_holds_up_no_other_lease(
    app: aqueue.App, dsn: str, pg: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone's open transaction locks the row of one running job for over two leases while
    a second app rescues expired leases every 0.3 s. The lease is the worker's, renewed on
    its workers row: the locked job's lease is extended like the others', nothing is
    rescued, no handler is cancelled, nothing is logged."""
    release = anyio.Event()
    cancelled: list[int] = []

    @app.job(payload=Task)
    async def long_job(payload: Task) -> None:
        try:
            await release.wait()
        except BaseException:
            cancelled.append(aqueue.current_job().id)
            raise

    caplog.set_level(logging.WARNING, logger="aqueue")
    locked_id, *other_ids = ids = await app.enqueue_many(long_job, [Task(), Task(), Task()])
    rescuer = aqueue.App(dsn, schema=schema)
    rescued: dict[int, str] = {}
    lease_s = 1.5
    settings = {
        "lease_s": lease_s,
        "heartbeat_s": 0.3,
        "maintenance_interval_s": 60.0,
        "poll_interval_s": 30.0,
    }
    try:
        rescue_store = await rescuer._get_store()
        async with app.worker(concurrency=3, **settings) as worker:
            await worker.wait_until(lambda s: s.running == 3)
            async with pg.transaction():
                await pg.execute(
                    f"SELECT 1 FROM {schema}.background_jobs WHERE id = $1 FOR UPDATE", locked_id
                )
                # Over twice the lease on the database clock, rescuing all along.
                deadline = await pg.fetchval("SELECT clock_timestamp() + interval '3.2 s'")
                while await pg.fetchval("SELECT clock_timestamp()") < deadline:
                    rescued |= await rescue_store.rescue("rescuer")
                    await anyio.sleep(0.3)
                during = await rows(pg, schema, ids)
                others_left_s = [await lease_left_s(pg, schema, i) for i in other_ids]
                locked_left_s = await lease_left_s(pg, schema, locked_id)
            rescued |= await rescue_store.rescue("rescuer")
            release.set()
            with anyio.fail_after(10):
                await worker.wait_idle()
            stats = worker.statistics()
    finally:
        await rescuer.close()
    assert rescued == {}
    assert cancelled == []
    assert during == dict.fromkeys(ids, ("running", 1, worker.worker_id))
    assert all(left is not None and left > 0 for left in others_left_s), others_left_s
    assert locked_left_s is not None
    assert locked_left_s > 0
    assert (stats.completed, stats.stale, stats.cancelled, stats.rescued) == (3, 0, 0, 0)
    assert await rows(pg, schema, ids) == dict.fromkeys(ids, ("completed", 1, worker.worker_id))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_a_row_locked_by_a_cancel_in_flight_is_unknown_until_it_commits(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """A transaction locks a running job's row over several beats, then cancels the job in
    that same transaction. Until it commits, beats see the attempt running (its handler left
    alone); the job's state after the commit is what the worker acts on: cancelled, not a
    lost lease."""
    release = anyio.Event()
    runs: list[int] = []

    @app.job(payload=Task)
    async def long_job(payload: Task) -> None:
        runs.append(aqueue.current_job().attempt)
        await release.wait()

    store = app._store
    assert isinstance(store, Store)

    async def listen_beats() -> int:
        return store.statistics().statements.get("heartbeat_listen", 0)

    job_id = await app.enqueue(long_job, Task())
    settings = {"lease_s": 1.0, "heartbeat_s": 0.2, "maintenance_interval_s": 60.0}
    async with app.worker(concurrency=1, **settings) as worker:
        await worker.wait_until(lambda s: s.running == 1)
        async with pg.transaction():
            await pg.execute(
                f"SELECT 1 FROM {schema}.background_jobs WHERE id = $1 FOR UPDATE", job_id
            )
            beats = await listen_beats()
            await eventually(listen_beats, lambda n: n >= beats + 3)
            # The cancel statement itself, in the locking transaction (its NOTIFY waits for
            # the commit).
            assert await pg.fetchval(store._sql["cancel"], job_id) == "running"
            beats = await listen_beats()
            await eventually(listen_beats, lambda n: n >= beats + 3)
            during = worker.statistics()
        with anyio.fail_after(10):
            stats = await worker.wait_until(lambda s: s.cancelled == 1)
    assert (during.running, during.cancelled, during.stale) == (1, 0, 0)
    assert (stats.stale, stats.completed) == (0, 0)
    assert runs == [1]
    assert await rows(pg, schema, [job_id]) == {job_id: ("cancelled", 1, None)}


async def test_beats_go_back_to_the_listen_connection_after_one_failed_there(
    app: aqueue.App, dsn: str, pg: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A table lock makes beats on the LISTEN connection time out (the ping, which reads no
    table, still answers). Every beat is bounded: the worker logs the timeouts and goes on.
    Once the lock is gone, beats run on the same LISTEN connection again, not on the pool."""
    release = anyio.Event()

    @app.job(payload=Task)
    async def long_job(payload: Task) -> None:
        await release.wait()

    store = app._store
    assert isinstance(store, Store)
    caplog.set_level(logging.INFO, logger="aqueue")
    settings = {
        "lease_s": 3.0,
        "heartbeat_s": 0.3,
        "maintenance_interval_s": 60.0,
        "poll_interval_s": 30.0,  # no keepalive ping but the ones a failed beat asks for
    }

    async def listen_backend() -> asyncpg.Record | None:
        return await pg.fetchrow(
            "SELECT query, state_change, wait_event_type FROM pg_stat_activity WHERE pid = $1",
            listen_pid,
        )

    async def listen_beats() -> int:
        return store.statistics().statements.get("heartbeat_listen", 0)

    locker = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    try:
        async with app.worker(concurrency=2, **settings) as worker:
            await worker.wait_ready()
            listening = worker._notifier.current
            assert listening is not None
            listen_pid = listening._conn.get_server_pid()
            await app.enqueue_many(long_job, [Task(), Task()])
            await worker.wait_until(lambda s: s.running == 2)
            await eventually(listen_backend, lambda r: r["query"].startswith("-- heartbeat"))
            async with locker.transaction():
                await locker.execute(f"LOCK TABLE {schema}.workers IN EXCLUSIVE MODE")
                # A beat on the LISTEN connection waits on the lock, then times out.
                await eventually(listen_backend, lambda r: r["wait_event_type"] == "Lock")
                await eventually(listen_backend, lambda r: r["wait_event_type"] != "Lock")
            released_at = await pg.fetchval("SELECT clock_timestamp()")
            # The same connection (not a new one) carries the beats again.
            await eventually(
                listen_backend,
                lambda r: (
                    r is not None
                    and r["query"].startswith("-- heartbeat")
                    and r["state_change"] > released_at
                ),
                timeout_s=5,
            )
            pooled = store.statistics().statements.get("heartbeat", 0)
            on_listen = await listen_beats()
            await eventually(listen_beats, lambda n: n >= on_listen + 5)
            assert store.statistics().statements.get("heartbeat", 0) == pooled
            release.set()
            with anyio.fail_after(10):
                stats = await worker.wait_until(lambda s: s.completed == 2)
    finally:
        await locker.close()
    assert (stats.stale, stats.cancelled) == (0, 0)
    log_lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("heartbeat_listen: no answer within 0.25 s; this heartbeat goes over")
        for line in log_lines
    ), caplog.text
    assert not any("listen: reconnected" in line for line in log_lines), caplog.text
