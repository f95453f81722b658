"""Unique jobs: one waiting or running job per (job type, key), enforced by the database."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

import aqueue
from tests.helpers import sqlalchemy_dsn
from tests.integration.test_worker import state_of
from tests.payloads_pb2 import Task


async def rows_of(pg: asyncpg.Connection, schema: str, job_type: str) -> int:
    return int(
        await pg.fetchval(
            f"SELECT count(*) FROM {schema}.background_jobs WHERE job_type = $1", job_type
        )
    )


async def test_a_held_key_returns_the_existing_job_until_it_ends(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def sync_user(payload: Task) -> None:
        pass

    first = await app.enqueue(sync_user, Task(n=1), unique_key="user:42")
    again = await app.enqueue(sync_user, Task(n=2), unique_key="user:42", priority=99, delay=60)
    other = await app.enqueue(sync_user, Task(n=3), unique_key="user:43")
    assert isinstance(first, int)
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again == first
    assert other != first
    assert await rows_of(pg, schema, "sync_user") == 2
    # The duplicate's priority and delay were ignored: the first job is unchanged.
    row = await pg.fetchrow(
        f"SELECT priority, state::text, payload FROM {schema}.background_jobs WHERE id = $1",
        first,
    )
    assert (row["priority"], row["state"], Task.FromString(row["payload"]).n) == (10, "pending", 1)
    assert await app.drain() == 2
    # Ended: the key is free again.
    after = await app.enqueue(sync_user, Task(n=4), unique_key="user:42")
    assert not after.duplicate
    assert after != first


async def test_failed_and_cancelled_jobs_free_their_keys_and_none_means_no_key(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task, max_tries=1)
    async def once(payload: Task) -> None:
        raise RuntimeError("no")

    failing = await app.enqueue(once, Task(), unique_key="k")
    assert await app.drain() == 1
    assert (await state_of(pg, schema, failing))["state"] == "failed"
    cancelled = await app.enqueue(once, Task(), unique_key="k")
    assert not cancelled.duplicate
    assert await app.cancel(cancelled)
    fresh = await app.enqueue(once, Task(), unique_key="k")
    assert not fresh.duplicate
    unkeyed = [await app.enqueue(once, Task(), unique_key=None) for _ in range(2)]
    assert unkeyed[0] != unkeyed[1]
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.unique_keys") == 1


async def test_the_types_default_key_and_enqueue_many_with_duplicates(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task, unique_key=lambda task: f"label:{task.label}" if task.label else None)
    async def by_label(payload: Task) -> None:
        pass

    held = await app.enqueue(by_label, Task(label="a"))
    ids = await app.enqueue_many(
        by_label, [Task(label="a"), Task(label="b"), Task(label="b"), Task(), Task()]
    )
    assert [i.duplicate for i in ids] == [True, False, True, False, False]
    assert ids[0] == held
    assert ids[2] == ids[1]
    assert ids[3] != ids[4]
    assert await rows_of(pg, schema, "by_label") == 4
    explicit = await app.enqueue_many(
        by_label, [Task(label="a"), Task(label="c")], unique_keys=["label:c", None]
    )
    assert [i.duplicate for i in explicit] == [False, False]  # the given keys win
    with pytest.raises(ValueError, match="one per payload"):
        await app.enqueue_many(by_label, [Task()], unique_keys=["x", "y"])
    with pytest.raises(TypeError, match="unique key must be a str"):
        await app.enqueue(by_label, Task(), unique_key=42)  # type: ignore[arg-type]


async def test_in_the_callers_transaction_a_rollback_frees_the_key(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, dsn: str
) -> None:
    @app.job(payload=Task)
    async def report(payload: Task) -> None:
        pass

    conn = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    try:
        async with conn.transaction():
            inside = await app.enqueue(report, Task(), unique_key="daily", conn=conn)
            same = await app.enqueue(report, Task(), unique_key="daily", conn=conn)
            assert same == inside
            assert same.duplicate
        tx = conn.transaction()
        await tx.start()
        rolled_back = await app.enqueue(report, Task(), unique_key="monthly", conn=conn)
        await tx.rollback()
    finally:
        await conn.close()
    committed = await app.enqueue(report, Task(), unique_key="daily")
    assert committed.duplicate
    assert committed == inside
    monthly = await app.enqueue(report, Task(), unique_key="monthly")
    assert not monthly.duplicate
    assert monthly != rolled_back


async def test_concurrent_enqueues_of_one_key_from_many_connections_agree_on_one_job(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, dsn: str
) -> None:
    """20 connections enqueue the same key at once, each in a transaction held open a moment
    so they overlap: one job, and every caller gets its id."""

    @app.job(payload=Task)
    async def contended(payload: Task) -> None:
        pass

    got: list[aqueue.JobId] = []
    start = anyio.Event()
    connected = 0

    async def one() -> None:
        nonlocal connected
        conn = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
        try:
            connected += 1
            if connected == 20:
                start.set()  # all connected: enqueue together
            await start.wait()
            async with conn.transaction():
                got.append(await app.enqueue(contended, Task(), unique_key="one", conn=conn))
                await anyio.sleep(0.05)
        finally:
            await conn.close()

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert len(got) == 20
    assert len(set(got)) == 1
    assert sum(not i.duplicate for i in got) == 1
    assert await rows_of(pg, schema, "contended") == 1


async def test_a_key_left_by_a_job_deleted_through_the_view_is_taken_over(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def deleted(payload: Task) -> None:
        pass

    gone = await app.enqueue(deleted, Task(), unique_key="k")
    await pg.execute(f"DELETE FROM {schema}.background_jobs WHERE id = $1", gone)
    fresh = await app.enqueue(deleted, Task(), unique_key="k")
    assert not fresh.duplicate
    assert fresh != gone
    assert (await app.enqueue(deleted, Task(), unique_key="k")) == fresh


async def test_the_key_stays_held_through_retries_snoozes_and_hand_backs(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """Every move a waiting or running job makes keeps its key: a failed attempt waiting to
    retry, a snooze, a delayed job promoted. Only its end frees the key."""
    runs = 0
    third = anyio.Event()
    proceed = anyio.Event()

    @app.job(payload=Task, backoff=lambda attempt: 0)
    async def bumpy(payload: Task) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("first try fails")
        if runs == 2:
            raise aqueue.Snooze(0)
        third.set()
        await proceed.wait()

    job_id = await app.enqueue(bumpy, Task(), unique_key="k", delay=0.2)
    async with app.worker() as worker:
        with anyio.fail_after(20):
            await third.wait()  # failed once, snoozed once, running again
        assert (await app.enqueue(bumpy, Task(), unique_key="k")) == job_id
        proceed.set()
        with anyio.fail_after(20):
            await worker.wait_until(lambda s: s.completed == 1)
    assert (runs, (await state_of(pg, schema, job_id))["state"]) == (3, "completed")
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.unique_keys") == 0
    assert not (await app.enqueue(bumpy, Task(), unique_key="k")).duplicate
