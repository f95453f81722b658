"""A password given as ``?password=`` never reaches failure_info, however short it is."""

from __future__ import annotations

from urllib.parse import quote

import asyncpg
from sqlalchemy.engine import make_url

import aqueue
from tests.helpers import sqlalchemy_dsn
from tests.integration.test_worker import state_of
from tests.payloads_pb2 import Task


async def test_a_query_string_password_never_reaches_failure_info(
    dsn: str, schema: str, pg: asyncpg.Connection
) -> None:
    url = make_url(sqlalchemy_dsn(dsn, driver=None))
    # The server's own password when it has one (moved to the query string), else a canary
    # the trusting test server ignores. Short, so only its place in the DSN gives it away.
    password = str(url.password) if url.password else "Cn-7f3a"
    base = url.set(password=None).render_as_string(hide_password=False)
    secret_dsn = f"{base}{'&' if url.query else '?'}password={quote(password, safe='')}"
    assert "password=" in secret_dsn
    async with aqueue.App(secret_dsn, schema=schema) as app:
        await app.migrate()

        @app.job(payload=Task, max_tries=1)
        async def leaky(payload: Task) -> None:
            raise ConnectionError(f"could not reach {secret_dsn}")

        job_id = await app.enqueue(leaky, Task())
        assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert row["state"] == "failed"
    assert "could not reach postgresql://" in row["failure_info"]
    assert "password=***" in row["failure_info"]
    assert quote(password, safe="") not in row["failure_info"]
