"""One App used across event loops, as a module-level App is across pytest tests that each
get a fresh loop: whatever aqueue bound to the first loop (its asyncpg pool, the worker's
connection slots, the SQLAlchemy engine of ``app.engine``) is replaced on the next one."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy import text

import aqueue
from tests.helpers import sqlalchemy_dsn
from tests.payloads_pb2 import Task

# Each run's own deadline: a pool bound to a dead loop used to hang, not raise.
RUN_TIMEOUT_S = 20.0
BACKENDS: list[tuple[str, dict[str, Any]]] = [
    ("asyncio", {"debug": True}),
    ("asyncio", {}),
    ("asyncio", {"use_uvloop": True}),
    ("asyncio", {"debug": True}),
]


@pytest.fixture
def schema_dropped(dsn: str) -> Iterator[str]:
    schema = f"t_{secrets.token_hex(6)}"
    yield schema

    async def drop() -> None:
        conn = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()

    anyio.run(drop)


def test_one_app_across_event_loops(dsn: str, schema_dropped: str) -> None:
    """Like a module-level App in a pytest suite: each run enqueues and runs jobs, on a new
    loop (uvloop once), without closing the app in between."""
    app = aqueue.App(dsn, schema=schema_dropped, poll_interval_s=2.0)
    seen: list[int] = []

    @app.job(payload=Task)
    async def note(payload: Task) -> None:
        seen.append(payload.n)

    async def run(n: int) -> None:
        with anyio.fail_after(RUN_TIMEOUT_S):
            await app.migrate()
            await app.enqueue(note, Task(n=n))
            assert await app.drain() == 1
            # A worker too: LISTEN, the heartbeat thread, the connection slots.
            async with app.worker() as worker:
                await worker.wait_ready()
                await app.enqueue(note, Task(n=n + 1))
                await worker.wait_processed(1)

    for index, (backend, options) in enumerate(BACKENDS):
        anyio.run(run, index * 10, backend=backend, backend_options=options)
    assert seen == [n for index in range(len(BACKENDS)) for n in (index * 10, index * 10 + 1)]
    anyio.run(app.close)


def test_app_engine_across_event_loops(dsn: str, schema_dropped: str) -> None:
    """``app.engine`` made on one loop is replaced on the next (its pool belongs to the first)."""
    app = aqueue.App(dsn, schema=schema_dropped)

    @app.job(payload=Task)
    async def note(payload: Task) -> None: ...

    async def run(n: int) -> None:
        with anyio.fail_after(RUN_TIMEOUT_S):
            await app.migrate()
            assert app.engine is not None
            async with app.engine.begin() as conn:
                await app.enqueue(note, Task(n=n), conn=conn)
                assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
            assert await app.drain() == 1

    for index, (backend, options) in enumerate(BACKENDS):
        anyio.run(run, index, backend=backend, backend_options=options)
    anyio.run(app.close)
