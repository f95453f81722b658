"""Helpers for testing code that uses aqueue, in your own test suite.

Run one handler with a made-up job context (no database needed for a handler that touches
none)::

    import aqueue.testing

    async def test_send_email_reads_its_attempt() -> None:
        await aqueue.testing.run_handler(send_email, SendEmail(to="a@example.com"), attempt=3)

Or test against a real PostgreSQL with the pytest plugin: in your ``conftest.py``::

    pytest_plugins = ["aqueue.testing"]

    @fixture
    def aqueue_target():
        return myproject.jobs.app  # the App your code enqueues with

then ask for ``aqueue_app`` in a test: your App, bound for that test to a fresh schema
(migrated, dropped afterwards) on ``$AQUEUE_TEST_DSN``, else on an embedded PostgreSQL started
once per session. Your code that calls ``myproject.jobs.app.enqueue(...)`` writes there.
Check what it queued with :func:`enqueued` / :func:`assert_enqueued`, run the jobs with
``await aqueue_app.drain(include_delayed=True)``. The async fixtures run under whichever
async pytest plugin your suite uses (anyio's, or pytest-asyncio in auto mode).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import DecodeError, Message

from ._enqueue import _check_payload
from ._inspect import JobRecord
from .app import App
from .config import validate_name, validate_schema
from .jobs import JobInfo, JobState, _current
from .registry import JobDeclaration, JobType, check_job_options

__all__ = [
    "aqueue_app",
    "aqueue_dsn",
    "aqueue_target",
    "assert_enqueued",
    "bind",
    "enqueued",
    "run_handler",
]

M = TypeVar("M", bound=Message)

if TYPE_CHECKING:
    import pytest

    fixture = pytest.fixture
else:
    try:
        import pytest

        fixture = pytest.fixture
    except ImportError:  # run_handler and the assertions work without pytest

        def fixture(*args: Any, **kwargs: Any) -> Any:
            return args[0] if args and callable(args[0]) else (lambda function: function)


WAITING = (JobState.PENDING, JobState.ERROR)
# What bind() points elsewhere and gives back: where the App connects, and its connection.
_BOUND = ("_dsn", "_given_engine", "schema", "_store", "_own_engine", "_dsn_in_use", "_closed")


async def run_handler(
    job: JobType[M],
    payload: M,
    *,
    id: int = 1,
    attempt: int = 1,
    max_tries: int | None = None,
    queue: str | None = None,
    worker_id: str = "test",
) -> Any:
    """Run ``job``'s handler on ``payload`` in the calling task, with
    :func:`aqueue.current_job` returning a :class:`aqueue.JobInfo` of the values given, as a
    worker would run attempt ``attempt`` of job ``id``; return what the handler returned (a
    type's ``result=`` message, say).

    ``job`` is what ``@app.job`` returned; ``max_tries`` and ``queue`` default to its own.
    Whatever the handler raises propagates. Nothing is queued, claimed or written, and
    neither ``timeout_s`` nor the app's middleware and hooks apply. After it returns (or
    raises), ``current_job()`` is what it was before the call (``LookupError`` outside a
    handler).

    Raises :class:`aqueue.PayloadError` when ``payload`` is not the job's message type (as
    :meth:`aqueue.App.enqueue` would), ``TypeError``/``ValueError`` for a bad ``id``,
    ``attempt`` or ``max_tries``, :class:`aqueue.ConfigurationError` for a bad queue name.
    """
    if not isinstance(job, JobType):
        raise TypeError(f"job must be what @app.job returned (a JobType), got {job!r}")
    _check_payload(job.name, job, payload)  # the same check as enqueue
    for name, value in (("id", id), ("attempt", attempt)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    max_tries = job.max_tries if max_tries is None else max_tries
    check_job_options(job.priority, max_tries)
    queue = validate_name("queue name", job.queue if queue is None else queue)
    token = _current.set(JobInfo(id, job.name, queue, attempt, max_tries, worker_id))
    try:
        return await job.handler(payload)
    finally:
        _current.reset(token)


async def enqueued(app: App, job: JobDeclaration[Any] | str) -> list[JobRecord]:
    """The jobs of type ``job`` (what ``@app.job`` or ``aqueue.declare`` returned, or a
    name) waiting in ``app``'s database: ``pending`` or ``error``, due now or later, in id
    order, as :class:`aqueue.JobRecord` (payloads decoded when ``app`` registered the
    type). Running and finished jobs are not listed: ask :meth:`aqueue.App.list_jobs`."""
    found: list[JobRecord] = []
    after = None
    while True:
        page = await app.list_jobs(state=WAITING, job_type=job, after_id=after, limit=1000)
        found += page
        if len(page) < 1000:
            return found
        after = page[-1].id


async def assert_enqueued(
    app: App,
    job: JobDeclaration[Any] | str,
    payload: Message | None = None,
    *,
    count: int | None = None,
) -> list[JobRecord]:
    """Assert that a job of type ``job`` waits in ``app``'s database (see :func:`enqueued`)
    with ``payload`` (``None``: any payload), exactly ``count`` of them when given (else at
    least one); return those jobs. A payload ``app`` does not decode (a type it does not
    register) is read as ``payload``'s message type to compare. Raises ``AssertionError``
    listing what does wait."""
    waiting = await enqueued(app, job)
    matching = [r for r in waiting if payload is None or _same(r.payload, payload)]
    if (count is None and matching) or (count is not None and len(matching) == count):
        return matching
    name = job if isinstance(job, str) else job.name
    wanted = "any payload" if payload is None else f"payload {_show(payload)}"
    how_many = "at least one" if count is None else f"exactly {count}"
    lines = [f"expected {how_many} waiting {name!r} job(s) with {wanted}; found {len(matching)}."]
    lines.append(
        f"Waiting {name!r} jobs ({len(waiting)}):" if waiting else f"No {name!r} job waits."
    )
    lines += [
        f"  job {r.id} ({r.state.value}, queue {r.queue}): {_show(r.payload)}" for r in waiting[:20]
    ]
    if len(waiting) > 20:
        lines.append(f"  ... and {len(waiting) - 20} more")
    raise AssertionError("\n".join(lines))


def _same(stored: Message | bytes, payload: Message) -> bool:
    if isinstance(stored, bytes):  # a type the app does not register: read it as payload's
        try:
            return type(payload).FromString(stored) == payload
        except (DecodeError, ValueError, RuntimeError):
            return False
    return stored == payload


def _show(payload: Message | bytes) -> str:
    if isinstance(payload, bytes):
        return f"<{len(payload)} raw bytes>"
    text = " ".join(str(payload).split())
    return f"{type(payload).__name__}({text})"


@contextlib.asynccontextmanager
async def bind(app: App, dsn: str, schema: str | None = None) -> AsyncIterator[App]:
    """Point ``app`` (the same object your code enqueues with) at ``dsn`` and a fresh schema
    (``schema``, default ``aqueue_test_<random>``) for the block: migrated on entry; on exit
    its pool is closed, the schema dropped, and the app's earlier DSN, schema and connection
    given back. ``app`` must not be running a worker. What :func:`aqueue_app` uses."""
    if app._workers:
        raise RuntimeError("bind: the app has running workers; stop them first")
    schema = validate_schema(schema or f"aqueue_test_{secrets.token_hex(5)}")
    saved = {name: getattr(app, name) for name in _BOUND}
    fresh = {"_dsn": dsn, "schema": schema, "_closed": False}
    for name in _BOUND:
        setattr(app, name, fresh.get(name))
    try:
        await app.migrate()
        yield app
    finally:
        store = app._store
        try:
            if store is not None:
                await store.drop_schema()
        finally:
            own_engine = app._own_engine
            if store is not None:
                await store.pool.close()
            if own_engine is not None:
                await own_engine.close()
            for name, value in saved.items():
                setattr(app, name, value)


# -- the pytest plugin (pytest_plugins = ["aqueue.testing"]) -----------------------------


@fixture(scope="session")
def aqueue_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server the tests may create schemas in: ``$AQUEUE_TEST_DSN``,
    else an embedded server (``aqueue[embedded]``) started once for the session in a
    temporary folder, and removed after it."""
    configured = os.environ.get("AQUEUE_TEST_DSN")
    if configured:
        yield configured
        return
    from ._store.embedded import start_embedded

    folder = Path(tempfile.mkdtemp(prefix="aqueue-test-"))
    try:
        yield start_embedded(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@fixture
def aqueue_target() -> App:
    """The App :func:`aqueue_app` binds: override it in your conftest.py to return yours
    (the one your code enqueues with). By default a fresh, empty ``aqueue.App()``."""
    return App()


@fixture
async def aqueue_app(aqueue_target: App, aqueue_dsn: str) -> AsyncIterator[App]:
    """``aqueue_target`` bound for this test to a fresh, migrated schema on ``aqueue_dsn``
    (see :func:`bind`); the schema is dropped afterwards."""
    async with bind(aqueue_target, aqueue_dsn) as app:
        yield app
