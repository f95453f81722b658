"""Enqueue: rows, defaults, overrides, transactions, validation."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import aqueue
from tests.helpers import aqueue_backends, eventually, sqlalchemy_dsn
from tests.payloads_pb2 import Other, Task


async def rows(pg: asyncpg.Connection, schema: str) -> list[asyncpg.Record]:
    return await pg.fetch(
        f"SELECT id, job_type, queue, state::text AS state, priority, max_tries, try_count, "
        f"payload, failure_info, extract(epoch FROM next_attempt_after - queued) AS wait_s "
        f"FROM {schema}.background_jobs ORDER BY id"
    )


async def test_defaults_and_overrides(app: aqueue.App, pg: asyncpg.Connection, schema: str) -> None:
    @app.job(payload=Task)
    async def plain(payload: Task) -> None: ...

    @app.job(payload=Task, name="custom.name", queue="mail", priority=3, max_tries=2)
    async def custom(payload: Task) -> None: ...

    first = await app.enqueue(plain, Task(n=1))
    second = await app.enqueue(custom, Task(n=2))
    third = await app.enqueue(
        custom, Task(n=3), priority=50, max_tries=9, queue="other", delay=dt.timedelta(hours=1)
    )
    got = await rows(pg, schema)
    assert [r["id"] for r in got] == [first, second, third]
    assert (got[0]["job_type"], got[0]["queue"], got[0]["priority"], got[0]["max_tries"]) == (
        "plain",
        "default",
        10,
        5,
    )
    assert (got[1]["job_type"], got[1]["queue"], got[1]["priority"], got[1]["max_tries"]) == (
        "custom.name",
        "mail",
        3,
        2,
    )
    assert (got[2]["queue"], got[2]["priority"], got[2]["max_tries"]) == ("other", 50, 9)
    assert all(r["state"] == "pending" and r["try_count"] == 0 for r in got)
    assert got[0]["failure_info"] is None
    assert abs(got[0]["wait_s"]) < 0.5
    assert 3599 < got[2]["wait_s"] < 3601
    assert Task.FromString(got[1]["payload"]) == Task(n=2)


async def test_enqueue_by_name_of_unregistered_type(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    job_id = await app.enqueue("elsewhere.only", Other(text="hi"), priority=1)
    (row,) = await rows(pg, schema)
    assert row["id"] == job_id
    assert (row["job_type"], row["priority"], row["max_tries"]) == ("elsewhere.only", 1, 5)
    assert Other.FromString(row["payload"]).text == "hi"


async def test_run_at_uses_the_given_time(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    job_id = await app.enqueue("later", Task(), run_at=when)
    stored = await pg.fetchval(
        f"SELECT next_attempt_after FROM {schema}.background_jobs WHERE id = $1", job_id
    )
    assert stored == when


async def test_enqueue_many_one_statement_ids_in_order(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def many(payload: Task) -> None: ...

    ids = await app.enqueue_many(many, [Task(n=i) for i in range(500)], priority=7)
    assert len(ids) == 500
    assert ids == sorted(ids)
    got = await rows(pg, schema)
    assert [Task.FromString(r["payload"]).n for r in got] == list(range(500))
    assert {r["priority"] for r in got} == {7}
    assert await app.enqueue_many(many, []) == []
    assert app._store is not None
    assert app._store.statistics().statements["enqueue_many"] == 1


async def test_rollback_leaves_no_job_sqlalchemy_session(
    app: aqueue.App, dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    engine = create_async_engine(sqlalchemy_dsn(dsn))
    try:
        async with AsyncSession(engine) as session:
            async with session.begin():
                await session.execute(text(f"CREATE TABLE {schema}.orders (id int)"))
            async with session.begin():
                await session.execute(text(f"INSERT INTO {schema}.orders VALUES (1)"))
                await app.enqueue("ship", Task(n=1), conn=session)
                # Inside the transaction the job is there...
                count = await session.scalar(text(f"SELECT count(*) FROM {schema}.background_jobs"))
                assert count == 1
                await session.rollback()
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 0
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.orders") == 0

        async with AsyncSession(engine) as session, session.begin():
            await session.execute(text(f"INSERT INTO {schema}.orders VALUES (2)"))
            await app.enqueue("ship", Task(n=2), conn=session)
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 1
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.orders") == 1
    finally:
        await engine.dispose()


async def test_sqlalchemy_connection_not_yet_begun_joins_its_transaction(
    app: aqueue.App, dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    engine = create_async_engine(sqlalchemy_dsn(dsn))
    try:
        async with engine.connect() as conn:
            # No statement ran yet: SQLAlchemy begins lazily. The job must still be inside
            # the transaction SQLAlchemy begins, not autocommitted on its own.
            await app.enqueue_many("ship", [Task(n=1), Task(n=2)], conn=conn)
            await conn.rollback()
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 0
    finally:
        await engine.dispose()


async def test_uncommitted_job_is_invisible_to_workers_asyncpg(
    app: aqueue.App, dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    ran: list[int] = []

    @app.job(payload=Task)
    async def visible(payload: Task) -> None:
        ran.append(payload.n)

    producer = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    try:
        tx = producer.transaction()
        await tx.start()
        await app.enqueue(visible, Task(n=1), conn=producer)
        assert await app.drain() == 0  # not committed: no worker can see it
        await tx.rollback()
        assert await app.drain() == 0
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 0

        async with producer.transaction():
            await app.enqueue(visible, Task(n=2), conn=producer)
        assert await app.drain() == 1
        assert ran == [2]
    finally:
        await producer.close()


async def test_bad_input_is_refused_before_any_sql(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def strict(payload: Task) -> None: ...

    with pytest.raises(TypeError, match=r"takes aqueue\.tests\.v1\.Task"):
        await app.enqueue(strict, Other(text="wrong type"))  # type: ignore[arg-type]
    with pytest.raises(aqueue.PayloadError):
        await app.enqueue("strict", Other())
    with pytest.raises(TypeError, match="protobuf message"):
        await app.enqueue("unregistered", b"raw bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tries"):
        await app.enqueue(strict, Task(), max_tries=0)
    with pytest.raises(ValueError, match="not both"):
        await app.enqueue(strict, Task(), delay=1, run_at=dt.datetime.now(dt.UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        await app.enqueue(strict, Task(), run_at=dt.datetime.now())
    with pytest.raises(ValueError, match="delay"):
        await app.enqueue(strict, Task(), delay=-1)
    with pytest.raises(TypeError, match="priority"):
        await app.enqueue(strict, Task(), priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(aqueue.ConfigurationError, match="queue name"):
        await app.enqueue(strict, Task(), queue="bad queue; drop table")
    with pytest.raises(aqueue.ConfigurationError, match="job type"):
        await app.enqueue("", Task())
    with pytest.raises(TypeError, match="conn must be"):
        await app.enqueue(strict, Task(), conn=object())
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 0


async def test_app_shares_a_given_engine_and_never_disposes_it(
    dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    # The SQLAlchemy spelling of the DSN, as an application would have it.
    engine = create_async_engine(sqlalchemy_dsn(dsn))
    try:
        async with aqueue.App(engine=engine, schema=schema) as app:
            await app.migrate()
            assert app.engine is engine

            @app.job(payload=Task)
            async def shared(payload: Task) -> None: ...

            await app.enqueue(shared, Task())
            assert await app.drain() == 1
        # Still usable after the app closed.
        async with engine.connect() as conn:
            result = await conn.exec_driver_sql(f"SELECT state::text FROM {schema}.background_jobs")
            assert result.scalar_one() == "completed"
    finally:
        await engine.dispose()
    with pytest.raises(aqueue.ConfigurationError, match="not both"):
        aqueue.App(sqlalchemy_dsn(dsn), engine=engine)


async def test_enqueue_right_after_the_server_closed_pooled_connections(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """A pooled connection that has read the server's goodbye but not yet the end of its
    socket refuses statements; enqueue takes a fresh one instead of failing (the race
    loses about every other round, so 20 rounds catch a regression)."""

    @app.job(payload=Task)
    async def noop(payload: Task) -> None: ...

    for n in range(20):
        await app.enqueue(noop, Task(n=n))
        await pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'aqueue'"
        )
        await eventually(lambda: aqueue_backends(pg), lambda count: count == 0, timeout_s=5)
        await app.enqueue(noop, Task(n=n))
    got = await rows(pg, schema)
    assert len(got) == 40
