"""The examples run as documented, each against its own fresh database."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from aqueue._store.sql import raw_migrations
from tests.helpers import ROOT, WorkerProcess, eventually, sqlalchemy_dsn


@pytest.fixture
async def fresh_db(dsn: str) -> AsyncIterator[str]:
    """A new, empty database on the test server; its DSN (postgresql://)."""
    name = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        url = make_url(sqlalchemy_dsn(dsn, driver=None)).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


def run(
    args: list[str], env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


async def test_quickstart(fresh_db: str) -> None:
    done = await anyio.to_thread.run_sync(
        lambda: run(["-m", "examples.quickstart"], {"AQUEUE_DSN": fresh_db})
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("Ada", "Grace", "Linus", "you, a second later"):
        assert f"hello, {name}!" in done.stdout
    assert "ran 4 job(s): 4 completed, 0 failed" in done.stdout


async def test_producer_and_worker_processes(fresh_db: str, tmp_path: Path) -> None:
    env = {"AQUEUE_DSN": fresh_db}
    migrated = await anyio.to_thread.run_sync(
        lambda: run(["-m", "aqueue", "migrate", "--app", "examples.mail:app"], env)
    )
    assert migrated.returncode == 0, migrated.stderr
    every = [m.version for m in raw_migrations()]
    assert f"applied {every}" in migrated.stdout
    again = await anyio.to_thread.run_sync(
        lambda: run(["-m", "aqueue", "migrate", "--app", "examples.mail:app"], env)
    )
    assert "nothing (up to date)" in again.stdout

    worker = WorkerProcess(tmp_path / "worker.log", env, "--queue", "mail", app="examples.mail:app")
    try:
        await worker.wait_started()
        produced = await anyio.to_thread.run_sync(
            lambda: run(["-m", "examples.producer", "25"], env)
        )
        assert produced.returncode == 0, produced.stderr
        assert "enqueued 25 job(s)" in produced.stdout
        pg = await asyncpg.connect(fresh_db)
        try:

            async def completed() -> int:
                return int(
                    await pg.fetchval(
                        "SELECT count(*) FROM aqueue.background_jobs WHERE state = 'completed'"
                    )
                )

            await eventually(completed, lambda n: n == 25)
        finally:
            await pg.close()
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0
        assert "sent 'Welcome!' to user24@example.com" in worker.output()
    finally:
        worker.kill()


async def test_worker_in_a_starlette_lifespan(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AQUEUE_DSN", fresh_db)
    from examples import mail, starlette_app

    async with starlette_app.lifespan(starlette_app.web):
        status, body = await asgi_post(starlette_app.web, "/signup", "email=ada@example.com")
        assert status == 200, body
        job_id = json.loads(body)["queued"]
        pg = await asyncpg.connect(fresh_db)
        try:

            async def state() -> str:
                return str(
                    await pg.fetchval(
                        "SELECT state::text FROM aqueue.background_jobs WHERE id = $1", job_id
                    )
                )

            # The worker running inside the lifespan picked it up.
            await eventually(state, lambda s: s == "completed")
        finally:
            await pg.close()
    assert mail.app.engine is None  # the lifespan closed the app


async def asgi_post(asgi: object, path: str, query: str) -> tuple[int, bytes]:
    """One POST through the ASGI interface, no server and no HTTP client needed."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [],
        "server": ("test", 80),
        "client": ("test", 1234),
    }
    await asgi(scope, receive, send)  # type: ignore[operator]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")  # type: ignore[misc]
    return int(status), body  # type: ignore[call-overload]


async def test_flow(fresh_db: str) -> None:
    done = await anyio.to_thread.run_sync(
        lambda: run(["-m", "examples.flow"], {"AQUEUE_DSN": fresh_db})
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "duplicate=True" in out
    assert out.count("synced ada") == 1
    mailed = [
        float(line.rsplit(" at ", 1)[1].split()[0])
        for line in out.splitlines()
        if line.startswith("mailed")
    ]
    assert len(mailed) == 10  # 8 + the snoozed one + the retried one; "nobody" discarded
    # 5 a second: the 10 mails (and the discarded attempt, and the retried first try)
    # cannot all start within the first second.
    assert max(mailed) - min(mailed) >= 1.0
    assert "completed 11, failed 1, retried 1, snoozed 1" in out  # the sync and 10 mails
    assert "raised ValueError; discarded" in done.stderr  # its final failure, logged


async def test_lifecycle(fresh_db: str) -> None:
    done = await anyio.to_thread.run_sync(
        lambda: run(["-m", "examples.lifecycle"], {"AQUEUE_DSN": fresh_db})
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "result: ADA" in out  # app.result, decoded
    assert "failed: RuntimeError: cannot greet bob" in out  # JobFailed.failure_info
    assert "REPORT job 2 failed for good: RuntimeError('cannot greet bob')" in out  # the hook
    assert out.count("tick\n") >= 2  # the periodic entry, one job per second
    assert "shout job 1 took" in out  # the middleware
    assert 'job 1: completed, result name: "ADA"' in out  # get_job
    assert "failed jobs: [2]" in out  # list_jobs
    assert "retried job 2: True" in out  # retry
    waiting = int(out.split("waiting now: ")[1].split()[0])
    assert waiting >= 1  # stats: the retried job (and a tick the worker left, if any)
