"""Connections from a SQLAlchemy engine the application shares with aqueue (``App(engine=...)``),
and the engine ``App.engine`` makes from the DSN. Imported only then: a worker on a DSN never
loads SQLAlchemy."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .pool import _broken, close_at_loop_shutdown

_STALE_RETRIES = 32  # after a server restart, every idle pooled connection is stale
# URL query options SQLAlchemy's asyncpg dialect consumes itself; asyncpg.connect refuses them.
_SQLALCHEMY_ONLY_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func")


class EnginePool:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Where a DSN would carry it: the URL's userinfo, else ?password=.
        password = engine.url.password or engine.url.query.get("password")
        if isinstance(password, tuple):
            password = password[0] if password else None
        self.password = str(password) if password else None

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection's asyncpg driver connection. One the server closed while it sat
        idle in the pool (a restart, pg_terminate_backend) is already marked closed by
        asyncpg: it is discarded for a fresh one, at no round trip's cost. One that breaks
        in use is invalidated, never pooled again."""
        for _ in range(_STALE_RETRIES):
            async with self.engine.connect() as sa_conn:
                raw = await sa_conn.get_raw_connection()
                driver = raw.driver_connection
                assert isinstance(driver, asyncpg.Connection)
                if driver.is_closed():
                    await _invalidate(sa_conn)
                    continue
                try:
                    yield driver
                except BaseException as exc:
                    if _broken(exc):
                        await _invalidate(sa_conn)
                    raise
                return
        raise asyncpg.ConnectionDoesNotExistError("every pooled connection tried was closed")

    async def connect_direct(self, timeout_s: float, application_name: str) -> asyncpg.Connection:
        _args, options = self.engine.dialect.create_connect_args(self.engine.url)
        for key in _SQLALCHEMY_ONLY_OPTIONS:
            options.pop(key, None)
        return await asyncpg.connect(
            **options,
            timeout=timeout_s,
            server_settings={"application_name": application_name},
        )

    async def close(self) -> None:
        return None  # the application's engine: aqueue never disposes it


async def _invalidate(sa_conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await sa_conn.invalidate()


class OwnEngine:
    """The engine ``App.engine`` makes from the app's DSN (a SQLAlchemy URL). Its pool belongs
    to the event loop it was first used on, like aqueue's own pool: it is disposed when that
    loop shuts down, and made again on another loop."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._engine: AsyncEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown_hook: object = None

    def get(self) -> AsyncEngine:
        """The engine for the running loop (any one, outside a loop)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        engine = self._engine
        if engine is not None and (loop is None or loop is self._loop):
            return engine
        if engine is not None:
            # Another loop's: forget its connections without awaiting that loop (its
            # shutdown closed them, if it shut down cleanly).
            engine.sync_engine.dispose(close=False)
        self._engine = engine = create_async_engine(self._url)
        self._loop = loop
        if loop is not None:
            self._shutdown_hook = close_at_loop_shutdown(
                functools.partial(self._dispose_if_current, engine)
            )
        return engine

    async def _dispose_if_current(self, engine: AsyncEngine) -> None:
        if engine is self._engine:
            await self.close()

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self._loop is asyncio.get_running_loop():
            await engine.dispose()
        else:
            engine.sync_engine.dispose(close=False)
