"""Turns whatever connection the caller holds into something that runs one statement in the
caller's transaction: an asyncpg ``Connection``, a SQLAlchemy ``AsyncConnection`` or
``AsyncSession``."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

FetchColumn = Callable[[str, tuple[Any, ...]], Awaitable[list[Any]]]


def fetch_column_on(conn: object) -> FetchColumn:
    """Return ``fetch(sql, args) -> first column of every row`` running on ``conn``.

    SQLAlchemy connections go through SQLAlchemy (not the raw driver connection) so that
    SQLAlchemy begins its transaction first: its asyncpg adapter opens transactions lazily,
    and a statement on the raw connection before that would commit on its own.
    """
    if isinstance(conn, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy):
        pg = conn

        async def fetch_asyncpg(sql: str, args: tuple[Any, ...]) -> list[Any]:
            return [row[0] for row in await pg.fetch(sql, *args)]

        return fetch_asyncpg
    # A SQLAlchemy connection can only exist if SQLAlchemy is loaded; aqueue never loads it.
    sa_asyncio = sys.modules.get("sqlalchemy.ext.asyncio")
    if sa_asyncio is not None and isinstance(conn, sa_asyncio.AsyncSession):
        session = conn

        async def fetch_session(sql: str, args: tuple[Any, ...]) -> list[Any]:
            sa_conn = await session.connection()
            return await _fetch_sqlalchemy(sa_conn, sql, args)

        return fetch_session
    if sa_asyncio is not None and isinstance(conn, sa_asyncio.AsyncConnection):
        sa = conn

        async def fetch_connection(sql: str, args: tuple[Any, ...]) -> list[Any]:
            return await _fetch_sqlalchemy(sa, sql, args)

        return fetch_connection
    raise TypeError(
        "conn must be a SQLAlchemy AsyncConnection or AsyncSession, or an asyncpg Connection; "
        f"got {type(conn).__name__}"
    )


async def _fetch_sqlalchemy(conn: AsyncConnection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    if conn.dialect.driver != "asyncpg":
        raise TypeError(
            f"conn must use the asyncpg driver (postgresql+asyncpg://), not {conn.dialect.driver}"
        )
    result = await conn.exec_driver_sql(sql, args)
    return list(result.scalars().all())
