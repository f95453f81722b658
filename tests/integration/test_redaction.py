"""A password given as ``?password=`` never reaches failure_info, however short it is."""

from __future__ import annotations

from urllib.parse import quote

import asyncpg
from sqlalchemy.engine import make_url

from tests.helpers import sqlalchemy_dsn
from tests.integration.test_safety import failure_info_quoting


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
    info = await failure_info_quoting(secret_dsn, schema, pg)
    assert "could not reach postgresql://" in info
    assert "password=***" in info
    assert quote(password, safe="") not in info
