"""The whole path of a job on whatever versions of the dependencies are installed:
``nox -s tests_lowest`` runs this file with the LOWEST version that pyproject.toml allows of
each direct dependency, so the lower bounds are tested, not guessed. (It runs in the normal
suite too.)

The payloads are message types that ship with protobuf itself (``google.protobuf``'s
well-known types), never the committed ``*_pb2.py``: those were generated for the protobuf
the ``test`` extra pins and refuse to load under an older runtime."""

from __future__ import annotations

import anyio
import asyncpg
import pytest
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import StringValue
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import aqueue
from tests.helpers import sqlalchemy_dsn

pytestmark = pytest.mark.anyio  # also without anyio_mode = "auto" (newer anyio only)


async def jobs(pg: asyncpg.Connection, schema: str) -> list[asyncpg.Record]:
    return await pg.fetch(
        f"SELECT id, job_type, state::text AS state, try_count, failure_info, payload "
        f"FROM {schema}.background_jobs ORDER BY id"
    )


async def test_enqueue_plain_and_in_callers_transactions_then_drain(
    app: aqueue.App, dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    seen: list[tuple[str, object]] = []

    @app.job(payload=StringValue)
    async def say(payload: StringValue) -> None:
        seen.append(("say", payload.value))

    @app.job(payload=Struct, queue="structs")
    async def record(payload: Struct) -> None:
        seen.append(("record", dict(payload)))

    @app.job(payload=Timestamp)
    async def stamp(payload: Timestamp) -> None:
        seen.append(("stamp", (payload.seconds, payload.nanos)))

    # Plain: committed when enqueue returns.
    plain = await app.enqueue(say, StringValue(value="héllo ✓"))
    many = await app.enqueue_many(stamp, [Timestamp(seconds=s, nanos=7) for s in (1, 2)])

    # In the caller's asyncpg transaction: rolled back, then committed.
    conn = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE TABLE {schema}.orders (id int)")
        rolled_back = conn.transaction()
        await rolled_back.start()
        await conn.execute(f"INSERT INTO {schema}.orders VALUES (1)")
        await app.enqueue(say, StringValue(value="never"), conn=conn)
        await rolled_back.rollback()
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {schema}.orders VALUES (2)")
            in_asyncpg = await app.enqueue(say, StringValue(value="asyncpg"), conn=conn)
    finally:
        await conn.close()

    # In a SQLAlchemy AsyncSession: rolled back, then committed.
    fields = Struct()
    fields.update({"user": "ada", "n": 3.0, "tags": ["a", "b"]})
    engine = create_async_engine(sqlalchemy_dsn(dsn))
    try:
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(text(f"INSERT INTO {schema}.orders VALUES (3)"))
            await app.enqueue(record, fields, conn=session)
            await session.rollback()
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(text(f"INSERT INTO {schema}.orders VALUES (4)"))
            in_session = await app.enqueue(record, fields, conn=session)
    finally:
        await engine.dispose()

    assert await pg.fetchval(f"SELECT array_agg(id ORDER BY id) FROM {schema}.orders") == [2, 4]
    rows = await jobs(pg, schema)
    assert [r["id"] for r in rows] == [plain, *many, in_asyncpg, in_session]
    assert StringValue.FromString(rows[0]["payload"]) == StringValue(value="héllo ✓")

    assert await app.drain(concurrency=2) == 5
    assert sorted(seen, key=repr) == sorted(
        [
            ("say", "héllo ✓"),
            ("say", "asyncpg"),
            ("stamp", (1, 7)),
            ("stamp", (2, 7)),
            ("record", {"user": "ada", "n": 3.0, "tags": fields["tags"]}),
        ],
        key=repr,
    )
    assert {(r["state"], r["try_count"]) for r in await jobs(pg, schema)} == {("completed", 1)}
    assert await app.drain() == 0


async def test_worker_wakes_on_notify_fails_with_failure_info_and_retries(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    attempts: list[int] = []

    @app.job(payload=StringValue, max_tries=3)
    async def flaky(payload: StringValue) -> None:
        attempts.append(aqueue.current_job().attempt)
        if len(attempts) == 1:
            raise ValueError(f"boom {payload.value}")

    # A safety poll of a minute: only the NOTIFY of the commit can wake the worker in time.
    async with app.worker(concurrency=2, poll_interval_s=60) as worker:
        await worker.wait_ready()
        job_id = await app.enqueue(flaky, StringValue(value="first"))
        with anyio.fail_after(10):
            stats = await worker.wait_until(lambda s: s.errored == 1)
        assert stats.notifications >= 1
        row = (await jobs(pg, schema))[0]
        assert (row["id"], row["state"], row["try_count"]) == (job_id, "error", 1)
        assert "ValueError: boom first" in row["failure_info"]
        assert "Traceback (most recent call last)" in row["failure_info"]

        # The retry, made due now the way an operator would ("retry now"); the next enqueue's
        # NOTIFY wakes the worker, which claims both.
        await pg.execute(
            f"UPDATE {schema}.background_jobs SET next_attempt_after = now() WHERE state = 'error'"
        )
        await app.enqueue(flaky, StringValue(value="second"))
        with anyio.fail_after(10):
            stats = await worker.wait_until(lambda s: s.completed == 2)
        assert stats.notifications >= 2
    assert sorted(attempts) == [1, 1, 2]
    rows = await jobs(pg, schema)
    assert [(r["state"], r["try_count"]) for r in rows] == [("completed", 2), ("completed", 1)]
    assert rows[0]["id"] == job_id


async def test_undecodable_payload_fails_at_once_and_the_rest_runs(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    seen: list[str] = []

    @app.job(payload=StringValue, max_tries=5)
    async def decode_me(payload: StringValue) -> None:
        seen.append(payload.value)

    bad = await pg.fetchval(
        f"INSERT INTO {schema}.background_jobs (job_type, payload) "
        f"VALUES ('decode_me', '\\xffffffff'::bytea) RETURNING id"
    )
    await app.enqueue(decode_me, StringValue(value="good"))
    assert await app.drain() == 2
    rows = {r["id"]: r for r in await jobs(pg, schema)}
    assert (rows[bad]["state"], rows[bad]["try_count"]) == ("failed", 1)
    assert "does not decode as google.protobuf.StringValue" in rows[bad]["failure_info"]
    assert seen == ["good"]


async def test_cron_ticks_in_a_time_zone_step_through_a_dst_change(app: aqueue.App) -> None:
    """The lowest cronsim (reverse=, aware datetimes) and the time zone database."""
    import datetime as dt

    @app.job(payload=StringValue)
    async def report(payload: StringValue) -> None: ...

    entry = app.periodic(report, cron="30 2 * * *", tz="Europe/Berlin")
    # 2026-03-29: clocks go from 02:00 to 03:00 in Berlin; 02:30 does not exist that day.
    before = dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC)
    assert entry.next_tick(before) == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)
    after = dt.datetime(2026, 3, 29, 12, tzinfo=dt.UTC)
    assert entry.latest_tick(after) == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)
    assert entry.next_tick(after) == dt.datetime(2026, 3, 30, 0, 30, tzinfo=dt.UTC)
