"""App: the registry of job types, enqueue, migrations and the worker entry points."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from google.protobuf.message import Message

from ._enqueue import _check_payload, new_jobs
from ._inspect import Introspection
from ._runtime.worker import Worker, WorkerStatistics
from ._store import sql
from ._store.dsn import asyncpg_dsn, redact_dsn, sqlalchemy_url
from ._store.embedded import embedded_home, start_embedded
from ._store.pool import AsyncpgPool, Pool
from ._store.store import Store
from .backoff import DEFAULT_BACKOFF, RetryPolicy
from .config import (
    MAX_PAYLOAD_BYTES_DEFAULT,
    MAX_TRIES_DEFAULT,
    PRIORITY_DEFAULT,
    QUEUE_DEFAULT,
    SCHEMA_DEFAULT,
    WorkerSettings,
    queue_total,
    validate_schema,
)
from .control import RateLimit
from .errors import (
    MIGRATE_HINT,
    AppClosedError,
    ConfigurationError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    SchemaError,
)
from .hooks import HookDecorators
from .jobs import JobId
from .periodic import PeriodicEntry
from .registry import JobDeclaration, JobType, Registry

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._store.engine_pool import OwnEngine

__all__ = ["App"]

log = logging.getLogger("aqueue")

M = TypeVar("M", bound=Message)

APPLICATION_NAME = "aqueue"
RESULT_RECHECK_S = 30.0  # result() looks at the job this often even without a NOTIFY
DRAIN_ROUNDS_MAX = 1000  # drain(include_delayed=True) rounds before it gives up


class App(HookDecorators, Introspection):
    """An aqueue application: job types, and the database they are queued in.

    ``App(dsn=None, *, schema="aqueue", engine=None, home=None, max_payload_bytes=1 MiB,
    **worker_settings)``

    - ``dsn``: ``postgresql://...`` or ``postgresql+asyncpg://...``. ``None`` uses
      ``$AQUEUE_DSN``, else starts (or reuses) the embedded PostgreSQL of ``aqueue[embedded]``
      with its data under ``home`` (default ``$AQUEUE_HOME``, else ``./.aqueue``).
    - ``engine``: an existing SQLAlchemy ``AsyncEngine`` (asyncpg driver) to share the
      application's pool instead of a DSN. aqueue never disposes an engine it was given.
      Given a DSN, aqueue runs on a plain asyncpg pool of its own and never loads
      SQLAlchemy (a worker process stays small); see :attr:`engine`.
    - ``schema``: where aqueue's tables live; a plain identifier.
    - ``max_payload_bytes``: the largest encoded payload :meth:`enqueue` accepts (default
      1 MiB); a larger one raises :class:`PayloadError` before any SQL.
    - ``worker_settings``: defaults for every worker of this app (see
      :class:`aqueue.WorkerSettings`), e.g. ``lease_s=30``.

    Nothing connects until the first call that needs the database. Close it with
    :meth:`close`, or use ``async with aqueue.App(...) as app:``.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = SCHEMA_DEFAULT,
        engine: AsyncEngine | None = None,
        home: str | os.PathLike[str] | None = None,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES_DEFAULT,
        **worker_settings: Any,
    ) -> None:
        if isinstance(max_payload_bytes, bool) or not isinstance(max_payload_bytes, int):
            raise ConfigurationError(f"max_payload_bytes must be an int, got {max_payload_bytes!r}")
        if max_payload_bytes < 1:
            raise ConfigurationError(f"max_payload_bytes must be >= 1, got {max_payload_bytes}")
        self.max_payload_bytes = max_payload_bytes
        self.schema = validate_schema(schema)
        if dsn is not None and engine is not None:
            raise ConfigurationError("pass either dsn or engine, not both")
        if dsn is not None:
            asyncpg_dsn(dsn)  # refuse a bad DSN now, not at first use
        if engine is not None and engine.dialect.driver != "asyncpg":
            raise ConfigurationError(
                f"engine must use the asyncpg driver, not {engine.dialect.driver!r}"
            )
        self._dsn = dsn
        self._given_engine = engine
        self._own_engine: OwnEngine | None = None  # made by .engine on first use
        self._dsn_in_use: str | None = None
        self._home = home
        WorkerSettings.resolve(worker_settings)  # fail fast on a bad setting
        self._worker_settings = dict(worker_settings)
        self.registry = Registry()
        self._store: Store | None = None
        # Workers running now, each with an event set once it is done: close() stops them
        # and waits for those events.
        self._workers: dict[Worker, anyio.Event] = {}
        self._closed = False
        self._periodic: dict[str, PeriodicEntry] = {}
        self._result_waits: dict[anyio.CancelScope, anyio.Event] = {}  # result() calls

    # -- job types ------------------------------------------------------------------------

    def job(
        self,
        declaration: JobDeclaration[M] | None = None,
        /,
        *,
        payload: type[M] | None = None,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_tries: int | None = None,
        timeout_s: float | None = None,
        unique_key: Callable[[M], str | None] | None = None,
        backoff: RetryPolicy = DEFAULT_BACKOFF,
        discard_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        global_concurrency: int | None = None,
        rate_limit: RateLimit | None = None,
        result: type[Message] | None = None,
    ) -> Callable[[Callable[[M], Awaitable[Any]]], JobType[M]]:
        """Register an ``async def handler(payload)`` as a job type::

            @app.job(payload=SendEmail, max_tries=3)
            async def send_email(payload: SendEmail) -> None: ...

        ``name`` (default: the function's ``__name__``) is the ``job_type`` stored with each
        job; ``queue`` (default ``"default"``), ``priority`` (default 10; higher runs first)
        and ``max_tries`` (default 5) are the defaults for jobs of this type. ``timeout_s``
        bounds each attempt: one still running after it is cancelled, recorded as a failure
        (``failure_info`` says it timed out) and retried like any failure. Returns a
        :class:`aqueue.JobType` to pass to :meth:`enqueue`.

        Flow control (see the README's "Flow control"):

        - ``unique_key``: ``payload -> str | None``, the key of a job enqueued without its
          own ``unique_key=`` (see :meth:`enqueue`).
        - ``backoff``: the wait after a failed attempt: an :class:`aqueue.Backoff` (default
          ``Backoff(base_s=15, factor=2, max_s=86400, jitter=0.1)``) or a callable
          ``(attempt) -> seconds``.
        - ``discard_on``: exception types (and their subclasses) that fail the job at once,
          without retrying.
        - ``global_concurrency``: never more than this many attempts of the type running at
          once across every worker.
        - ``rate_limit``: an :class:`aqueue.RateLimit`: at most ``count`` attempts start in
          any ``period_s`` across every worker.

        ``result``: a protobuf message class the handler returns; the returned message is
        stored with the completed job, and :meth:`result` returns it decoded. Returning
        ``None`` stores none; returning anything else fails the attempt.

        Or bind a handler to a declaration shared with producers (:func:`aqueue.declare`)::

            @app.job(send_email_declared, timeout_s=60)
            async def send_email(payload: SendEmail) -> None: ...

        The job type takes the declaration's name, payload, queue, priority and max_tries;
        passing one of those too, with another value, raises :class:`ConfigurationError`.
        """
        if declaration is not None:
            if not isinstance(declaration, JobDeclaration):
                raise TypeError(
                    "@app.job takes a declaration from aqueue.declare as its only positional "
                    f"argument, got {declaration!r}; the options are keywords (payload=...)"
                )
            given = {
                "payload": payload,
                "name": name,
                "queue": queue,
                "priority": priority,
                "max_tries": max_tries,
            }
            for option, value in given.items():
                declared = getattr(declaration, option)
                if value is not None and value is not declared and value != declared:
                    raise ConfigurationError(
                        f"@app.job({declaration.name!r}): {option}={value!r} disagrees with "
                        f"the declaration ({option}={declared!r}); change the declaration, "
                        f"which producers share, or leave {option} out"
                    )
            if unique_key is not None and unique_key is not declaration.unique_key:
                raise ConfigurationError(
                    f"@app.job({declaration.name!r}): unique_key belongs to the declaration, "
                    "which producers share: pass it to aqueue.declare"
                )
            payload, name = declaration.payload, declaration.name
            queue, priority = declaration.queue, declaration.priority
            max_tries, unique_key = declaration.max_tries, declaration.unique_key
        elif payload is None:
            raise TypeError(
                "@app.job needs payload= (the handler's protobuf message class), or a "
                "declaration from aqueue.declare as its first argument"
            )
        job_payload = payload

        def register(handler: Callable[[M], Awaitable[Any]]) -> JobType[M]:
            return self.registry.register(
                handler,
                payload=job_payload,
                name=name,
                queue=QUEUE_DEFAULT if queue is None else queue,
                priority=PRIORITY_DEFAULT if priority is None else priority,
                max_tries=MAX_TRIES_DEFAULT if max_tries is None else max_tries,
                timeout_s=timeout_s,
                unique_key=unique_key,
                backoff=backoff,
                discard_on=discard_on,  # type: ignore[arg-type]  # checked and made a tuple there
                global_concurrency=global_concurrency,
                rate_limit=rate_limit,
                result=result,
            )

        return register

    def periodic(
        self,
        job: JobType[M] | None = None,
        /,
        *,
        cron: str | None = None,
        every: dt.timedelta | None = None,
        payload: M | None = None,
        tz: str | None = None,
        name: str | None = None,
        overlap: bool = False,
    ) -> Any:
        """Enqueue ``job`` on a schedule, once per tick across every worker::

            app.periodic(send_report, cron="0 7 * * mon-fri", payload=Report(), tz="Europe/Berlin")
            app.periodic(refresh, every=dt.timedelta(minutes=5), payload=Refresh())

            @app.periodic(cron="*/15 * * * *")  # payload: the message built empty
            @app.job(payload=Sweep)
            async def sweep(payload: Sweep) -> None: ...

        ``cron``: a five-field cron expression (``cronsim`` parses it: ``L``, ``W`` and
        ``#`` too), in time zone ``tz`` (an IANA name; default UTC). Or ``every``: a
        ``timedelta`` of at least a second; its ticks fall on whole multiples of it since
        1970-01-01 UTC (``every=timedelta(hours=1)`` ticks on the hour).

        One worker of the fleet, the leader, enqueues the jobs; the database takes each tick
        of an entry once, whatever the number of workers. An entry seen for the first time
        starts with its next tick. Ticks missed while no worker ran make one job (for the
        latest), not one each. While the entry's previous job is still pending or running a
        tick is skipped, unless ``overlap=True``. ``name`` (default: the job type's name)
        keys the entry's row in the ``periodic`` table: give one to schedule a job type
        twice. The job takes the job type's queue, priority and max_tries.

        Returns the :class:`aqueue.PeriodicEntry` (the decorator form returns the job type).
        Raises :class:`ConfigurationError` for a bad cron expression, time zone, interval or
        a name already taken, :class:`PayloadError` for a payload of another type.
        """

        def add(job_type: JobType[M], message: M | None) -> PeriodicEntry:
            if not isinstance(job_type, JobType):
                raise TypeError(
                    f"periodic needs what @app.job returned (a JobType), got {job_type!r}"
                )
            if self.registry.get(job_type.name) is not job_type:
                raise ConfigurationError(
                    f"periodic({job_type.name!r}): the job type is not registered in this app"
                )
            if message is None:
                message = job_type.payload()
            _check_payload(job_type.name, job_type, message)
            entry = PeriodicEntry.make(
                job_type,  # type: ignore[arg-type]  # any message type
                message,
                cron=cron,
                every=every,
                tz=tz,
                name=name,
                overlap=overlap,
            )
            if entry.name in self._periodic:
                raise ConfigurationError(
                    f"periodic entry {entry.name!r} exists already: pass name= to tell them apart"
                )
            self._periodic[entry.name] = entry
            return entry

        if job is not None:
            return add(job, payload)

        def decorate(job_type: JobType[M]) -> JobType[M]:
            add(job_type, payload)
            return job_type

        return decorate

    # -- database -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise AppClosedError(
                "this aqueue.App was closed; it does not reconnect (make a new App)"
            )

    async def _get_store(self) -> Store:
        self._check_open()
        if self._store is None:
            pool: Pool
            dsn = None
            if self._given_engine is not None:
                from ._store.engine_pool import EnginePool

                pool = EnginePool(self._given_engine)
            else:
                dsn = self._dsn or os.environ.get("AQUEUE_DSN") or None
                if dsn is None:
                    home = embedded_home(self._home)
                    dsn = await anyio.to_thread.run_sync(start_embedded, home)
                dsn = asyncpg_dsn(dsn)
                log.info("using database %s (schema %s)", redact_dsn(dsn), self.schema)
                # Names aqueue's sessions in pg_stat_activity.
                pool = AsyncpgPool(dsn, APPLICATION_NAME)
            if self._closed:  # closed while we connected
                await pool.close()
                self._check_open()
            if self._store is None:  # another task may have won while we awaited
                self._dsn_in_use = dsn
                self._store = Store(pool, self.schema)
            else:
                await pool.close()
        return self._store

    async def migrate(self) -> list[int]:
        """Create or upgrade aqueue's tables in ``schema``. Idempotent, and safe to run from
        many processes at once (an advisory lock serializes them). Returns the migration
        versions this call applied."""
        store = await self._get_store()
        applied = await store.migrate(sql.raw_migrations())
        if applied:
            log.info("migrate: applied %s to schema %s", applied, self.schema)
        return applied

    def _override_dsn(self, dsn: str) -> None:
        """Used by the CLI's --dsn: replace the DSN before anything connected."""
        if self._store is not None:
            raise ConfigurationError("the app is already connected; set the DSN before use")
        asyncpg_dsn(dsn)
        self._dsn, self._given_engine = dsn, None

    @property
    def engine(self) -> AsyncEngine | None:
        """A SQLAlchemy ``AsyncEngine`` on the app's database, for your own transactions
        (pass one of its connections as ``conn=`` to :meth:`enqueue`): the engine passed
        in, or, once the app has connected, one made from its DSN on first use and disposed
        by :meth:`close`. ``None`` before the app connects and after :meth:`close`. The one
        made here belongs to the running event loop: another loop gets an engine of its own."""
        if self._given_engine is not None:
            return self._given_engine
        if self._store is None or self._dsn_in_use is None:
            return None
        if self._own_engine is None:
            from ._store.engine_pool import OwnEngine

            self._own_engine = OwnEngine(sqlalchemy_url(self._dsn_in_use))
        return self._own_engine.get()  # one per event loop (see OwnEngine)

    # -- enqueue --------------------------------------------------------------------------

    async def enqueue(
        self,
        job: JobDeclaration[M] | str,
        payload: Message,
        *,
        priority: int | None = None,
        max_tries: int | None = None,
        delay: float | dt.timedelta | None = None,
        run_at: dt.datetime | None = None,
        queue: str | None = None,
        conn: object | None = None,
        unique_key: str | None = None,
    ) -> JobId:
        """Queue one job; return its id (a :class:`aqueue.JobId`, an ``int``).

        ``job`` is a :class:`JobType` (what ``@app.job`` returned), a
        :class:`JobDeclaration` (:func:`aqueue.declare`: for producers that do not import the
        handlers), or a job type name. A bare name takes its defaults from the job type if
        this process registered it, else from the table (queue ``default``, priority 10,
        ``max_tries`` 5), not from the handler's options in some worker. ``delay`` (seconds
        or a timedelta) or ``run_at`` (an aware datetime) postpone the first attempt; the
        database clock decides when it is due. ``priority``, ``max_tries`` and ``queue``
        override the job type's defaults.

        ``conn`` (a SQLAlchemy ``AsyncConnection`` or ``AsyncSession``, or an asyncpg
        ``Connection``) inserts the job in the caller's open transaction: aqueue does not
        commit, and the job exists and wakes workers only if the caller commits. Without
        ``conn`` the job is committed before this returns.

        ``unique_key`` (default: the job type's ``unique_key`` callable applied to the
        payload, if it has one; ``None`` from either means no uniqueness): while a job of the
        same type holding this key is pending, error or running, nothing is inserted and that
        job's id comes back with ``.duplicate`` set (its queue, priority and due time stay as
        they were). Once it has ended the key is free. The database enforces it, so
        concurrent enqueues from many processes agree on one job; with ``conn`` under
        READ COMMITTED a concurrent enqueue of the same key waits for the other transaction
        to end (REPEATABLE READ and SERIALIZABLE raise a serialization failure instead).

        Raises ``TypeError``/``ValueError`` (:class:`PayloadError` for the payload) before
        any SQL on bad input, :class:`DatabaseError` if the insert fails.
        """
        rows = new_jobs(
            self.registry,
            job,
            [payload],
            priority,
            max_tries,
            delay,
            run_at,
            queue,
            self.max_payload_bytes,
            None if unique_key is None else [unique_key],
        )
        store = await self._get_store()
        (job_id,) = await store.enqueue(rows, conn)
        return job_id

    async def enqueue_many(
        self,
        job: JobDeclaration[M] | str,
        payloads: Iterable[Message],
        *,
        priority: int | None = None,
        max_tries: int | None = None,
        delay: float | dt.timedelta | None = None,
        run_at: dt.datetime | None = None,
        queue: str | None = None,
        conn: object | None = None,
        unique_keys: Sequence[str | None] | None = None,
    ) -> list[JobId]:
        """Queue one job per payload in a single statement (one NOTIFY); return the ids in
        payload order. Same options and errors as :meth:`enqueue`; ``unique_keys`` gives
        one key (or ``None``) per payload: a key held by an existing job, or repeated
        within the call, returns the id of the job that holds it, marked ``duplicate``."""
        items = list(payloads)
        rows = new_jobs(
            self.registry,
            job,
            items,
            priority,
            max_tries,
            delay,
            run_at,
            queue,
            self.max_payload_bytes,
            unique_keys,
        )
        if not items:
            return []
        store = await self._get_store()
        return await store.enqueue(rows, conn)

    async def cancel(self, job_id: int) -> bool:
        """Cancel a job: it will not run (again). Returns whether it was cancelled.

        A ``pending`` or ``error`` job becomes ``cancelled`` at once. A ``running`` job
        becomes ``cancelled`` too, and its handler is cancelled within about a second on
        whichever worker runs it (told through NOTIFY; its heartbeat also finds out from the
        table). The attempt is not retried, and whatever it reports later changes nothing.
        A job that already ended (``completed``, ``failed``, ``cancelled``) or does not exist
        is left alone: ``False``.
        """
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(f"job_id must be an int, got {job_id!r}")
        store = await self._get_store()
        was = await store.cancel(job_id)
        if was is not None:
            log.info("cancel: job %d cancelled (was %s)", job_id, was)
        return was is not None

    async def result(self, job_id: int, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (the issue names it)
        """Wait for job ``job_id`` to end and return its result: the message its handler
        returned, decoded with the job type's ``result=`` class (when the job type is
        registered in this app; else the raw bytes), or ``None`` for a type without
        ``result=`` or a handler that returned ``None``.

        Waits on LISTEN, not by polling: the statement that ends the job notifies this
        call (which holds one pooled connection while it waits). Raises
        :class:`aqueue.JobFailed` (its ``failure_info`` holds the text) when the job failed
        for good, :class:`aqueue.JobCancelled` when it was cancelled,
        :class:`aqueue.JobNotFound` when there is no such job (never enqueued, not
        committed yet, or pruned by retention), ``TimeoutError`` when ``timeout`` seconds
        pass first (the job is left alone), :class:`DatabaseError` when the database fails
        meanwhile, :class:`AppClosedError` when :meth:`close` ends the wait.
        """
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(f"job_id must be an int, got {job_id!r}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise ValueError(f"timeout must be seconds >= 0 or None, got {timeout!r}")
        store = await self._get_store()
        # close() cancels this wait (its pool could not close while the wait holds a
        # connection): then AppClosedError.
        scope, done = anyio.CancelScope(), anyio.Event()
        self._result_waits[scope] = done
        try:
            with scope, anyio.fail_after(timeout):
                async with store.awaiting(job_id) as awaiting:
                    while True:
                        awaiting.rearm()
                        end = await store.job_end(job_id)
                        if end is None:
                            raise JobNotFound(job_id)
                        state, job_type, raw, failure_info = end
                        if state == "completed":
                            return self._decode_result(job_type, raw)
                        if state == "failed":
                            raise JobFailed(job_id, failure_info)
                        if state == "cancelled":
                            raise JobCancelled(job_id)
                        # Told by NOTIFY; a look at the table now and then all the same (a
                        # worker of an older release ends jobs without telling waiters).
                        with anyio.move_on_after(RESULT_RECHECK_S):
                            await awaiting.wait()
        finally:
            del self._result_waits[scope]
            done.set()
        raise AppClosedError(f"the app was closed while result() waited for job {job_id}")

    def _decode_result(self, job_type: str, raw: bytes | None) -> Any:
        if raw is None:
            return None
        registered = self.registry.get(job_type)
        message_class = None if registered is None else registered.result
        if message_class is None:
            return raw  # a type this app does not know: the bytes as stored
        return message_class.FromString(raw)

    # -- workers --------------------------------------------------------------------------

    def _settings(self, concurrency: int | None, overrides: dict[str, Any]) -> WorkerSettings:
        merged = {**self._worker_settings, **overrides}
        if concurrency is not None:
            merged["concurrency"] = concurrency
        return WorkerSettings.resolve(merged)

    def _check_registered(self) -> None:
        if not len(self.registry):
            raise ConfigurationError("no job types registered: decorate handlers with @app.job")

    async def _checked_store(self, operation: str) -> Store:
        """The store, once the schema is known to be at this aqueue's migration; else
        :class:`SchemaError`. (A database that does not answer raises too: at start, a wrong
        DSN should not pass for an outage.)"""
        store = await self._get_store()
        want = sql.raw_migrations()[-1].version
        have = await store.schema_version()
        if not have:
            raise SchemaError(
                operation, f"schema {self.schema!r} has no aqueue tables: {MIGRATE_HINT}"
            )
        if have < want:
            raise SchemaError(
                operation,
                f"schema {self.schema!r} is at migration {have}, this aqueue needs {want}: "
                f"{MIGRATE_HINT}",
            )
        if have > want:
            raise SchemaError(
                operation,
                f"the database schema is at version {have}, newer than this aqueue ({want}): "
                "upgrade aqueue on this host",
            )
        return store

    async def drain(
        self, concurrency: int = 1, *, include_delayed: bool = False, **settings: Any
    ) -> int:
        """Run jobs that are due now until none is due and none is running; return the number
        of attempts run. Jobs that fail are retried only if they come due while draining.

        ``include_delayed=True`` (for tests): jobs not due yet run too, those enqueued with a
        delay and those waiting out a backoff or a snooze: they are made due now, drained,
        and again until none of this app's job types waits (a job failing every attempt
        runs until it is out of tries). It gives up after 1,000 rounds (``RuntimeError``):
        a handler that keeps enqueueing delayed jobs would otherwise never let it end.

        Raises :class:`SchemaError` if the schema is not at this aqueue's migration."""
        if not len(self.registry):
            return 0
        store = await self._checked_store("drain")
        attempts = 0
        for _ in range(DRAIN_ROUNDS_MAX):
            worker = Worker(
                store,
                self.registry,
                self._settings(concurrency, settings),
                listen=False,
                exit_when_idle=True,
            )
            with self._running(worker), _single_error():
                await worker.run()
            attempts += worker.statistics().claimed
            if not include_delayed or not await store.make_due(self.registry.names()):
                return attempts
        raise RuntimeError(
            f"drain(include_delayed=True): delayed jobs still waited after {DRAIN_ROUNDS_MAX} "
            "rounds (a handler that keeps enqueueing delayed jobs?)"
        )

    @contextlib.asynccontextmanager
    async def worker(
        self, concurrency: int | None = None, **settings: Any
    ) -> AsyncIterator[Worker]:
        """Run a worker in the background of the enclosing block::

            async with app.worker(concurrency=16) as worker:
                ...  # serve requests; jobs run meanwhile

        It listens for new jobs, claims due ones (only the types this app registered) and
        runs up to ``concurrency`` handlers at once. Leaving the block stops it gracefully:
        running handlers get ``shutdown_timeout_s`` to finish. ``settings`` override the
        app's worker settings (``queues=["mail"]``, ``lease_s=10``, ...). ``queues`` may
        give queues slots of their own: ``queues={"default": 16, "mail": 4}`` runs up to 16
        jobs of ``default`` and 4 of ``mail`` at once; a queue sized ``None`` (or named in a
        list) shares ``concurrency`` with the others like it.

        Before anything runs it checks the schema's migration: :class:`SchemaError` when it
        is missing, older or newer than this aqueue.
        """
        self._check_registered()
        settings_ = self._settings(concurrency, settings)
        store = await self._checked_store("worker")
        worker = Worker(store, self.registry, settings_, periodic=list(self._periodic.values()))
        with self._running(worker), _single_error():
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                log.info(
                    "worker %s started (concurrency %d%s)",
                    worker.worker_id,
                    queue_total(worker.settings),
                    _describe_queues(worker.settings),
                )
                try:
                    yield worker
                finally:
                    # Graceful even when the block raised; a cancellation cuts it short.
                    worker.stop()
                    await worker.wait_stopped()
        log.info("worker %s stopped: %s", worker.worker_id, worker.statistics())

    async def run_worker(self, concurrency: int | None = None, **settings: Any) -> WorkerStatistics:
        """Run a worker until cancelled, or until SIGTERM/SIGINT (when called from the main
        thread): the first signal stops claiming and lets running handlers finish (up to
        ``shutdown_timeout_s``); a second one cancels them. Cancelled attempts go back to the
        queue. Returns the worker's final statistics."""
        async with self.worker(concurrency, **settings) as worker:
            if threading.current_thread() is threading.main_thread():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_stop_on_signals, worker)
                    await worker.wait_stopped()
                    tg.cancel_scope.cancel()
            else:
                await worker.wait_stopped()
        return worker.statistics()

    # -- lifecycle ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _running(self, worker: Worker) -> Any:
        done = self._workers[worker] = anyio.Event()
        try:
            # close() may have run while this worker was made (its store is awaited first):
            # then it must not start on a pool that close() released.
            self._check_open()
            yield
        finally:
            del self._workers[worker]
            done.set()

    async def close(self) -> None:
        """End waiting :meth:`result` calls (they raise :class:`AppClosedError`), stop this
        app's running workers (gracefully: as :meth:`Worker.stop`, waiting for them), then
        release the database pool (never an engine passed in). The app is done
        after this: any further use raises :class:`AppClosedError`. Closing twice is fine."""
        self._closed = True
        waits = list(self._result_waits.items())
        for scope, _ in waits:
            scope.cancel()
        for _, done in waits:
            await done.wait()
        workers = list(self._workers.items())
        for worker, _ in workers:
            worker.stop()
        for worker, done in workers:
            await _first_of(worker.wait_stopped, done.wait)
        store, self._store = self._store, None
        if store is not None:
            await store.pool.close()
        engine, self._own_engine = self._own_engine, None
        if engine is not None:
            await engine.close()

    async def __aenter__(self) -> App:
        self._check_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _describe_queues(settings: WorkerSettings) -> str:
    if settings.queues is None:
        return ", every queue"
    sized = settings.queue_slots
    shared = [q for q in settings.queues if q not in sized]
    parts = [f"{q}={n}" for q, n in sized.items()]
    if shared:
        parts.append(f"{'+'.join(shared)} sharing {settings.concurrency}")
    return ", queues " + ", ".join(parts)


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return when the first of ``waits`` returns. (close() waits for a worker to stop, or
    for its start to have failed before it ran: whichever comes.)"""
    async with anyio.create_task_group() as tg:

        async def wait_then_stop(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(wait_then_stop, wait)


async def _stop_on_signals(worker: Worker) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            graceful = not worker.stopping
            log.info(
                "received %s: %s",
                signal.Signals(signum).name,
                "stopping gracefully" if graceful else "cancelling running jobs",
            )
            worker.stop(graceful=graceful)


@contextlib.contextmanager
def _single_error() -> Any:
    """anyio wraps errors from task groups in ExceptionGroups; surface a lone error as itself."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from group
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterable[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
