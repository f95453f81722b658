"""background_jobs is a view over the per-state tables; what people do with the table keeps
working through it: enqueue with an SQL INSERT (from a trigger too), an operator's UPDATE of
a waiting job's next_attempt_after or priority, a cancel by UPDATE, a DELETE."""

from __future__ import annotations

import time

import anyio
import asyncpg
import pytest

import aqueue
from tests.payloads_pb2 import Task


async def state_of(pg: asyncpg.Connection, schema: str, job_id: int) -> dict[str, object]:
    row = await pg.fetchrow(f"SELECT * FROM {schema}.background_jobs WHERE id = $1", job_id)
    assert row is not None
    return {**row, "state": str(row["state"])}


async def test_an_sql_insert_enqueues_and_wakes_an_idle_worker(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    seen: list[tuple[str, int]] = []
    done = anyio.Event()

    @app.job(payload=Task)
    async def from_sql(payload: Task) -> None:
        info = aqueue.current_job()
        seen.append((payload.label, info.attempt))
        done.set()

    payload = Task(label="sql").SerializeToString()
    # A long safety poll: only the NOTIFY sent at the insert's commit can wake it this fast.
    async with app.worker(poll_interval_s=60) as worker:
        await worker.wait_idle()
        async with pg.transaction():
            job_id = await pg.fetchval(
                f"INSERT INTO {schema}.background_jobs (job_type, payload, queue, priority, "
                "max_tries) VALUES ('from_sql', $1, 'default', 30, 2) RETURNING id",
                payload,
            )
            row = await state_of(pg, schema, job_id)  # visible in its own transaction
            assert (row["state"], row["try_count"], row["priority"]) == ("pending", 0, 30)
        t0 = time.perf_counter()
        with anyio.fail_after(5):
            await done.wait()
        assert time.perf_counter() - t0 < 2.0  # not the 60 s poll
        await worker.wait_until(lambda s: s.completed == 1)
    assert seen == [("sql", 1)]
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["max_tries"]) == ("completed", 2)


async def test_an_insert_with_a_future_due_time_waits_and_a_rolled_back_one_is_gone(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    payload = Task().SerializeToString()
    later = await pg.fetchval(
        f"INSERT INTO {schema}.background_jobs (job_type, payload, next_attempt_after) "
        "VALUES ('noop', $1, now() + interval '1 hour') RETURNING id",
        payload,
    )
    tx = pg.transaction()
    await tx.start()
    await pg.execute(
        f"INSERT INTO {schema}.background_jobs (job_type, payload) VALUES ('noop', $1)", payload
    )
    await tx.rollback()
    rows = await pg.fetch(f"SELECT id, state::text FROM {schema}.background_jobs")
    assert [tuple(r) for r in rows] == [(later, "pending")]
    assert await app.drain() == 0  # not due
    with pytest.raises(asyncpg.NotNullViolationError, match="needs job_type and payload"):
        await pg.execute(f"INSERT INTO {schema}.background_jobs (job_type) VALUES ('noop')")


async def test_a_trigger_on_the_users_table_enqueues_in_the_same_transaction(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    labels: list[str] = []

    @app.job(payload=Task)
    async def on_order(payload: Task) -> None:
        labels.append(payload.label)

    # Task field 2 (label) = the order's name: a hand-built protobuf, as another language would.
    await pg.execute(
        f"""CREATE TABLE {schema}.orders (name text NOT NULL);
        CREATE FUNCTION {schema}.order_placed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {schema}.background_jobs (job_type, payload)
            VALUES ('on_order', '\\x12'::bytea || set_byte('\\x00'::bytea, 0,
                    octet_length(NEW.name)) || convert_to(NEW.name, 'UTF8'));
            RETURN NEW;
        END $$;
        CREATE TRIGGER order_placed AFTER INSERT ON {schema}.orders
            FOR EACH ROW EXECUTE FUNCTION {schema}.order_placed();"""
    )
    await pg.execute(f"INSERT INTO {schema}.orders VALUES ('first'), ('second')")
    async with pg.transaction():
        await pg.execute(f"INSERT INTO {schema}.orders VALUES ('kept')")
    tx = pg.transaction()
    await tx.start()
    await pg.execute(f"INSERT INTO {schema}.orders VALUES ('rolled back')")
    await tx.rollback()
    assert await app.drain() == 3
    assert sorted(labels) == ["first", "kept", "second"]


async def test_an_operators_update_of_a_waiting_job_takes_effect(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    order: list[str] = []
    ran = anyio.Event()

    @app.job(payload=Task)
    async def ordered(payload: Task) -> None:
        order.append(payload.label)
        ran.set()

    later = await app.enqueue(ordered, Task(label="later"), delay=3600)
    async with app.worker(poll_interval_s=60, concurrency=1) as worker:
        await worker.wait_idle()
        # "Run it now": it becomes due, and the worker is woken for it.
        updated = await pg.execute(
            f"UPDATE {schema}.background_jobs SET next_attempt_after = now() WHERE id = $1", later
        )
        assert updated == "UPDATE 1"
        with anyio.fail_after(5):
            await ran.wait()
        await worker.wait_until(lambda s: s.completed == 1)
    # Priority: the last enqueued, raised, runs first.
    _first, second = await app.enqueue_many(ordered, [Task(label="a"), Task(label="b")])
    await pg.execute(f"UPDATE {schema}.background_jobs SET priority = 50 WHERE id = $1", second)
    assert await app.drain(concurrency=1) == 2
    assert order == ["later", "b", "a"]
    row = await state_of(pg, schema, second)
    assert (row["state"], row["priority"]) == ("completed", 50)


async def test_updates_that_cannot_be_done_say_why_and_change_nothing(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    started = anyio.Event()

    @app.job(payload=Task)
    async def slow(payload: Task) -> None:
        started.set()
        await anyio.sleep_forever()

    waiting = await app.enqueue(slow, Task(), delay=3600)
    with pytest.raises(asyncpg.FeatureNotSupportedError, match="cannot be updated"):
        await pg.execute(
            f"UPDATE {schema}.background_jobs SET try_count = 3 WHERE id = $1", waiting
        )
    async with app.worker(concurrency=1) as worker:
        running = await app.enqueue(slow, Task())
        await started.wait()
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="is running"):
            await pg.execute(
                f"UPDATE {schema}.background_jobs SET priority = 1 WHERE id = $1", running
            )
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="cancel it"):
            await pg.execute(f"DELETE FROM {schema}.background_jobs WHERE id = $1", running)
        # SET state = 'cancelled' is a cancel: the running handler is told.
        await pg.execute(
            f"UPDATE {schema}.background_jobs SET state = 'cancelled' WHERE id = $1", running
        )
        with anyio.fail_after(5):
            await worker.wait_until(lambda s: s.cancelled == 1 and s.running == 0)
    assert (await state_of(pg, schema, running))["state"] == "cancelled"
    row = await state_of(pg, schema, waiting)
    assert (row["state"], row["try_count"]) == ("pending", 0)
    assert await pg.execute(f"DELETE FROM {schema}.background_jobs WHERE id = $1", waiting) == (
        "DELETE 1"
    )
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 1


async def test_a_job_committed_behind_the_cursor_is_claimed_when_it_commits(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """A transaction takes its job's place in the lane (its seq) first and commits last: the
    worker has read past that place meanwhile. The commit's NOTIFY names the place, and the
    worker goes back for it at once (not at its 30 s sweep, nor its 60 s poll)."""
    ran: list[str] = []
    both = anyio.Event()

    @app.job(payload=Task)
    async def late(payload: Task) -> None:
        ran.append(payload.label)
        if len(ran) == 3:
            both.set()

    async with app.worker(poll_interval_s=60) as worker:
        # The lane exists first: a transaction enqueueing the first job of a new (job_type,
        # queue, priority) holds up other enqueues of it until it commits.
        await app.enqueue(late, Task(label="first"))
        await worker.wait_until(lambda s: s.completed == 1)
        tx = pg.transaction()
        await tx.start()
        await pg.execute(
            f"INSERT INTO {schema}.background_jobs (job_type, payload) VALUES ('late', $1)",
            Task(label="slow tx").SerializeToString(),
        )
        await app.enqueue(late, Task(label="fast"))  # a later seq, committed first
        await worker.wait_until(lambda s: s.completed == 2)
        await tx.commit()
        t0 = time.perf_counter()
        with anyio.fail_after(10):
            await both.wait()
        assert time.perf_counter() - t0 < 5.0
    assert ran == ["first", "fast", "slow tx"]


async def test_a_job_behind_the_cursor_whose_notify_was_lost_is_found_by_maintenance(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row appears behind the worker's cursor with no NOTIFY (triggers off, as if the
    notification were lost): no claim would read it, and the 60 s poll does not help; the
    maintenance's look-behind finds it and moves the cursor back."""
    from aqueue._runtime import maintenance

    monkeypatch.setattr(maintenance, "LOOK_BEHIND_INTERVAL_S", 0.2)
    ran: list[str] = []
    done = anyio.Event()

    @app.job(payload=Task)
    async def hidden(payload: Task) -> None:
        ran.append(payload.label)
        if payload.label == "hidden":
            done.set()

    async with app.worker(poll_interval_s=60, maintenance_interval_s=0.1) as worker:
        await app.enqueue(hidden, Task(label="first"))  # the lane exists, the cursor past it
        await worker.wait_until(lambda s: s.completed == 1)
        async with pg.transaction():
            await pg.execute("SET LOCAL session_replication_role = replica")  # no triggers
            await pg.execute(
                f"""INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued,
                    next_attempt_after, try_count, max_tries, priority, payload, lane_id, seq)
                SELECT nextval('{schema}.job_id_seq'), 'hidden', 'default', 'pending', now(),
                       now(), 0, 5, 10, $1, lane_id, 0
                FROM {schema}.lanes WHERE job_type = 'hidden'""",
                Task(label="hidden").SerializeToString(),
            )
        with anyio.fail_after(10):
            await done.wait()
    assert ran == ["first", "hidden"]
