"""Store: the only code that runs SQL. One typed method per statement file; driver errors
become :class:`aqueue.errors.DatabaseError` here and nowhere else."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import DatabaseError
from . import sql
from .connections import fetch_column_on
from .records import ClaimedJob, NewJobs

log = logging.getLogger("aqueue.store")

# Errors after which a pooled connection cannot be trusted again.
_BROKEN = (
    asyncpg.PostgresConnectionError,
    asyncpg.InternalClientError,
    asyncpg.InterfaceError,
    ConnectionError,
    OSError,
    TimeoutError,
)
_STALE_RETRIES = 32  # after a server restart, every idle pooled connection is stale
# Errors that mean "no server there" rather than "the server said no".
_UNREACHABLE = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.ConnectionFailureError,
)
# URL query options SQLAlchemy's asyncpg dialect consumes itself; asyncpg.connect refuses them.
_SQLALCHEMY_ONLY_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func")
_DRIVER_ERRORS = (asyncpg.PostgresError, sqlalchemy.exc.SQLAlchemyError, *_BROKEN)


@dataclass(slots=True)
class StoreStatistics:
    """Statements run by this store, by name (``claim``, ``complete``, ...)."""

    statements: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.statements.values())


class Store:
    def __init__(self, engine: AsyncEngine, schema: str, application_name: str = "aqueue") -> None:
        self.engine = engine
        self.application_name = application_name
        self.schema = schema
        self.channel = sql.channel_for(schema)
        self._sql = {
            name: sql.render(text, schema=schema, channel=self.channel)
            for name, text in sql.raw_queries().items()
        }
        self._password = engine.url.password
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()  # the heartbeat thread counts its statements too

    def statistics(self) -> StoreStatistics:
        with self._counts_lock:
            return StoreStatistics(dict(self._counts))

    # -- plumbing -------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with the DSN's password replaced by ``***``."""
        if self._password:
            return text.replace(str(self._password), "***")
        return text

    def _error(self, operation: str, exc: BaseException) -> DatabaseError:
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, _UNREACHABLE):
            message = f"database unreachable ({message})"
        return DatabaseError(operation, self.redact(message))

    @contextlib.contextmanager
    def _statement(self, operation: str) -> Iterator[None]:
        """Count one statement and turn driver errors into DatabaseError: the boundary."""
        with self._counts_lock:
            self._counts[operation] = self._counts.get(operation, 0) + 1
        try:
            yield
        except _DRIVER_ERRORS as exc:
            raise self._error(operation, exc) from exc

    @contextlib.asynccontextmanager
    async def _connect(self, operation: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection's asyncpg driver connection, for statements in autocommit
        (or an explicit ``transaction()``). Broken connections are invalidated, not pooled."""
        with self._statement(operation):
            async with _checkout(self.engine) as driver:
                yield driver

    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        """Run one statement on a pooled connection. A connection that already read the
        server's "terminating connection" message but not yet the socket's end refuses the
        statement before sending a byte (InternalClientError), so running it again on a
        fresh connection is safe even for an INSERT."""
        with self._statement(name):
            for _ in range(_STALE_RETRIES):
                try:
                    async with _checkout(self.engine) as driver:
                        rows: list[asyncpg.Record] = await driver.fetch(self._sql[name], *args)
                        return rows
                except asyncpg.InternalClientError:
                    continue  # _checkout invalidated it
            raise asyncpg.ConnectionDoesNotExistError("every pooled connection tried was closing")

    # -- enqueue --------------------------------------------------------------------------

    async def enqueue(self, jobs: NewJobs, conn: object | None = None) -> list[int]:
        """Insert ``jobs``; on ``conn`` (the caller's transaction, not committed here) or on a
        pooled connection in autocommit."""
        if len(jobs.payloads) == 1:
            name = "enqueue"
            payload: Any = jobs.payloads[0]
        else:
            name = "enqueue_many"
            payload = jobs.payloads
        args = (
            jobs.job_type,
            jobs.queue,
            jobs.priority,
            jobs.max_tries,
            payload,
            jobs.delay_s,
            jobs.run_at,
        )
        if conn is None:
            return [row[0] for row in await self._fetch(name, *args)]
        fetch = fetch_column_on(conn)
        with self._statement(name):
            return await fetch(self._sql[name], args)

    # -- worker ---------------------------------------------------------------------------

    async def claim(
        self,
        limit: int,
        job_types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_s: float,
        complete_ids: Sequence[int] = (),
        complete_attempts: Sequence[int] = (),
    ) -> Claim:
        """Claim up to ``limit`` due jobs, completing the attempts given in the same
        statement (see claim.sql)."""
        rows = await self._fetch(
            "claim",
            limit,
            list(job_types),
            None if queues is None else list(queues),
            worker_id,
            lease_s,
            list(complete_ids),
            list(complete_attempts),
        )
        jobs = [ClaimedJob(*row[:8]) for row in rows if row[0] is not None]
        if len(jobs) > 1:
            # UPDATE ... RETURNING has no order; start them in claim order.
            jobs.sort(key=lambda j: (-j.priority, j.next_attempt_after, j.id))
        first = rows[0]
        return Claim(jobs, first[8], set(first[9]))

    async def complete(self, worker_id: str, ids: list[int], attempts: list[int]) -> set[int]:
        rows = await self._fetch("complete", ids, attempts, worker_id)
        return {row[0] for row in rows}

    async def fail(
        self,
        worker_id: str,
        ids: list[int],
        attempts: list[int],
        delays_s: list[float],
        failure_infos: list[str],
        finals: list[bool],
    ) -> dict[int, str]:
        rows = await self._fetch("fail", ids, attempts, delays_s, failure_infos, finals, worker_id)
        return {row[0]: row[1] for row in rows}

    async def retry(self, worker_id: str, ids: list[int], attempts: list[int]) -> set[int]:
        rows = await self._fetch("retry", ids, attempts, worker_id)
        return {row[0] for row in rows}

    async def heartbeat(
        self,
        worker_id: str,
        ids: list[int],
        attempts: list[int],
        lease_s: float,
        conn: asyncpg.Connection | None = None,
        timeout_s: float | None = None,
    ) -> dict[tuple[int, int], str | None]:
        """Extend the leases held; return the attempts no longer held, ``{(id, attempt):
        state now}``. On ``conn`` (the heartbeat thread's own connection) when given."""
        args = (ids, attempts, worker_id, lease_s)
        if conn is None:
            rows = await self._fetch("heartbeat", *args)
        else:
            with self._statement("heartbeat"):
                rows = await conn.fetch(self._sql["heartbeat"], *args, timeout=timeout_s)
        return {(row[0], row[1]): row[2] for row in rows}

    async def connect_direct(self, timeout_s: float) -> asyncpg.Connection:
        """A connection of its own, outside the pool, for a thread with its own event loop
        (pooled connections belong to the worker's loop)."""
        with self._statement("connect"):
            _args, options = self.engine.dialect.create_connect_args(self.engine.url)
            for key in _SQLALCHEMY_ONLY_OPTIONS:
                options.pop(key, None)
            return await asyncpg.connect(
                **options,
                timeout=timeout_s,
                server_settings={"application_name": self.application_name},
            )

    async def cancel(self, job_id: int) -> str | None:
        """Cancel job ``job_id`` if it is pending, error or running; return the state it had,
        or ``None`` when it was not cancellable (unknown, or already finished)."""
        rows = await self._fetch("cancel", job_id)
        return str(rows[0][0]) if rows else None

    async def rescue(self, worker_id: str, running: list[int]) -> dict[int, str]:
        """Return expired leases to the queue, except those of the ``running`` jobs of
        ``worker_id`` (the caller); ``{id: new state}``."""
        rows = await self._fetch("rescue", worker_id, running)
        return {row[0]: row[1] for row in rows}

    @contextlib.asynccontextmanager
    async def listen(self, on_notify: Callable[[str], None]) -> AsyncIterator[Listening]:
        """Hold one pooled connection LISTENing on this schema's channel; ``on_notify`` gets
        each payload (it must only signal). Yields a :class:`Listening`: its ``lost`` event
        is set when the connection is lost; ``ping()`` checks that it still answers."""
        lost = anyio.Event()

        def notified(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            on_notify(str(payload))

        def terminated(_conn: object) -> None:
            lost.set()

        async with self._connect("listen") as conn:
            await conn.add_listener(self.channel, notified)
            conn.add_termination_listener(terminated)
            broken = False
            try:
                yield Listening(self, conn, lost)
            except DatabaseError:
                broken = True  # _checkout invalidates it; UNLISTEN would only wait on it
                raise
            finally:
                conn.remove_termination_listener(terminated)
                if not broken and not conn.is_closed():
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await conn.remove_listener(self.channel, notified)

    async def _ping(self, conn: asyncpg.Connection, timeout_s: float) -> None:
        with self._statement("ping"):
            await conn.fetchval(self._sql["ping"], timeout=timeout_s)

    async def ping(self) -> None:
        """Run the ping statement on a pooled connection: the database answers."""
        await self._fetch("ping")

    # -- migrations -----------------------------------------------------------------------

    async def migrate(self, migrations: Sequence[sql.Migration]) -> list[int]:
        """Apply the missing ``migrations`` in one transaction under an advisory lock, so
        concurrent callers serialize and all succeed. Returns the versions applied."""
        applied_now: list[int] = []
        async with self._connect("migrate") as conn, conn.transaction():
            await conn.execute(self._sql["migrate_lock"], self.schema)
            await conn.execute(self._sql["migrate_schema"])
            await conn.execute(self._sql["migrate_history"])
            done = {row[0] for row in await conn.fetch(self._sql["migrate_applied"])}
            for migration in migrations:
                if migration.version in done:
                    continue
                text = sql.render(migration.sql, schema=self.schema, channel=self.channel)
                await conn.execute(text)
                await conn.execute(self._sql["migrate_record"], migration.version, migration.name)
                applied_now.append(migration.version)
        return applied_now


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim statement did."""

    jobs: list[ClaimedJob]
    # Seconds until the next job not claimed here is due (<= 0: due but locked by another
    # claimer); None when there is none, or when every slot asked for was filled.
    next_due_s: float | None
    completed: set[int]  # ids of the attempts given to complete that are completed


@dataclass(slots=True)
class Listening:
    """The LISTEN connection, as :meth:`Store.listen` yields it."""

    _store: Store
    _conn: asyncpg.Connection
    lost: anyio.Event

    async def ping(self, timeout_s: float) -> None:
        """Raise :class:`DatabaseError` unless the connection answers within ``timeout_s``
        (a keepalive: a silently dead TCP connection would otherwise never notify again)."""
        await self._store._ping(self._conn, timeout_s)


@contextlib.asynccontextmanager
async def _checkout(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's asyncpg driver connection. One the server closed while it sat
    idle in the pool (a restart, pg_terminate_backend) is already marked closed by asyncpg:
    it is discarded for a fresh one, at no round trip's cost. One that breaks in use is
    invalidated, never pooled again."""
    for _ in range(_STALE_RETRIES):
        async with engine.connect() as sa_conn:
            raw = await sa_conn.get_raw_connection()
            driver = raw.driver_connection
            assert isinstance(driver, asyncpg.Connection)
            if driver.is_closed():
                await _invalidate(sa_conn)
                continue
            try:
                yield driver
            except BaseException as exc:
                if isinstance(exc, _BROKEN) or isinstance(exc.__cause__, _BROKEN):
                    await _invalidate(sa_conn)
                raise
            return
    raise asyncpg.ConnectionDoesNotExistError("every pooled connection tried was closed")


async def _invalidate(sa_conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await sa_conn.invalidate()
