"""A worker (and drain) refuses a schema that is not at this aqueue's migration, and enqueue
on an unmigrated schema says to migrate."""

from __future__ import annotations

import anyio
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import aqueue
from aqueue._store.sql import raw_migrations
from tests.helpers import sqlalchemy_dsn
from tests.payloads_pb2 import Task

LATEST = raw_migrations()[-1].version
MIGRATE = "run `python -m aqueue migrate --app <module:attribute>` (or `await app.migrate()`)"


def with_handler(app: aqueue.App) -> aqueue.App:
    @app.job(payload=Task)
    async def noop(payload: Task) -> None: ...

    return app


async def refused(app: aqueue.App) -> tuple[str, str]:
    """The SchemaError messages of starting a worker and of draining."""
    with anyio.fail_after(10):
        with pytest.raises(aqueue.SchemaError) as started:
            async with app.worker():
                pass
        with pytest.raises(aqueue.SchemaError) as drained:
            await app.drain()
    return str(started.value), str(drained.value)


async def test_missing_schema_is_refused_naming_migrate(
    dsn: str, schema: str, pg: asyncpg.Connection
) -> None:
    async with with_handler(aqueue.App(dsn, schema=schema)) as app:
        started, drained = await refused(app)
    assert started == f"worker: schema '{schema}' has no aqueue tables: {MIGRATE}"
    assert drained == f"drain: schema '{schema}' has no aqueue tables: {MIGRATE}"
    assert "\n" not in started
    # Looking did not create anything.
    assert await pg.fetchval("SELECT to_regnamespace($1)", schema) is None


async def test_older_schema_is_refused_naming_both_versions(
    app: aqueue.App, schema: str, pg: asyncpg.Connection
) -> None:
    await pg.execute(f"DELETE FROM {schema}.aqueue_migrations WHERE version = {LATEST}")
    started, drained = await refused(with_handler(app))
    expected = f"schema '{schema}' is at migration {LATEST - 1}, this aqueue needs {LATEST}"
    assert started == f"worker: {expected}: {MIGRATE}"
    assert drained == f"drain: {expected}: {MIGRATE}"


async def test_newer_schema_is_refused(
    app: aqueue.App, schema: str, pg: asyncpg.Connection
) -> None:
    await pg.execute(
        f"INSERT INTO {schema}.aqueue_migrations (version, name) VALUES ({LATEST + 1}, 'future')"
    )
    job_id = await app.enqueue("noop", Task())
    started, _ = await refused(with_handler(app))
    assert started == (
        f"worker: the database schema is at version {LATEST + 1}, newer than this aqueue "
        f"({LATEST}): upgrade aqueue on this host"
    )
    # Refused: nothing ran.
    state = await pg.fetchval(
        f"SELECT state::text FROM {schema}.background_jobs WHERE id = $1", job_id
    )
    assert state == "pending"


async def test_a_migrated_schema_starts(app: aqueue.App) -> None:
    with_handler(app)
    await app.enqueue("noop", Task())
    assert await app.drain() == 1


@pytest.mark.parametrize("create_schema", [False, True], ids=["no-schema", "empty-schema"])
async def test_enqueue_on_an_unmigrated_schema_says_to_migrate(
    dsn: str, schema: str, pg: asyncpg.Connection, create_schema: bool
) -> None:
    if create_schema:
        await pg.execute(f"CREATE SCHEMA {schema}")
    async with aqueue.App(dsn, schema=schema) as app:
        for call in (
            lambda: app.enqueue("noop", Task()),
            lambda: app.enqueue_many("noop", [Task(), Task()]),
        ):
            with pytest.raises(aqueue.SchemaError) as info:
                await call()
            assert isinstance(info.value, aqueue.DatabaseError)
            assert f"schema '{schema}' has no aqueue tables, or misses some" in str(info.value)
            assert str(info.value).endswith(MIGRATE)
            assert "\n" not in str(info.value)
            # enqueue inserts into the schema's jobs_ready, enqueue_many calls its enqueue
            # function: missing, or their schema is
            assert isinstance(
                info.value.__cause__,
                asyncpg.UndefinedTableError
                | asyncpg.UndefinedFunctionError
                | asyncpg.InvalidSchemaNameError,
            )


async def test_enqueue_on_the_callers_connection_says_to_migrate(
    dsn: str, schema: str, pg: asyncpg.Connection
) -> None:
    engine = create_async_engine(sqlalchemy_dsn(dsn))
    try:
        async with aqueue.App(dsn, schema=schema) as app:
            async with engine.connect() as sa_conn, sa_conn.begin():
                with pytest.raises(aqueue.SchemaError, match="python -m aqueue migrate") as info:
                    await app.enqueue("noop", Task(), conn=sa_conn)
                assert "\n" not in str(info.value)  # SQLAlchemy's [SQL: ...] lines left out
            with pytest.raises(aqueue.SchemaError, match="python -m aqueue migrate"):
                await app.enqueue("noop", Task(), conn=pg)
    finally:
        await engine.dispose()
