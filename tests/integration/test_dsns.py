"""DSNs beyond ``postgresql://user@host:port/db``: several hosts tried in turn (the first one
dead here) and a Unix socket. Each carries everything aqueue opens: the pool, the worker's
LISTEN connection, the heartbeat thread's own connection and ``app.engine``. Built from the
test server itself, so they work against any server, the embedded one included."""

from __future__ import annotations

import logging
from urllib.parse import quote

import anyio
import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import aqueue
from tests.payloads_pb2 import Task

DEAD_HOST = "127.0.0.1:1"  # nothing listens on port 1: refused at once
DEAD_SOCKET_DIR = "/nonexistent-aqueue-socket-dir"


def _userinfo(dsn: str) -> tuple[str, str]:
    url = make_url(dsn)
    userinfo = quote(url.username or "", safe="")
    if url.password:
        userinfo += ":" + quote(str(url.password), safe="")
    return userinfo, url.database or "postgres"


@pytest.fixture
async def multi_host_dsn(dsn: str, pg: asyncpg.Connection) -> str:
    url = make_url(dsn)
    userinfo, database = _userinfo(dsn)
    if url.host:
        live = f"{url.host}:{url.port or 5432}"
        return (
            f"postgresql://{userinfo}@{DEAD_HOST},{live}/{database}?target_session_attrs=read-write"
        )
    # A server on Unix sockets only (the embedded one): libpq's query-string form of the
    # same, a socket directory where nothing listens first.
    directory = (await _socket_directories(pg))[0]
    port = await pg.fetchval("SHOW port")
    return (
        f"postgresql://{userinfo}@/{database}?host={DEAD_SOCKET_DIR},{quote(directory, safe='/')}"
        f"&port={port},{port}&target_session_attrs=read-write"
    )


async def _socket_directories(pg: asyncpg.Connection) -> list[str]:
    return [
        d.strip()
        for d in str(await pg.fetchval("SHOW unix_socket_directories")).split(",")
        if d.strip() and not d.strip().startswith("@")  # "@...": Linux's abstract namespace
    ]


@pytest.fixture
async def unix_socket_dsn(dsn: str, pg: asyncpg.Connection) -> str:
    directories = await _socket_directories(pg)
    if not directories:
        pytest.skip("the test server listens on no Unix socket (unix_socket_directories is empty)")
    port = await pg.fetchval("SHOW port")
    url = make_url(dsn)
    # libpq's form with no host at all: everything in the query string.
    query = f"host={quote(directories[0], safe='/')}&port={port}&user={quote(url.username or '')}"
    if url.password:
        query += f"&password={quote(str(url.password), safe='')}"
    return f"postgresql:///{url.database or 'postgres'}?{query}"


async def _everything_connects(
    dsn: str,
    schema: str,
    pg: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    *,
    over_socket: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="aqueue")
    # A long safety poll: within the deadline below, only the NOTIFY can wake the worker.
    app = aqueue.App(dsn, schema=schema, poll_interval_s=60.0, maintenance_interval_s=60.0)
    ran: list[int] = []

    @app.job(payload=Task)
    async def note(payload: Task) -> None:
        ran.append(aqueue.current_job().id)

    try:
        with anyio.fail_after(20):
            assert await app.migrate()
            first = await app.enqueue(note, Task(n=1))
            async with app.worker() as worker:
                await worker.wait_ready()
                await worker.wait_processed(1)
                second = await app.enqueue(note, Task(n=2))
                with anyio.fail_after(5):
                    await worker.wait_processed(2)
            assert ran == [first, second]
            assert app.engine is not None
            async with app.engine.connect() as conn:
                result = await conn.execute(text("SELECT inet_client_addr() IS NULL"))
                assert result.scalar_one() is over_socket  # no client address: a socket
            # What the heartbeat thread opens while the loop is blocked.
            store = await app._get_store()
            direct = await store.connect_direct(timeout_s=5)
            try:
                assert await direct.fetchval("SELECT inet_client_addr() IS NULL") is over_socket
            finally:
                await direct.close()
    finally:
        await app.close()
    states = await pg.fetch(f"SELECT state::text FROM {schema}.background_jobs")
    assert [r[0] for r in states] == ["completed", "completed"]
    assert any("using database postgresql://" in r.getMessage() for r in caplog.records)


async def test_a_multi_host_dsn_with_a_dead_first_host(
    multi_host_dsn: str, schema: str, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    over_socket = DEAD_SOCKET_DIR in multi_host_dsn  # a server without TCP (embedded)
    await _everything_connects(multi_host_dsn, schema, pg, caplog, over_socket=over_socket)
    dead = DEAD_SOCKET_DIR if over_socket else DEAD_HOST
    assert any(dead in r.getMessage() for r in caplog.records)  # the log line names both


async def test_a_unix_socket_dsn(
    unix_socket_dsn: str, schema: str, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    await _everything_connects(unix_socket_dsn, schema, pg, caplog, over_socket=True)
    assert any("?host=/" in r.getMessage() for r in caplog.records)
