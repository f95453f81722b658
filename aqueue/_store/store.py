"""Store: the only code that runs SQL. One typed method per statement file; driver errors
become :class:`aqueue.errors.DatabaseError` here and nowhere else."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import asyncpg

from ..errors import MIGRATE_HINT, DatabaseError, SchemaError
from ..jobs import JobId
from . import sql
from .connections import fetch_column_on
from .dsn import redact
from .pool import BROKEN, Pool
from .records import ClaimedJob, Limit, NewJobs

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

log = logging.getLogger("aqueue.store")

_STALE_RETRIES = 32  # after a server restart, every idle pooled connection is stale
# Errors that mean "no server there" rather than "the server said no".
_UNREACHABLE = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.ConnectionFailureError,
)
_ASYNCPG_ERRORS = (asyncpg.PostgresError, *BROKEN)
# The worker's statements share this many pooled connections, whatever the pool's size:
# with its LISTEN connection, a worker holds WORKER_CONNECTIONS + 1 connections.
WORKER_CONNECTIONS = 2
DIRECT_CONNECT_TIMEOUT_S = 10.0  # App.result's own connection
# undefined_table, undefined_object (a type), invalid_schema_name, undefined_function: one of
# aqueue's statements finding its own tables, types or functions missing.
_UNMIGRATED = frozenset({"42P01", "42704", "3F000", "42883"})
_WORKER_STATEMENTS = frozenset(
    {
        *("claim", "complete", "fail", "release", "snooze", "heartbeat", "rescue"),
        *("worker_seen", "worker_gone", "unserved_jobs"),
        *("db_now", "periodic_enqueue", "prune_waiters"),
    }
)


def is_data_error(exc: DatabaseError) -> bool:
    """Whether the server refused the statement for its data (SQLSTATE class 22: a
    character the database cannot store, a value out of range). Running it again as it is
    fails the same way."""
    return (_sqlstate(exc.__cause__) or "").startswith("22")


def _driver_errors() -> tuple[type[BaseException], ...]:
    # SQLAlchemy's errors can only come from a caller's SQLAlchemy connection (conn=), and
    # then SQLAlchemy is loaded; aqueue never imports it for this.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        return _ASYNCPG_ERRORS
    return (*_ASYNCPG_ERRORS, sa_exc.SQLAlchemyError)


@dataclass(slots=True)
class StoreStatistics:
    """Statements run by this store, by name (``claim``, ``complete``, ...)."""

    statements: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.statements.values())


class Store:
    def __init__(self, pool: Pool, schema: str, application_name: str = "aqueue") -> None:
        self.pool = pool
        self.application_name = application_name
        self.schema = schema
        self.channel = sql.channel_for(schema)
        self._sql = {
            name: sql.render(text, schema=schema, channel=self.channel)
            for name, text in sql.raw_queries().items()
        }
        self._password = pool.password
        # Belongs to one event loop, like the pool: made again on another (see AsyncpgPool).
        self._worker_slots: tuple[asyncio.AbstractEventLoop, anyio.CapacityLimiter] | None = None
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()  # the heartbeat thread counts its statements too

    def statistics(self) -> StoreStatistics:
        with self._counts_lock:
            return StoreStatistics(dict(self._counts))

    # -- plumbing -------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with the DSN's password replaced by ``***`` (see :func:`dsn.redact`)."""
        return redact(text, self._password)

    def _error(self, operation: str, exc: BaseException) -> DatabaseError:
        message = f"{type(exc).__name__}: {exc}"
        if _sqlstate(exc) in _UNMIGRATED:
            return SchemaError(
                operation,
                self.redact(
                    f"schema {self.schema!r} has no aqueue tables, or misses some "
                    f"({message.splitlines()[0]}): {MIGRATE_HINT}"
                ),
            )
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
        except _driver_errors() as exc:
            raise self._error(operation, exc) from exc

    @contextlib.asynccontextmanager
    async def _connect(self, operation: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection's asyncpg driver connection, for statements in autocommit
        (or an explicit ``transaction()``). Broken connections are invalidated, not pooled."""
        with self._statement(operation):
            async with self.pool.acquire() as driver:
                yield driver

    @contextlib.asynccontextmanager
    async def _direct(self, operation: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection of its own, outside the pool, closed on the way out."""
        with self._statement(operation):
            conn = await self.pool.connect_direct(DIRECT_CONNECT_TIMEOUT_S, self.application_name)
        try:
            yield conn
        finally:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(5),
                contextlib.suppress(*_driver_errors()),
            ):
                await conn.close()
            conn.terminate()  # a no-op once closed; else the socket goes now

    async def _fetch(
        self, name: str, *args: Any, timeout_s: float | None = None
    ) -> list[asyncpg.Record]:
        """Run one statement on a pooled connection. A connection that already read the
        server's "terminating connection" message but not yet the socket's end refuses the
        statement before sending a byte (InternalClientError), so running it again on a
        fresh connection is safe even for an INSERT. ``timeout_s`` bounds the wait for a
        worker connection and, apart, the statement (one that times out is not pooled again)."""
        if name not in _WORKER_STATEMENTS:
            return await self._fetch_pooled(name, args, timeout_s)
        loop = asyncio.get_running_loop()
        if self._worker_slots is None or self._worker_slots[0] is not loop:
            self._worker_slots = (loop, anyio.CapacityLimiter(WORKER_CONNECTIONS))
        slots = self._worker_slots[1]
        if timeout_s is None:  # the hot path (claims, completions): no cancel scope
            async with slots:
                return await self._fetch_pooled(name, args, timeout_s)
        try:
            with anyio.fail_after(timeout_s):
                await slots.acquire()
        except TimeoutError:
            message = f"no worker connection free within {timeout_s:.2f} s"
            raise DatabaseError(name, message) from None
        try:
            return await self._fetch_pooled(name, args, timeout_s)
        finally:
            slots.release()

    async def _fetch_pooled(
        self, name: str, args: tuple[Any, ...], timeout_s: float | None = None
    ) -> list[asyncpg.Record]:
        with self._statement(name):
            for _ in range(_STALE_RETRIES):
                try:
                    async with self.pool.acquire() as driver:
                        rows: list[asyncpg.Record] = await driver.fetch(
                            self._sql[name], *args, timeout=timeout_s
                        )
                        return rows
                except asyncpg.InternalClientError:
                    continue  # the pool closed it
            raise asyncpg.ConnectionDoesNotExistError("every pooled connection tried was closing")

    # -- enqueue --------------------------------------------------------------------------

    async def enqueue(self, jobs: NewJobs, conn: object | None = None) -> list[JobId]:
        """Insert ``jobs``; on ``conn`` (the caller's transaction, not committed here) or on a
        pooled connection in autocommit. A job whose unique key is held returns the holder's
        id, marked ``duplicate``."""
        args: tuple[Any, ...]
        if jobs.unique_keys is not None and any(k is not None for k in jobs.unique_keys):
            name = "enqueue_unique"
            args = (
                jobs.job_type,
                jobs.queue,
                jobs.priority,
                jobs.max_tries,
                jobs.payloads,
                jobs.delay_s,
                jobs.run_at,
                jobs.unique_keys,
            )
        elif len(jobs.payloads) == 1 and jobs.delay_s is None and jobs.run_at is None:
            # The common case, one job due now: one plain INSERT, no plpgsql.
            name = "enqueue"
            args = (jobs.job_type, jobs.queue, jobs.priority, jobs.max_tries, jobs.payloads[0])
        else:
            name = "enqueue_many"
            args = (
                jobs.job_type,
                jobs.queue,
                jobs.priority,
                jobs.max_tries,
                jobs.payloads,
                jobs.delay_s,
                jobs.run_at,
            )
        if conn is None:
            values = [row[0] for row in await self._fetch(name, *args)]
        else:
            fetch = fetch_column_on(conn)
            with self._statement(name):
                values = await fetch(self._sql[name], args)
        # enqueue_unique gives a duplicate's id negated (job ids are positive).
        ids = list(map(JobId, values))
        if name == "enqueue_unique":
            for i, value in enumerate(values):
                if value < 0:
                    ids[i] = JobId(-value)
                    ids[i].duplicate = True
        return ids

    # -- worker ---------------------------------------------------------------------------

    @staticmethod
    def claim_args(
        free: int | Sequence[int],
        job_types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_s: float,
        complete_ids: Sequence[int] = (),
        complete_attempts: Sequence[int] = (),
        *,
        queue_groups: Sequence[int] | None = None,
        claim_no: int = 0,
        cursors: Mapping[int, int] | None = None,
        promote_since: dt.datetime | None = None,
        lost_claims: Sequence[int] = (),
        limits: Sequence[Limit] = (),
        complete_results: Sequence[bytes | None] | None = None,
    ) -> tuple[Any, ...]:
        """claim.sql's parameters for :meth:`claim`'s arguments (benchmarks run it raw)."""
        lanes = list(cursors) if cursors else []
        return (
            [free] if isinstance(free, int) else list(free),
            list(job_types),
            None if queues is None else list(queues),
            None if queues is None else list(queue_groups or [1] * len(queues)),
            worker_id,
            lease_s,
            list(complete_ids),
            list(complete_attempts),
            claim_no,
            lanes,
            [cursors[lane] for lane in lanes] if cursors else [],
            promote_since,
            list(lost_claims),
            [lim.job_type for lim in limits],
            [lim.concurrency for lim in limits],
            [lim.rate_count for lim in limits],
            [lim.rate_period_s for lim in limits],
            _results(complete_results),
        )

    async def claim(
        self,
        free: int | Sequence[int],
        job_types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_s: float,
        complete_ids: Sequence[int] = (),
        complete_attempts: Sequence[int] = (),
        *,
        queue_groups: Sequence[int] | None = None,
        claim_no: int = 0,
        cursors: Mapping[int, int] | None = None,
        promote_since: dt.datetime | None = None,
        lost_claims: Sequence[int] = (),
        limits: Sequence[Limit] = (),
        complete_results: Sequence[bytes | None] | None = None,
    ) -> Claim:
        """Claim up to ``free[g]`` due jobs for each slot group ``g`` (``queues[i]`` is in
        group ``queue_groups[i]``, 1-based; with ``queues`` None, every queue is in group 1),
        completing the attempts given in the same statement (see claim.sql). ``limits``: the
        fleet-wide limits of the job types that have them. ``cursors`` maps lane ids to the
        seq each lane is known to be read to (``None``: read every lane from its start);
        ``promote_since`` bounds which delayed jobs are looked at (``None``: all);
        ``lost_claims`` are earlier claim numbers of this worker whose reply was lost: their
        jobs go back first. ``complete_results``: what each completed attempt's handler
        returned (encoded), or None."""
        rows = await self._fetch(
            "claim",
            *self.claim_args(
                free,
                job_types,
                queues,
                worker_id,
                lease_s,
                complete_ids,
                complete_attempts,
                queue_groups=queue_groups,
                claim_no=claim_no,
                cursors=cursors,
                promote_since=promote_since,
                lost_claims=lost_claims,
                limits=limits,
                complete_results=complete_results,
            ),
        )
        jobs: list[ClaimedJob] = []
        moved: dict[int, int] = {}
        summary = None
        for row in rows:
            kind = row[0]
            if kind == "j":
                jobs.append(ClaimedJob(*row[1:9]))
            elif kind == "c":
                moved[row[9]] = row[10]
            else:
                summary = row
        assert summary is not None  # the claim function always ends with one
        if len(jobs) > 1:
            # INSERT ... RETURNING has no order; start them in claim order.
            jobs.sort(key=lambda j: (-j.priority, j.id))
        db_now = EPOCH + dt.timedelta(microseconds=summary[10])
        held = summary[9] is not None
        return Claim(jobs, summary[11], set(summary[12]), moved, summary[6], db_now, held)

    async def complete(
        self,
        worker_id: str,
        ids: list[int],
        attempts: list[int],
        results: Sequence[bytes | None] | None = None,
    ) -> set[int]:
        rows = await self._fetch("complete", ids, attempts, worker_id, _results(results))
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

    async def release(self, worker_id: str, ids: list[int], attempts: list[int]) -> set[int]:
        rows = await self._fetch("release", ids, attempts, worker_id)
        return {row[0] for row in rows}

    async def snooze(
        self, worker_id: str, ids: list[int], attempts: list[int], delays_s: list[float]
    ) -> dict[int, str]:
        """Put running attempts back without counting them, due after ``delays_s`` (see
        snooze.sql); ``{id: new state}``: ``failed`` for a job snoozed too often."""
        rows = await self._fetch("snooze", ids, attempts, delays_s, worker_id)
        return {row[0]: row[1] for row in rows}

    async def heartbeat(
        self,
        worker_id: str,
        ids: list[int],
        attempts: list[int],
        lease_s: float,
        *,
        timeout_s: float,
        conn: asyncpg.Connection | None = None,
        operation: str = "heartbeat",
    ) -> Beat:
        """Extend the leases held, skipping rows another transaction has locked (see
        heartbeat.sql). On ``conn`` (the LISTEN connection, or the heartbeat thread's own)
        when given, else on a pooled one; either way within ``timeout_s``: a beat must never
        wait long, or the leases it should extend run out meanwhile. ``operation`` names the
        statement in :meth:`statistics` and in errors."""
        args = (ids, attempts, worker_id, lease_s)
        try:
            if conn is None:
                rows = await self._fetch("heartbeat", *args, timeout_s=timeout_s)
            else:
                with self._statement(operation):
                    rows = await conn.fetch(self._sql["heartbeat"], *args, timeout=timeout_s)
        except DatabaseError as exc:
            if isinstance(exc.__cause__, TimeoutError):  # asyncpg's says nothing itself
                raise DatabaseError(operation, f"no answer within {timeout_s:.2f} s") from exc
            raise
        lost: dict[tuple[int, int], str | None] = {}
        unknown: list[tuple[int, int]] = []
        for job_id, attempt, state, locked_elsewhere in rows:
            if locked_elsewhere:
                unknown.append((job_id, attempt))
            else:
                lost[job_id, attempt] = state
        return Beat(lost, unknown)

    async def connect_direct(self, timeout_s: float) -> asyncpg.Connection:
        """A connection of its own, outside the pool, for a thread with its own event loop
        (pooled connections belong to the worker's loop)."""
        with self._statement("connect"):
            return await self.pool.connect_direct(timeout_s, self.application_name)

    async def cancel(self, job_id: int) -> str | None:
        """Cancel job ``job_id`` if it is pending, error or running; return the state it had,
        or ``None`` when it was not cancellable (unknown, or already finished)."""
        rows = await self._fetch("cancel", job_id)
        return str(rows[0][0]) if rows else None

    async def look_behind(self, cursors: Mapping[int, int]) -> dict[int, int]:
        """Promote delayed jobs overdue beyond any claim's window, and find the rows still
        waiting behind ``cursors`` (lane id -> seq): ``{lane: lowest seq behind}``."""
        lanes = list(cursors)
        rows = await self._fetch("look_behind", lanes, [cursors[lane] for lane in lanes])
        return {row[0]: row[1] for row in rows if row[0] is not None}

    async def rescue(self, worker_id: str) -> dict[int, str]:
        """Return the running jobs of workers whose lease expired (never ``worker_id``'s, the
        caller's) to the queue; ``{id: new state}``."""
        rows = await self._fetch("rescue", worker_id)
        return {row[0]: row[1] for row in rows}

    async def prune(self, ring: str, retention_s: float) -> int | None:
        """Move retention ring ``ring`` ('done' or 'failed') on if its time has come (see
        prune.sql): the rows removed (an estimate), 0 when nothing was due, ``None`` when
        another worker is at it or a reader held the slot."""
        rows = await self._fetch("prune", ring, retention_s)
        value = rows[0][0]
        return None if value is None else int(value)

    async def worker_seen(
        self, worker_id: str, job_types: Sequence[str], queues: Sequence[str] | None, ttl_s: float
    ) -> None:
        """Record that ``worker_id`` serves ``job_types`` in ``queues`` (``None``: every
        queue) for the next ``ttl_s`` seconds (database clock)."""
        await self._fetch(
            "worker_seen",
            worker_id,
            list(job_types),
            None if queues is None else list(queues),
            ttl_s,
        )

    async def worker_gone(self, worker_id: str) -> None:
        """Forget ``worker_id``: it stopped."""
        await self._fetch("worker_gone", worker_id)

    async def unserved_jobs(self, max_rows: int, timeout_s: float) -> Unserved:
        """Due jobs no live worker serves, by (job_type, queue), counting at most
        ``max_rows`` per lane. A statement still running after ``timeout_s`` is cancelled
        (:class:`DatabaseError`)."""
        rows = await self._fetch("unserved_jobs", max_rows, timeout_s=timeout_s)
        return Unserved([(row[0], row[1], row[2], row[3]) for row in rows])

    @contextlib.asynccontextmanager
    async def listen(self, on_notify: Callable[[str], None]) -> AsyncIterator[Listening]:
        """Hold one pooled connection LISTENing on this schema's channel; ``on_notify`` gets
        each payload (it must only signal). Yields a :class:`Listening`: its ``lost`` event
        is set when the connection is lost; ``ping()`` checks that it still answers. Leaving
        gives leadership up (if it was taken) before the connection goes back to the pool."""
        lost = anyio.Event()
        held: list[Listening] = []

        async def resign(_conn: asyncpg.Connection) -> None:
            await held[0].resign()

        async with self._listening(
            self._connect("listen"), self.channel, on_notify, lost, resign
        ) as conn:
            held.append(Listening(self, conn, lost))
            yield held[0]

    @contextlib.asynccontextmanager
    async def awaiting(self, job_id: int) -> AsyncIterator[Awaiting]:
        """Hold a connection of its own (outside the pool: waiters must never starve the
        pool that workers and enqueues share) LISTENing for the end of job ``job_id`` (see
        await_job.sql), registered as its waiter until the block exits. Check the job's
        state (:meth:`job_end`) after entering: an end committed before is not notified."""
        awaiting = Awaiting(job_id)
        waiter: list[int] = []

        async def unawait(conn: asyncpg.Connection) -> None:
            # Best effort, bounded: a row left behind is removed by the leader a day later.
            if not waiter or conn.is_closed():
                return
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(5),
                contextlib.suppress(DatabaseError),
                self._statement("unawait"),
            ):
                await conn.execute(self._sql["unawait"], waiter[0])

        channel = sql.ended_channel_for(self.schema)
        async with self._listening(
            self._direct("await_job"), channel, awaiting.notified, awaiting.lost, unawait
        ) as conn:
            with self._statement("await_job"):
                waiter.append(await conn.fetchval(self._sql["await_job"], job_id))
            yield awaiting

    @contextlib.asynccontextmanager
    async def _listening(
        self,
        connection: contextlib.AbstractAsyncContextManager[asyncpg.Connection],
        channel: str,
        on_payload: Callable[[str], None],
        lost: anyio.Event,
        before_release: Callable[[asyncpg.Connection], Awaitable[None]],
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection LISTENing on ``channel`` for the block: ``on_payload`` gets each
        payload, ``lost`` is set if the connection goes. Leaving runs ``before_release``
        and UNLISTENs, unless the block raised :class:`DatabaseError` (lost, or not
        answering: UNLISTEN would only wait on it), which closes the connection instead."""

        def notified(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            on_payload(str(payload))

        def terminated(_conn: object) -> None:
            lost.set()

        async with connection as conn:
            await conn.add_listener(channel, notified)
            conn.add_termination_listener(terminated)
            try:
                yield conn
            except DatabaseError:
                # Closed here, never pooled again (a leader's backend exits: the lock goes).
                await _stop_listening(conn, terminated, None)
                raise
            except BaseException:
                await before_release(conn)
                await _stop_listening(conn, terminated, (channel, notified))
                raise
            await before_release(conn)
            await _stop_listening(conn, terminated, (channel, notified))

    async def job_end(self, job_id: int) -> tuple[str, str, bytes | None, str | None] | None:
        """Job ``job_id``'s state, job type, result and failure_info; ``None`` when there
        is no such job (never enqueued, not committed yet, or pruned by retention)."""
        rows = await self._fetch("job_end", job_id)
        if not rows:
            return None
        row = rows[0]
        return row[0], row[1], row[2], row[3]

    # -- introspection --------------------------------------------------------------------

    async def get_job(self, job_id: int) -> asyncpg.Record | None:
        """Every column of job ``job_id`` (get_job.sql), or ``None``."""
        rows = await self._fetch("get_job", job_id)
        return rows[0] if rows else None

    async def list_jobs(
        self,
        states: Sequence[str] | None,
        job_type: str | None,
        queue: str | None,
        after_id: int,
        limit: int,
    ) -> list[asyncpg.Record]:
        """A page of jobs in id order (list_jobs.sql)."""
        return await self._fetch(
            "list_jobs", None if states is None else list(states), job_type, queue, after_id, limit
        )

    async def retry(self, job_id: int) -> bool:
        """Put a failed or cancelled job back to pending (retry.sql); whether it was."""
        return bool(await self._fetch("retry", job_id))

    async def stats(self) -> list[asyncpg.Record]:
        """The rows of stats.sql."""
        return await self._fetch("stats")

    async def make_due(self, job_types: Sequence[str]) -> int:
        """Make every delayed job of ``job_types`` due now (make_due.sql); how many."""
        rows = await self._fetch("make_due", list(job_types))
        return int(rows[0][0])

    async def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (aqueue.testing's throwaway
        schemas only)."""
        await self._fetch("drop_schema")

    async def db_now(self) -> dt.datetime:
        """The database's clock."""
        rows = await self._fetch("db_now")
        now: dt.datetime = rows[0][0]
        return now

    async def periodic_enqueue(
        self, entries: Sequence[PeriodicTick]
    ) -> list[tuple[str, str, int | None]]:
        """Take each entry's tick (see periodic_enqueue.sql): (name, outcome, job id)."""
        rows = await self._fetch(
            "periodic_enqueue",
            [e.name for e in entries],
            [e.tick for e in entries],
            [e.job_type for e in entries],
            [e.queue for e in entries],
            [e.priority for e in entries],
            [e.max_tries for e in entries],
            [e.payload for e in entries],
            [e.overlap for e in entries],
        )
        return [(row[0], row[1], row[2]) for row in rows]

    async def prune_waiters(self) -> int:
        """Forget the waiters (App.result) older than a day; how many."""
        rows = await self._fetch("prune_waiters")
        return int(rows[0][0])

    async def _ping(self, conn: asyncpg.Connection, timeout_s: float) -> None:
        with self._statement("ping"):
            await conn.fetchval(self._sql["ping"], timeout=timeout_s)

    async def ping(self) -> None:
        """Run the ping statement on a pooled connection: the database answers."""
        await self._fetch("ping")

    # -- migrations -----------------------------------------------------------------------

    async def schema_version(self) -> int | None:
        """The latest migration applied to the schema: ``None`` when the schema or its
        migration history is missing, 0 when nothing was applied."""
        try:
            rows = await self._fetch("schema_version")
        except SchemaError:
            return None  # no schema, or no migration history in it
        version = rows[0][0]
        return 0 if version is None else int(version)

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


def _sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error; SQLAlchemy's wrapper of one included (its ``orig``
    carries the code, its ``__cause__`` the asyncpg error)."""
    for _ in range(4):
        if exc is None:
            return None
        state = getattr(exc, "sqlstate", None)
        if isinstance(state, str):
            return state
        orig = getattr(exc, "orig", None)
        exc = orig if isinstance(orig, BaseException) else exc.__cause__
    return None


async def _first_set(*events: anyio.Event) -> None:
    """Return once any of ``events`` is set."""
    async with anyio.create_task_group() as tg:

        async def until(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(until, event)


def _results(results: Sequence[bytes | None] | None) -> list[bytes | None] | None:
    """The results parameter: NULL when no attempt returned one (the usual case)."""
    if results is None or all(r is None for r in results):
        return None
    return list(results)


async def _stop_listening(
    conn: asyncpg.Connection,
    terminated: Callable[..., None],
    unlisten: tuple[str, Callable[..., None]] | None,
) -> None:
    """UNLISTEN (``unlisten``) and hand the connection back, or (``None``) close it."""
    # InterfaceError: the server closed it, and the pool has taken it back already.
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.remove_termination_listener(terminated)
        if unlisten is None:
            conn.terminate()
        elif not conn.is_closed():
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await conn.remove_listener(*unlisten)


@dataclass(frozen=True, slots=True)
class PeriodicTick:
    """One periodic entry's tick, as periodic_enqueue.sql takes it."""

    name: str
    tick: dt.datetime
    job_type: str
    queue: str
    priority: int
    max_tries: int
    payload: bytes
    overlap: bool


class Awaiting:
    """A wait for one job's end (see :meth:`Store.awaiting`)."""

    def __init__(self, job_id: int) -> None:
        self._id = str(job_id)
        self.lost = anyio.Event()
        self._ended = anyio.Event()

    def notified(self, payload: str) -> None:
        # '*': too many ids for one payload; the caller checks the table.
        if payload == "*" or self._id in payload.split():
            self._ended.set()

    def rearm(self) -> None:
        """Forget earlier notifications (call before checking the table)."""
        if self._ended.is_set():
            self._ended = anyio.Event()

    async def wait(self) -> None:
        """Return once notified; :class:`DatabaseError` when the connection is lost."""
        await _first_set(self._ended, self.lost)
        if self.lost.is_set() and not self._ended.is_set():
            raise DatabaseError("result", "the connection waiting for the job's end was lost")


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim statement did."""

    jobs: list[ClaimedJob]
    # Seconds until the next job not claimed here is due (<= 0: due but locked by another
    # claimer); None when there is none, or when every slot asked for was filled.
    next_due_s: float | None
    completed: set[int]  # ids of the attempts given to complete that are completed
    cursors: dict[int, int]  # lane id -> the seq it is now read to
    promoted: int  # delayed jobs (of any type) this claim made due
    db_now: dt.datetime  # the database clock during the claim
    # Due jobs were held back: locked by another claimer, or their type's rate window full.
    held: bool = False


@dataclass(frozen=True, slots=True)
class Unserved:
    """What :meth:`Store.unserved_jobs` found."""

    # (job_type, queue, due jobs, capped: more may wait than were counted), most first
    counts: list[tuple[str, str, int, bool]]


@dataclass(frozen=True, slots=True)
class Beat:
    """What one heartbeat statement found about the attempts it did not extend."""

    # No longer this worker's: {(id, attempt): the job's state now (None: the row is gone)}.
    lost: dict[tuple[int, int], str | None]
    # Rows another transaction had locked: not extended this time, and not known to be lost.
    unknown: list[tuple[int, int]]


@dataclass(slots=True)
class Listening:
    """The LISTEN connection, as :meth:`Store.listen` yields it. Between notifications it
    carries the keepalive ping and the heartbeats, one statement at a time.

    A heartbeat that fails on it marks it ``failed`` (beats go over the pool meanwhile) and
    wakes :meth:`wait_for_trouble`: the notifier pings at once, and a ping that answers clears
    ``failed``; one that does not gets the connection replaced."""

    _store: Store
    _conn: asyncpg.Connection
    lost: anyio.Event
    _lock: anyio.Lock = field(default_factory=anyio.Lock)
    failed: bool = False  # a heartbeat on it failed, and no ping has answered since
    leading: bool = False  # holds the leader's advisory lock (lead.sql)
    _trouble: anyio.Event = field(default_factory=anyio.Event)

    async def wait_for_trouble(self) -> None:
        """Return when the connection is lost or a heartbeat on it has failed."""
        await _first_set(self.lost, self._trouble)

    async def ping(self, timeout_s: float) -> None:
        """Raise :class:`DatabaseError` unless the connection answers within ``timeout_s``
        (a keepalive: a silently dead TCP connection would otherwise never notify again).
        An answer clears ``failed``."""
        async with self._lock:
            await self._store._ping(self._conn, timeout_s)
            if self.failed:
                self.failed = False
                self._trouble = anyio.Event()

    async def heartbeat(
        self, worker_id: str, ids: list[int], attempts: list[int], lease_s: float, timeout_s: float
    ) -> Beat:
        """:meth:`Store.heartbeat` on this connection, which claims and completions never
        use: one of theirs waiting on a row lock cannot hold up the leases. Within
        ``timeout_s`` in all, waiting for a ping to finish included."""
        deadline = anyio.current_time() + timeout_s
        try:
            with anyio.fail_after(timeout_s):
                await self._lock.acquire()
        except TimeoutError as exc:
            self._fail()
            raise DatabaseError(
                "heartbeat_listen", f"the connection was busy for {timeout_s:.2f} s"
            ) from exc
        try:
            return await self._store.heartbeat(
                worker_id,
                ids,
                attempts,
                lease_s,
                timeout_s=max(deadline - anyio.current_time(), 0.01),
                conn=self._conn,
                operation="heartbeat_listen",
            )
        except DatabaseError:
            self._fail()
            raise
        finally:
            self._lock.release()

    def _fail(self) -> None:
        self.failed = True
        self._trouble.set()

    async def lead(self, worker_id: str, timeout_s: float) -> tuple[bool, int]:
        """Try once to become the leader (lead.sql): whether this connection now holds the
        lock, and how many backends of a leader whose lease expired this try ended."""
        async with self._lock:
            try:
                with self._store._statement("lead"):
                    row = await self._conn.fetchrow(
                        self._store._sql["lead"], self._store.schema, worker_id, timeout=timeout_s
                    )
            except DatabaseError:
                self._fail()  # the notifier pings it at once: an answer, or a new connection
                raise
        assert row is not None
        if row[0]:
            self.leading = True
        return self.leading, int(row[2])

    async def resign(self) -> None:
        """Give leadership up before the connection goes back to the pool (whose reset
        does not release advisory locks). Bounded; if it fails, the connection is closed."""
        if not self.leading or self._conn.is_closed():
            return
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(5),
            contextlib.suppress(DatabaseError),
            self._store._statement("resign"),
        ):
            await self._conn.fetchval(self._store._sql["resign"])
            self.leading = False
        if self.leading:
            # Not released: a pooled connection must not keep it; closing releases it.
            self._conn.terminate()
