"""In-process safety: timeouts, cancelling, a blocked event loop, forged notifications, payload
limits and secrets. The same guarantees under real kills and outages: tests/faults."""

from __future__ import annotations

import logging
import threading
import time

import anyio
import asyncpg
import pytest
from sqlalchemy.engine import make_url

import aqueue
from aqueue._store import sql
from tests.helpers import sqlalchemy_dsn
from tests.integration.test_worker import make_due_now, state_of
from tests.payloads_pb2 import Task


async def test_timeout_cancels_the_attempt_records_it_and_retries(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    ended: list[float] = []

    @app.job(payload=Task, timeout_s=0.5, max_tries=2)
    async def slow(payload: Task) -> None:
        try:
            await anyio.sleep(30)
        finally:
            ended.append(time.monotonic())

    job_id = await app.enqueue(slow, Task())
    started = time.monotonic()
    assert await app.drain() == 1
    assert 0.4 <= ended[0] - started <= 1.5
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("error", 1)
    assert "TimeoutError" in row["failure_info"]
    assert "timeout_s=0.5" in row["failure_info"]
    # Retried like any failure: the second (last) attempt times out too and ends failed.
    await make_due_now(pg, schema)
    assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("failed", 2)


async def test_timeout_does_not_touch_an_attempt_that_finishes_in_time(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task, timeout_s=5)
    async def quick(payload: Task) -> None:
        await anyio.sleep(0.05)

    job_id = await app.enqueue(quick, Task())
    assert await app.drain() == 1
    assert (await state_of(pg, schema, job_id))["state"] == "completed"


@pytest.mark.parametrize("bad", [0, -1, float("inf"), "5", True])
def test_bad_timeouts_are_refused_at_registration(bad: object) -> None:
    app = aqueue.App("postgresql://localhost/none")
    with pytest.raises(ValueError, match="timeout_s"):

        @app.job(payload=Task, timeout_s=bad)  # type: ignore[arg-type]
        async def handler(payload: Task) -> None: ...


async def test_cancel_pending_and_error_jobs_and_not_finished_ones(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    runs: list[int] = []

    @app.job(payload=Task, max_tries=3)
    async def job(payload: Task) -> None:
        runs.append(payload.n)
        if payload.fail:
            raise RuntimeError("fails")

    pending = await app.enqueue(job, Task(n=1))
    erroring = await app.enqueue(job, Task(n=2, fail=True))
    done = await app.enqueue(job, Task(n=3))
    await app.cancel(pending)
    assert await app.drain() == 2  # the erroring job and the one that completes
    assert (await state_of(pg, schema, erroring))["state"] == "error"
    assert await app.cancel(erroring) is True
    assert await app.cancel(done) is False  # completed: left alone
    assert await app.cancel(erroring) is False  # already cancelled
    assert await app.cancel(10**12) is False  # no such job
    await make_due_now(pg, schema)
    assert await app.drain() == 0
    states = {
        r["id"]: r["state"]
        for r in await pg.fetch(f"SELECT id, state::text FROM {schema}.background_jobs")
    }
    assert states == {pending: "cancelled", erroring: "cancelled", done: "completed"}
    assert sorted(runs) == [2, 3]
    with pytest.raises(TypeError):
        await app.cancel("1")  # type: ignore[arg-type]


async def test_cancel_a_running_job_stops_its_handler_within_a_second(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    started = anyio.Event()
    stopped: list[float] = []
    runs = 0

    @app.job(payload=Task)
    async def endless(payload: Task) -> None:
        nonlocal runs
        runs += 1
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.append(time.monotonic())

    # Heartbeats far apart: the NOTIFY is what must deliver the cancel in time.
    async with app.worker(lease_s=60, heartbeat_s=20) as worker:
        job_id = await app.enqueue(endless, Task())
        await started.wait()
        asked = time.monotonic()
        assert await app.cancel(job_id) is True
        with anyio.fail_after(5):
            await worker.wait_until(lambda s: s.cancelled == 1 and s.running == 0)
        assert stopped[0] - asked < 1.0
        stats = await worker.wait_until(lambda s: s.sleeping)
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"], row["worker_id"]) == ("cancelled", 1, None)
    assert "Cancelled" in row["failure_info"]
    assert (stats.completed, stats.errored, stats.released, runs) == (0, 0, 0, 1)
    assert await app.drain() == 0  # never rerun


async def test_a_cancel_without_notify_is_found_by_the_heartbeat(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    started = anyio.Event()

    @app.job(payload=Task)
    async def endless(payload: Task) -> None:
        started.set()
        await anyio.sleep_forever()

    async with app.worker(lease_s=3, heartbeat_s=0.3) as worker:
        job_id = await app.enqueue(endless, Task())
        await started.wait()
        # A cancel whose NOTIFY never arrived (as while the LISTEN connection was down):
        # the job moves to the finished rows with no notification; only the tables say so.
        await pg.execute(
            f"""WITH gone AS (DELETE FROM {schema}.jobs_running WHERE id = $1 RETURNING *)
            INSERT INTO {schema}.jobs_done
            SELECT id, job_type, queue, 'cancelled', queued, next_attempt_after, try_count,
                   max_tries, priority, payload, 'Cancelled by hand', NULL, now(),
                   (SELECT slot FROM {schema}.rings WHERE ring = 'done')
            FROM gone""",
            job_id,
        )
        with anyio.fail_after(5):
            await worker.wait_until(lambda s: s.cancelled == 1 and s.running == 0)
    assert (await state_of(pg, schema, job_id))["state"] == "cancelled"


async def test_forged_and_garbage_notifications_change_nothing(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    release = anyio.Event()
    started = anyio.Event()

    @app.job(payload=Task)
    async def waits(payload: Task) -> None:
        started.set()
        await release.wait()

    channel = sql.channel_for(schema)
    async with app.worker(lease_s=60, heartbeat_s=20) as worker:
        job_id = await app.enqueue(waits, Task())
        await started.wait()
        garbage = [
            f"!cancel {job_id}",  # forged: the table says the job is running
            "!cancel ",
            "!cancel -1",
            "!cancel 99999999999999999999999999",
            "!cancel ١٢",  # digits, but not ASCII ones
            "other-queue",
            "\x01\x02 binary-ish \u2603",
            "x" * 7000,
        ]
        for payload in garbage:
            await pg.execute("SELECT pg_notify($1, $2)", channel, payload)
        await worker.wait_until(lambda s: s.notifications >= len(garbage) + 1)
        release.set()
        stats = await worker.wait_until(lambda s: s.completed == 1)
    assert (stats.cancelled, stats.stale, stats.errored) == (0, 0, 0)
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("completed", 1)


async def test_a_handler_blocking_the_loop_keeps_its_lease_and_is_named(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    lease_s = 1.0
    runs = 0

    @app.job(payload=Task)
    async def blocker(payload: Task) -> None:
        nonlocal runs
        runs += 1
        time.sleep(3 * lease_s)  # noqa: ASYNC251 - the point of the test

    caplog.set_level(logging.WARNING, logger="aqueue")
    settings = {"lease_s": lease_s, "maintenance_interval_s": 0.2}
    async with app.worker(**settings) as worker:
        job_id = await app.enqueue(blocker, Task())
        stats = await worker.wait_until(lambda s: s.completed == 1)
    # With heartbeats on the loop the lease would have expired twice over; the rescue that
    # runs as soon as the loop is free would have found it expired.
    assert (stats.rescued, stats.stale, runs) == (0, 0, 1)
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("completed", 1)
    blocked = [r.getMessage() for r in caplog.records if "event loop has been blocked" in r.message]
    assert len(blocked) == 1, caplog.text
    assert f"handler 'blocker' (running job(s) [{job_id}])" in blocked[0]
    # time.sleep has no Python frame: the handler's own line is the innermost one.
    assert "at blocker (" in blocked[0]
    assert "test_safety.py:" in blocked[0]


async def test_payloads_over_max_payload_bytes_are_refused_before_any_sql(
    dsn: str, schema: str, pg: asyncpg.Connection
) -> None:
    async with aqueue.App(dsn, schema=schema, max_payload_bytes=100) as app:
        await app.migrate()

        @app.job(payload=Task)
        async def job(payload: Task) -> None: ...

        await app.enqueue(job, Task(label="x" * 90))
        with pytest.raises(aqueue.PayloadError, match="over max_payload_bytes"):
            await app.enqueue(job, Task(label="x" * 200))
        with pytest.raises(aqueue.PayloadError, match="payload 1 of job 'job'"):
            await app.enqueue_many(job, [Task(), Task(label="x" * 200)])
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 1
    async with aqueue.App(dsn, schema=schema) as default:
        with pytest.raises(aqueue.PayloadError, match=r"over max_payload_bytes \(1048576\)"):
            await default.enqueue("job", Task(label="x" * (1024 * 1024)))
    with pytest.raises(aqueue.ConfigurationError):
        aqueue.App(dsn, max_payload_bytes=0)


async def failure_info_quoting(dsn: str, schema: str, pg: asyncpg.Connection) -> str:
    """The failure_info of a job whose handler (max_tries 1) raised an error quoting ``dsn``,
    run by an App on that DSN."""
    async with aqueue.App(dsn, schema=schema) as app:
        await app.migrate()

        @app.job(payload=Task, max_tries=1)
        async def leaky(payload: Task) -> None:
            raise RuntimeError(f"could not reach {dsn}")

        job_id = await app.enqueue(leaky, Task())
        assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert row["state"] == "failed"
    return str(row["failure_info"])


async def test_the_dsn_password_never_reaches_failure_info(
    dsn: str, schema: str, pg: asyncpg.Connection
) -> None:
    canary = "Canary-7f3a9c"
    # The test server trusts local connections, so the password is sent but not checked; the
    # fault suite checks a role that needs it.
    url = make_url(sqlalchemy_dsn(dsn)).set(password=canary).render_as_string(False)
    assert canary in url
    info = await failure_info_quoting(url, schema, pg)
    assert "could not reach" in info
    assert canary not in info
    assert ":***@" in info


async def test_heartbeat_thread_is_joined_when_the_worker_stops(app: aqueue.App) -> None:
    @app.job(payload=Task)
    async def nothing(payload: Task) -> None: ...

    def heartbeat_threads() -> int:
        return sum(t.name.startswith("aqueue-heartbeat") for t in threading.enumerate())

    async with app.worker() as worker:
        await worker.wait_ready()
        assert heartbeat_threads() == 1
    assert heartbeat_threads() == 0
