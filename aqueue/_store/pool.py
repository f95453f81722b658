"""Where the Store's connections come from: aqueue's own asyncpg pool (an App given a DSN),
or the pool of a SQLAlchemy engine the application shares (an App given an engine; that
code lives in ``engine_pool.py`` so SQLAlchemy is imported only when it is used).

Either way a statement runs on a plain asyncpg connection, and a connection that broke in
use is closed, never handed out again."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Protocol, cast
from urllib.parse import unquote, urlsplit

import anyio
import asyncpg

# Errors after which a connection cannot be trusted again.
BROKEN = (
    asyncpg.PostgresConnectionError,
    asyncpg.InternalClientError,
    asyncpg.InterfaceError,
    ConnectionError,
    OSError,
    TimeoutError,
)
# aqueue's own pool: connections are opened as needed and closed after a minute unused. A
# worker uses at most WORKER_CONNECTIONS of them at once (see Store).
POOL_MAX_SIZE = 10
POOL_IDLE_S = 60.0


class Pool(Protocol):
    password: str | None  # scrubbed from every message aqueue writes

    def acquire(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        """A connection for a statement or a transaction; closed if it breaks in use."""

    async def connect_direct(self, timeout_s: float, application_name: str) -> asyncpg.Connection:
        """A connection of its own, outside the pool (for another thread's event loop)."""

    async def close(self) -> None:
        """Close the pool's connections (a shared engine's pool is left alone)."""


class AsyncpgPool:
    """aqueue's own pool on a ``postgresql://`` DSN."""

    def __init__(self, dsn: str, application_name: str) -> None:
        self._dsn = dsn
        self.password = unquote(urlsplit(dsn).password or "") or None
        self._application_name = application_name
        self._pool: asyncpg.Pool | None = None
        self._lock = anyio.Lock()

    async def _get(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=POOL_MAX_SIZE,
                    max_inactive_connection_lifetime=POOL_IDLE_S,
                    server_settings={"application_name": self._application_name},
                    # Statements run in autocommit and transactions are always closed by
                    # their context manager, so the default reset (RESET ALL, UNLISTEN *,
                    # ... one more round trip per statement) has nothing to do. An open
                    # transaction is still rolled back by asyncpg itself.
                    reset=_no_reset,
                )
            return self._pool

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._pool if self._pool is not None else await self._get()
        async with pool.acquire() as proxy:
            # The pool's proxy forwards every method to the connection it wraps.
            conn = cast(asyncpg.Connection, proxy)
            try:
                yield conn
            except BaseException as exc:
                if _broken(exc) or isinstance(exc, anyio.get_cancelled_exc_class()):
                    # Broken, or cut off mid-statement: not fit for the next caller. (One
                    # the caller terminated itself is detached from the pool already.)
                    with contextlib.suppress(asyncpg.InterfaceError):
                        conn.terminate()
                raise

    async def connect_direct(self, timeout_s: float, application_name: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn, timeout=timeout_s, server_settings={"application_name": application_name}
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


async def _no_reset(_conn: asyncpg.Connection) -> None:
    return None


def _broken(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, means the connection broke."""
    while exc is not None:
        if isinstance(exc, BROKEN):
            return True
        exc = exc.__cause__
    return False
