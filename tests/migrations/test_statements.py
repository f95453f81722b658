"""Every named statement (aqueue/sql/queries) is valid against the migrated schema: each is
prepared by the server, so a typo in a statement no test happens to run fails here."""

from __future__ import annotations

import asyncpg

import aqueue
from aqueue._store.store import Store


async def test_every_statement_prepares_against_the_migrated_schema(
    app: aqueue.App, pg: asyncpg.Connection
) -> None:
    store = await app._get_store()
    assert isinstance(store, Store)
    assert len(store._sql) >= 15
    refused = {}
    for name, sql in store._sql.items():
        try:
            await pg.prepare(sql)
        except asyncpg.PostgresError as exc:
            refused[name] = f"{type(exc).__name__}: {exc}"
    assert refused == {}
