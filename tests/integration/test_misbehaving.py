"""Handlers and callers that misbehave: each ends in a state a person can read, never a hot
loop, a crash or a silent wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.lowlevel
import asyncpg
import pytest

import aqueue
from aqueue._store.store import Store
from tests.helpers import eventually, sqlalchemy_dsn
from tests.integration.test_worker import make_due_now, state_of
from tests.payloads_pb2 import Task


async def test_a_cancelled_error_the_handler_raises_itself_is_a_counted_failure(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    runs: list[int] = []

    @app.job(payload=Task, max_tries=2)
    async def awaits_a_cancelled_future(payload: Task) -> None:
        runs.append(aqueue.current_job().attempt)
        future = asyncio.get_running_loop().create_future()
        future.cancel()  # someone else cancelled what the handler waits on
        await future

    job_id = await app.enqueue(awaits_a_cancelled_future, Task())
    with anyio.fail_after(10):  # handed back uncounted, it would be claimed again forever
        assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("error", 1)
    assert "CancelledError" in row["failure_info"]
    assert "await future" in row["failure_info"]  # the traceback
    await make_due_now(pg, schema)
    with anyio.fail_after(10):
        assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("failed", 2)
    assert runs == [1, 2]


class _Custom(BaseException):
    """A BaseException of a library's own (as some frameworks use for control flow)."""


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, _Custom])
async def test_system_exit_and_keyboard_interrupt_in_a_handler_fail_the_attempt_only(
    app: aqueue.App,
    pg: asyncpg.Connection,
    schema: str,
    exc_type: type[BaseException],
    caplog: pytest.LogCaptureFixture,
) -> None:
    @app.job(payload=Task, max_tries=3)
    async def exits(payload: Task) -> None:
        raise exc_type(3)  # a library calling sys.exit(3)

    @app.job(payload=Task)
    async def fine(payload: Task) -> None: ...

    bad = await app.enqueue(exits, Task())
    async with app.worker(concurrency=1) as worker:
        with anyio.fail_after(10):
            await worker.wait_processed(1)
            good = await app.enqueue(fine, Task())
            await worker.wait_processed(2)  # the worker lives on and runs the next job
        assert not worker.stopping
    row = await state_of(pg, schema, bad)
    assert (row["state"], row["try_count"]) == ("error", 1)
    assert exc_type.__name__ in row["failure_info"]
    assert (await state_of(pg, schema, good))["state"] == "completed"
    assert f"raised {exc_type.__name__}" in caplog.text


async def test_failure_text_postgres_cannot_store_is_made_storable(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task, max_tries=3)
    async def bad_text(payload: Task) -> None:
        if payload.n == 0:
            raise ValueError("a NUL \x00 in the middle")
        if payload.n == 1:
            # A file name read with surrogateescape: a lone surrogate in the message.
            open(b"/nonexistent-\xff.txt".decode("utf-8", "surrogateescape"))  # noqa: ASYNC230, SIM115
        raise RuntimeError("an ordinary failure queued behind them")

    ids = await app.enqueue_many(bad_text, [Task(n=0), Task(n=1), Task(n=2)])
    async with app.worker(concurrency=3) as worker:
        with anyio.fail_after(10):  # a write that fails forever would wait here
            await worker.wait_processed(3)
    rows = [await state_of(pg, schema, job_id) for job_id in ids]
    assert [(r["state"], r["try_count"]) for r in rows] == [("error", 1)] * 3
    assert "a NUL \\x00 in the middle" in rows[0]["failure_info"]
    assert "/nonexistent-\\udcff.txt" in rows[1]["failure_info"]
    assert "an ordinary failure" in rows[2]["failure_info"]
    assert worker.statistics().errored == 3


async def test_a_failure_the_database_refuses_is_split_off_and_stored_in_ascii(
    dsn: str, pg: asyncpg.Connection
) -> None:
    """A LATIN1 database cannot store every character: the write fails with a data error
    (SQLSTATE 22P05) however often it is retried. The batch is split, the other failures
    land as they are, and the refused one is stored in ASCII."""
    database = f"aqueue_latin1_{time.monotonic_ns() % 10**9}"
    await pg.execute(
        f"CREATE DATABASE {database} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0"
    )
    try:
        base = urlsplit(sqlalchemy_dsn(dsn, driver=None))
        latin1_dsn = urlunsplit(base._replace(path=f"/{database}"))
        release = anyio.Event()
        async with aqueue.App(latin1_dsn, poll_interval_s=2.0) as latin1:

            @latin1.job(payload=Task, max_tries=3)
            async def fails(payload: Task) -> None:
                await release.wait()  # fail together: one batch
                raise RuntimeError(payload.label)

            await latin1.migrate()
            labels = ["plain ascii", "latin1 is fine: é", "not in latin1: 日本語"]
            ids = await latin1.enqueue_many(fails, [Task(label=label) for label in labels])
            async with latin1.worker(concurrency=3) as worker:
                with anyio.fail_after(10):
                    await worker.wait_until(lambda s: s.running == 3)
                    release.set()
                    await worker.wait_processed(3)
            conn = await asyncpg.connect(latin1_dsn)
            try:
                rows = await conn.fetch(
                    "SELECT state::text AS state, try_count, failure_info "
                    "FROM aqueue.background_jobs WHERE id = ANY($1) ORDER BY id",
                    ids,
                )
            finally:
                await conn.close()
        assert [(r["state"], r["try_count"]) for r in rows] == [("error", 1)] * 3
        assert "RuntimeError: plain ascii" in rows[0]["failure_info"]
        assert "RuntimeError: latin1 is fine: é" in rows[1]["failure_info"]
        refused = rows[2]["failure_info"]
        assert "RuntimeError: not in latin1: \\u65e5\\u672c\\u8a9e" in refused
        assert "stored this failure_info in ASCII" in refused
    finally:
        await pg.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


async def test_a_job_claimed_again_while_its_old_attempt_runs_here_cancels_that_one(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    attempts: list[int] = []
    cancelled: list[int] = []
    events: list[str] = []

    @app.job(payload=Task)
    async def lingering(payload: Task) -> None:
        attempt = aqueue.current_job().attempt
        attempts.append(attempt)
        if payload.n == 0:
            events.append(f"start {attempt}")
        if payload.n == 0 and attempt == 1:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(attempt)
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.3)  # cleanup that takes a while
                events.append("end 1")
                raise

    job_id = await app.enqueue(lingering, Task())
    # Heartbeats too rare to notice the lost lease before the job is claimed here again.
    async with app.worker(concurrency=4, lease_s=60, heartbeat_s=20) as worker:
        with anyio.fail_after(10):
            await worker.wait_until(lambda s: s.running == 1)
            # The lease runs out (as when the loop was stuck) and another worker rescues it.
            store = app._store
            assert isinstance(store, Store)

            async def expire_and_rescue() -> dict[int, str]:
                # A claim of this worker in flight holds its row (the rescue skips it), and
                # one that finds its lease expired renews it: expire it again, rescue again.
                await pg.execute(f"UPDATE {schema}.workers SET expires_at = now() - interval '1s'")
                return await store.rescue("another-worker")

            assert await eventually(expire_and_rescue, bool, timeout_s=5) == {job_id: "error"}
            await app.enqueue(lingering, Task(n=1))  # its NOTIFY wakes this worker to claim
            await worker.wait_until(lambda s: s.completed == 2 and s.running == 0)
        assert worker.statistics().stale == 1
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("completed", 2)
    assert sorted(attempts) == [1, 1, 2]  # the other job's first attempt, and this one's two
    assert cancelled == [1]
    # The new attempt started only once the old one had ended: never both at once.
    assert events == ["start 1", "end 1", "start 2"]


async def test_stop_is_idempotent_and_the_hard_stop_is_explicit(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def slowish(payload: Task) -> None:
        await anyio.sleep(0.5)

    first = await app.enqueue(slowish, Task())
    async with app.worker(concurrency=1, shutdown_timeout_s=30) as worker:
        with anyio.fail_after(5):
            await worker.wait_until(lambda s: s.running == 1)
        worker.stop()
        worker.stop()  # again: still graceful
    # Leaving the block after stop() is no hard stop: the handler finished.
    assert (await state_of(pg, schema, first))["state"] == "completed"

    second = await app.enqueue(slowish, Task(sleep_s=1))
    async with app.worker(concurrency=1, shutdown_timeout_s=30) as worker:
        with anyio.fail_after(5):
            await worker.wait_until(lambda s: s.running == 1)
        worker.stop()
        worker.stop(graceful=False)  # the explicit hard stop, after a graceful one
    row = await state_of(pg, schema, second)
    assert (row["state"], row["try_count"]) == ("pending", 0)
    assert worker.statistics().released == 1


async def test_close_stops_the_apps_workers_and_the_app_refuses_use_after(
    dsn: str, schema: str, pg: asyncpg.Connection
) -> None:
    app = aqueue.App(dsn, schema=schema, poll_interval_s=2.0)

    @app.job(payload=Task)
    async def slowish(payload: Task) -> None:
        await anyio.sleep(0.3)

    await app.migrate()
    job_id = await app.enqueue(slowish, Task())
    with anyio.fail_after(10):  # close() used to wait forever on the running worker
        async with app.worker(concurrency=1) as worker:
            await worker.wait_until(lambda s: s.running == 1)
            await app.close()
            assert worker.statistics().running == 0
            await worker.wait_stopped()
    assert (await state_of(pg, schema, job_id))["state"] == "completed"  # stopped gracefully
    with pytest.raises(aqueue.AppClosedError, match="closed"):
        await app.enqueue(slowish, Task())
    with pytest.raises(aqueue.AppClosedError):
        async with app.worker():
            pass
    await app.close()  # closing again is harmless
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 1


async def test_a_worker_starting_while_the_app_closes_does_not_start(
    app: aqueue.App,
) -> None:
    @app.job(payload=Task)
    async def nothing(payload: Task) -> None: ...

    started: list[aqueue.Worker] = []

    async def start_worker() -> None:
        with pytest.raises(aqueue.AppClosedError):
            async with app.worker() as worker:
                started.append(worker)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(start_worker)
            await anyio.lowlevel.checkpoint()  # it is checking the schema: close meanwhile
            await app.close()
    assert started == []


async def test_a_handler_ignoring_cancellation_does_not_hold_the_worker(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    released = False

    @app.job(payload=Task)
    async def stubborn(payload: Task) -> None:
        while not released:
            # The bug under test: cancellation swallowed, the loop goes on.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    job_id = await app.enqueue(stubborn, Task())
    try:
        t0 = time.monotonic()
        with anyio.fail_after(10):
            async with app.worker(
                concurrency=1, shutdown_timeout_s=0.2, cancel_grace_s=0.5
            ) as worker:
                await worker.wait_until(lambda s: s.running == 1)
                worker.stop(graceful=False)
        assert time.monotonic() - t0 < 5
        assert worker.statistics().abandoned == 1
        row = await state_of(pg, schema, job_id)
        assert (row["state"], row["try_count"]) == ("error", 1)
        assert "HandlerIgnoredCancellation" in row["failure_info"]
        assert "test_misbehaving.py" in row["failure_info"]  # where it is stuck
        assert "stubborn" in caplog.text
        assert "ignored its cancellation" in caplog.text
    finally:
        released = True
        await anyio.sleep(0.1)  # let the abandoned task see it and end


def test_final_failures_reach_stderr_with_no_logging_configured(dsn: str, schema: str) -> None:
    """No logging configured: Python's last-resort handler prints WARNING and above, and
    aqueue hides nothing from it; INFO stays quiet."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import anyio, aqueue, asyncpg
        from tests.payloads_pb2 import Task

        app = aqueue.App({dsn!r}, schema={schema!r})

        @app.job(payload=Task, max_tries=1)
        async def doomed(payload: Task) -> None:
            raise RuntimeError("no luck")

        async def main() -> None:
            async with app:
                await app.migrate()
                await app.enqueue(doomed, Task())
                await app.drain()
            conn = await asyncpg.connect({sqlalchemy_dsn(dsn, driver=None)!r})
            await conn.execute("DROP SCHEMA {schema} CASCADE")
            await conn.close()

        anyio.run(main)
        """
    )
    from tests.helpers import ROOT

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "out of tries" in done.stderr
    assert "doomed" in done.stderr
    assert "migrate: applied" not in done.stderr  # INFO is not shown unless asked for


def test_the_root_logger_is_left_alone() -> None:
    # A handler added to aqueue's loggers (even a NullHandler) would silence the last resort.
    for name in ("aqueue", "aqueue.worker", "aqueue.store"):
        assert not logging.getLogger(name).handlers
