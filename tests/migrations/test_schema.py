"""The numbered migrations produce exactly the schema the SQLAlchemy metadata declares."""

from __future__ import annotations

import anyio
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import aqueue
from aqueue._store.sql import raw_migrations
from tests.helpers import sqlalchemy_dsn


async def describe(pg: asyncpg.Connection, schema: str) -> dict[str, object]:
    """Columns, indexes, constraints and types of a schema, with the schema name neutralized."""
    # Tables only: the view background_jobs is the migrations' alone (test below).
    columns = await pg.fetch(
        "SELECT c.table_name, column_name, data_type, udt_name, is_nullable, column_default, "
        "is_identity, identity_generation FROM information_schema.columns AS c "
        "JOIN information_schema.tables AS t USING (table_schema, table_name) "
        "WHERE table_schema = $1 AND t.table_type = 'BASE TABLE' "
        "ORDER BY c.table_name, ordinal_position",
        schema,
    )
    partitions = await pg.fetch(
        "SELECT c.relname, p.relname AS parent, pg_get_expr(c.relpartbound, c.oid) AS bound "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
        schema,
    )
    sequences = await pg.fetch(
        "SELECT sequence_name, data_type FROM information_schema.sequences "
        "WHERE sequence_schema = $1 ORDER BY 1",
        schema,
    )
    indexes = await pg.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname",
        schema,
    )
    constraints = await pg.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, c.contype, pg_get_constraintdef(c.oid) AS def "
        "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE n.nspname = $1 ORDER BY 1, 2, 3",
        schema,
    )
    enums = await pg.fetch(
        "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels "
        "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
        "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 GROUP BY 1",
        schema,
    )

    def neutral(value: object) -> object:
        return value.replace(schema, "<schema>") if isinstance(value, str) else value

    return {
        "columns": [tuple(neutral(v) for v in row.values()) for row in columns],
        "indexes": [tuple(neutral(v) for v in row.values()) for row in indexes],
        "constraints": [tuple(neutral(v) for v in row.values()) for row in constraints],
        "enums": [(row["typname"], list(row["labels"])) for row in enums],
        "partitions": [tuple(row.values()) for row in partitions],
        "sequences": [tuple(row.values()) for row in sequences],
    }


async def test_migrations_yield_the_declared_metadata(
    dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    declared = f"{schema}_md"
    app = aqueue.App(dsn, schema=schema)
    engine = create_async_engine(sqlalchemy_dsn(dsn))
    try:
        assert await app.migrate() == [m.version for m in raw_migrations()]
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"CREATE SCHEMA {declared}")
            await conn.run_sync(aqueue.make_metadata(declared).create_all)
        migrated = await describe(pg, schema)
        from_metadata = await describe(pg, declared)
        assert migrated["columns"], "no columns found"
        assert migrated == from_metadata
    finally:
        await pg.execute(f"DROP SCHEMA IF EXISTS {declared} CASCADE")
        await engine.dispose()
        await app.close()


async def test_migrate_is_idempotent_and_safe_to_run_concurrently(
    dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    apps = [aqueue.App(dsn, schema=schema) for _ in range(4)]
    results: list[list[int]] = []

    async def migrate(app: aqueue.App) -> None:
        results.append(await app.migrate())

    try:
        async with anyio.create_task_group() as tg:
            for app in apps:
                tg.start_soon(migrate, app)
        # Exactly one applied everything; the others found it done. All succeeded.
        assert sorted(results, key=len) == [[], [], [], [m.version for m in raw_migrations()]]
        assert await apps[0].migrate() == []
        versions = await pg.fetch(f"SELECT version FROM {schema}.aqueue_migrations")
        assert [r[0] for r in versions] == [m.version for m in raw_migrations()]
    finally:
        for app in apps:
            await app.close()


async def test_the_view_has_the_seed_columns_in_order_then_the_new_ones(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    columns = await pg.fetch(
        "SELECT column_name, data_type, column_default FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = 'background_jobs' ORDER BY ordinal_position",
        schema,
    )
    assert [(c[0], c[1]) for c in columns] == [
        ("id", "bigint"),
        ("job_type", "text"),
        ("queue", "text"),
        ("state", "USER-DEFINED"),
        ("queued", "timestamp with time zone"),
        ("next_attempt_after", "timestamp with time zone"),
        ("try_count", "integer"),
        ("max_tries", "integer"),
        ("priority", "integer"),
        ("payload", "bytea"),
        ("failure_info", "text"),
        ("worker_id", "text"),
        ("lease_expires_at", "timestamp with time zone"),
        # migration 0008: after the seed's columns
        ("started_at", "timestamp with time zone"),
        ("finished_at", "timestamp with time zone"),
        ("result", "bytea"),
    ]
    defaults = {c[0]: c[2] for c in columns if c[2] is not None}
    assert set(defaults) == {
        "id", "queue", "state", "queued", "next_attempt_after", "try_count", "max_tries",
        "priority",
    }  # fmt: skip


def test_metadata_default_schema() -> None:
    assert set(aqueue.metadata.tables) == {
        f"aqueue.{name}"
        for name in (
            "lanes",
            "jobs_ready",
            "jobs_delayed",
            "jobs_running",
            "jobs_done",
            "jobs_failed",
            "rings",
            "aqueue_migrations",
            "workers",
            "unique_keys",
            "job_limits",
            "awaited",
            "periodic",
        )
    }
    with pytest.raises(aqueue.ConfigurationError):
        aqueue.make_metadata("Bad-Name")
