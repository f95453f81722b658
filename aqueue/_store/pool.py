"""Where the Store's connections come from: aqueue's own asyncpg pool (an App given a DSN),
or the pool of a SQLAlchemy engine the application shares (an App given an engine; that
code lives in ``engine_pool.py`` so SQLAlchemy is imported only when it is used).

Either way a statement runs on a plain asyncpg connection, and a connection that broke in
use is closed, never handed out again."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, cast

import anyio
import asyncpg

from .dsn import dsn_password

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
    """aqueue's own pool on a ``postgresql://`` DSN.

    An asyncpg pool belongs to the event loop that opened it (one App may outlive loops: a
    module-level App across tests that each run their own). It is closed when that loop shuts
    down; used from another loop, whatever is left of it is dropped without awaiting the old
    loop, and a new pool is opened on the running one."""

    def __init__(self, dsn: str, application_name: str) -> None:
        self._dsn = dsn
        self.password = dsn_password(dsn)
        self._application_name = application_name
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of _pool and _lock
        self._lock = anyio.Lock()
        self._shutdown_hook: object = None

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forget what belongs to another loop. Synchronous: no other task can interleave."""
        pool, self._pool = self._pool, None
        self._lock = anyio.Lock()
        self._loop = loop
        if pool is not None:
            _abandon(pool)

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
                self._shutdown_hook = close_at_loop_shutdown(
                    functools.partial(self._close_if_current, self._pool)
                )
            return self._pool

    async def _close_if_current(self, pool: asyncpg.Pool) -> None:
        if pool is self._pool:
            await self.close()

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the hot path's only cost for this: one comparison
            self._rebind(loop)
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
        if pool is None:
            return
        if self._loop is not asyncio.get_running_loop():
            _abandon(pool)  # its loop is gone: nothing there to await
        else:
            await pool.close()


def close_at_loop_shutdown(close: Callable[[], Awaitable[None]]) -> object:
    """Have the running event loop await ``close()`` when it shuts down, while it still runs:
    ``asyncio.run``, ``asyncio.Runner``, ``anyio.run`` and pytest's async plugins all call
    ``loop.shutdown_asyncgens()`` before closing a loop, which closes every async generator
    still suspended, this one included. (A loop closed with connections still open on it
    leaks them, and uvloop refuses to close at all.)

    Keep the returned generator referenced for as long as ``close`` may be wanted: dropping
    it runs ``close`` soon after, so ``close`` must do nothing when its object is obsolete."""

    async def hook() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await close()

    gen = hook()
    # The first step registers it with the running loop; it needs no awaiting to get there.
    step: Any = gen.asend(None)
    with contextlib.suppress(StopIteration):
        step.send(None)
    return gen


def _abandon(pool: asyncpg.Pool) -> None:
    """Drop a pool of another (usually closed) event loop: close its sockets, await nothing."""
    # Terminating schedules callbacks on the pool's loop, which refuses them once closed;
    # the sockets are closed by then all the same.
    with contextlib.suppress(RuntimeError):
        pool.terminate()


async def _no_reset(_conn: asyncpg.Connection) -> None:
    return None


def _broken(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, means the connection broke."""
    while exc is not None:
        if isinstance(exc, BROKEN):
            return True
        exc = exc.__cause__
    return False
