"""The worker in-process: ordering, retries, failures, timing, notifications, leases."""

from __future__ import annotations

import datetime as dt
import statistics
import time

import anyio
import asyncpg

import aqueue
from aqueue._store.store import Store
from tests.helpers import eventually
from tests.payloads_pb2 import Task


async def state_of(pg: asyncpg.Connection, schema: str, job_id: int) -> asyncpg.Record:
    row = await pg.fetchrow(
        f"SELECT state::text AS state, try_count, failure_info, worker_id, lease_expires_at, "
        f"extract(epoch FROM next_attempt_after - now()) AS due_in_s "
        f"FROM {schema}.background_jobs WHERE id = $1",
        job_id,
    )
    assert row is not None
    return row


async def make_due_now(pg: asyncpg.Connection, schema: str) -> None:
    """What an operator's "retry now" does: move error jobs' next attempt to now."""
    await pg.execute(
        f"UPDATE {schema}.background_jobs SET next_attempt_after = now() WHERE state = 'error'"
    )


async def test_payload_round_trip_and_completion(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    seen: list[Task] = []
    infos: list[aqueue.JobInfo] = []

    @app.job(payload=Task)
    async def echo(payload: Task) -> None:
        seen.append(payload)
        infos.append(aqueue.current_job())

    sent = Task(n=2**40, label="héllo ✓", sleep_s=0.0)
    job_id = await app.enqueue(echo, sent)
    assert await app.drain() == 1
    assert seen == [sent]
    assert (infos[0].id, infos[0].job_type, infos[0].attempt) == (job_id, "echo", 1)
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"], row["lease_expires_at"]) == ("completed", 1, None)
    assert row["worker_id"] == infos[0].worker_id  # who ran the last attempt
    assert await app.drain() == 0  # completed jobs never run again


async def test_claim_order_priority_then_the_order_jobs_became_due(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """Higher priority first; within a priority, jobs run in the order they became due: the
    order they were enqueued when due at once (a backdated run_at is just due), and delayed
    jobs in due-time order when their time comes."""
    order: list[str] = []

    @app.job(payload=Task)
    async def ordered(payload: Task) -> None:
        order.append(payload.label)

    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    await app.enqueue(ordered, Task(label="p10-now"))
    await app.enqueue(ordered, Task(label="p20-now"), priority=20)
    await app.enqueue_many(ordered, [Task(label=f"p10-past-{i}") for i in range(3)], run_at=past)
    await app.enqueue(ordered, Task(label="p5-older"), priority=5, run_at=past)
    soon = await pg.fetchval("SELECT now() + interval '1 second'")
    # Enqueued last-due first: they still become due in due-time order.
    later_2 = soon + dt.timedelta(milliseconds=200)
    await app.enqueue(ordered, Task(label="p10-later-2"), run_at=later_2)
    await app.enqueue(ordered, Task(label="p10-later-1"), run_at=soon)
    await eventually(
        lambda: pg.fetchval("SELECT now() > $1::timestamptz + interval '0.3 s'", soon),
        bool,
        timeout_s=5,
    )
    assert await app.drain(concurrency=1) == 8
    assert order == [
        "p20-now",
        "p10-now",
        "p10-past-0",
        "p10-past-1",
        "p10-past-2",
        "p10-later-1",
        "p10-later-2",
        "p5-older",
    ]


async def test_failure_is_retried_with_backoff_inside_the_window(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def flaky(payload: Task) -> None:
        raise ValueError(f"boom {payload.n}")

    job_id = await app.enqueue(flaky, Task(n=7))
    assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"], row["lease_expires_at"]) == ("error", 1, None)
    # First retry after 15 * 2**1 = 30 s, +-10% jitter, by the database clock.
    assert 27 - 1 <= row["due_in_s"] <= 33
    assert "ValueError: boom 7" in row["failure_info"]
    assert "Traceback (most recent call last)" in row["failure_info"]
    assert "in flaky" in row["failure_info"]
    assert await app.drain() == 0  # not due yet: not run early


async def test_always_failing_job_runs_exactly_max_tries_then_failed(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    attempts: list[int] = []

    @app.job(payload=Task, max_tries=3)
    async def doomed(payload: Task) -> None:
        attempts.append(aqueue.current_job().attempt)
        raise RuntimeError("always")

    job_id = await app.enqueue(doomed, Task())
    for expected_state in ("error", "error", "failed"):
        assert await app.drain() == 1
        row = await state_of(pg, schema, job_id)
        assert row["state"] == expected_state
        await make_due_now(pg, schema)
    assert await app.drain() == 0
    assert attempts == [1, 2, 3]
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("failed", 3)
    assert "RuntimeError: always" in row["failure_info"]


async def test_undecodable_payload_fails_at_once(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    called: list[Task] = []

    @app.job(payload=Task, max_tries=5)
    async def decode_me(payload: Task) -> None:
        called.append(payload)

    job_id = await pg.fetchval(
        f"INSERT INTO {schema}.background_jobs (job_type, payload) "
        f"VALUES ('decode_me', '\\xffffffff'::bytea) RETURNING id"
    )
    assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("failed", 1)
    assert "does not decode as aqueue.tests.v1.Task" in row["failure_info"]
    assert called == []
    # The worker carries on with good jobs.
    await app.enqueue(decode_me, Task(n=1))
    assert await app.drain() == 1
    assert called == [Task(n=1)]


async def test_unregistered_type_is_never_claimed(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def known(payload: Task) -> None: ...

    stranger = await app.enqueue("unknown.type", Task(n=1))
    await app.enqueue(known, Task(n=2))
    assert await app.drain(concurrency=4) == 1
    row = await state_of(pg, schema, stranger)
    assert (row["state"], row["try_count"], row["worker_id"]) == ("pending", 0, None)


async def test_queues_filter_what_a_worker_claims(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    ran: list[str] = []

    @app.job(payload=Task)
    async def queued(payload: Task) -> None:
        ran.append(payload.label)

    await app.enqueue(queued, Task(label="a"), queue="alpha")
    await app.enqueue(queued, Task(label="b"), queue="beta")
    assert await app.drain(queues=["beta"]) == 1
    assert ran == ["b"]


async def test_idle_worker_wakes_on_notify_within_50_ms(app: aqueue.App) -> None:
    started: list[float] = []
    event = anyio.Event()

    @app.job(payload=Task)
    async def ping(payload: Task) -> None:
        started.append(time.perf_counter())
        event.set()

    latencies = []
    # A long safety poll: only a notification can wake the worker this fast.
    async with app.worker(concurrency=2, poll_interval_s=60) as worker:
        for _ in range(5):
            await worker.wait_idle()
            event = anyio.Event()
            t0 = time.perf_counter()
            await app.enqueue(ping, Task())
            with anyio.fail_after(5):
                await event.wait()
            latencies.append(started[-1] - t0)
        stats = worker.statistics()
    assert stats.notifications >= 5
    assert statistics.median(latencies) < 0.050, latencies


async def test_delayed_job_is_not_run_early_and_starts_within_100_ms_of_due(
    app: aqueue.App,
) -> None:
    started = anyio.Event()
    start_at: list[float] = []

    @app.job(payload=Task)
    async def later(payload: Task) -> None:
        start_at.append(time.perf_counter())
        started.set()

    async with app.worker(concurrency=1, poll_interval_s=60) as worker:
        await worker.wait_ready()
        before = time.perf_counter()
        await app.enqueue(later, Task(), delay=2.0)
        after = time.perf_counter()
        with anyio.fail_after(10):
            await started.wait()
    assert start_at[0] - before >= 2.0 - 0.005  # never early (database clock, same host)
    assert start_at[0] - after <= 2.0 + 0.100


async def test_worker_runs_jobs_concurrently_up_to_its_bound(app: aqueue.App) -> None:
    running = 0
    peak = 0
    release = anyio.Event()

    @app.job(payload=Task)
    async def hold(payload: Task) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    await app.enqueue_many(hold, [Task(n=i) for i in range(10)])
    async with app.worker(concurrency=4) as worker:
        with anyio.fail_after(10):
            await worker.wait_until(lambda s: s.running >= 4)
        assert peak == 4
        release.set()
        with anyio.fail_after(10):
            await worker.wait_processed(10)
    assert peak == 4
    assert worker.statistics().completed == 10


async def test_with_a_backlog_one_claim_fetches_the_slots_that_free_together(
    app: aqueue.App,
) -> None:
    """Short jobs and a backlog: a freed slot waits a moment for the rest of its batch, so
    each claim fetches about a full batch, rather than the few jobs that ended during the
    previous claim's round trip (half of the slots per claim, twice the claims)."""

    @app.job(payload=Task)
    async def short(payload: Task) -> None:
        await anyio.sleep(0.001)

    jobs = 1600
    await app.enqueue_many(short, [Task(n=i) for i in range(jobs)])
    async with app.worker(concurrency=16) as worker:
        with anyio.fail_after(60):
            await worker.wait_processed(jobs)
    stats = worker.statistics()
    assert stats.completed == jobs
    # Full batches would be 100 claims; half-full ones 200.
    assert stats.claims <= 150, stats


async def test_heartbeat_keeps_a_long_job_leased(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    runs: list[int] = []

    @app.job(payload=Task)
    async def long_job(payload: Task) -> None:
        runs.append(aqueue.current_job().attempt)
        await anyio.sleep(2.5)

    job_id = await app.enqueue(long_job, Task())
    settings = {"lease_s": 1.0, "heartbeat_s": 0.25, "maintenance_interval_s": 0.2}
    # Two workers: the second rescues anything whose lease runs out.
    async with (
        app.worker(concurrency=1, **settings) as one,
        app.worker(concurrency=1, **settings) as two,
        anyio.create_task_group() as tg,
    ):
        # Whichever worker ran it: stop waiting when one of them completed it.
        tg.cancel_scope.deadline = anyio.current_time() + 10
        for worker in (one, two):

            async def done(w: aqueue.Worker = worker) -> None:
                await w.wait_until(lambda s: s.completed == 1)
                tg.cancel_scope.cancel()

            tg.start_soon(done)
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("completed", 1)
    assert runs == [1]
    assert one.statistics().rescued + two.statistics().rescued == 0


async def test_late_write_after_lost_lease_changes_nothing(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    store = app._store
    assert isinstance(store, Store)
    job_id = await app.enqueue("leased", Task())
    (first,) = (await store.claim(1, ["leased"], None, "worker-a", 0.2)).jobs
    # Real time passes on the database clock until the lease expires.
    await eventually(lambda: store.rescue("maintenance"), bool, timeout_s=5)
    row = await state_of(pg, schema, job_id)
    assert row["state"] == "error"
    assert "WorkerLost: worker worker-a" in row["failure_info"]
    (second,) = (await store.claim(1, ["leased"], None, "worker-b", 30)).jobs
    assert second.attempt == first.attempt + 1 == 2
    # worker-a's late writes, of every kind, change nothing.
    assert await store.complete("worker-a", [job_id], [first.attempt]) == set()
    assert await store.fail("worker-a", [job_id], [1], [0.0], ["late"], [True]) == {}
    assert await store.release("worker-a", [job_id], [1]) == set()
    beat = await store.heartbeat("worker-a", [job_id], [1], 30, timeout_s=5)
    assert (beat.lost, beat.unknown) == ({(job_id, 1): "running"}, [])
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["worker_id"], row["try_count"]) == ("running", "worker-b", 2)
    assert await store.complete("worker-b", [job_id], [2]) == {job_id}
    assert (await state_of(pg, schema, job_id))["state"] == "completed"


async def test_a_write_repeated_after_its_reply_was_lost_counts_once_as_written(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """The completer repeats a batch whose connection died mid-statement; the first try may
    have landed. The repeat reports those rows as written by this worker, not as stale."""
    store = app._store
    assert isinstance(store, Store)
    ok, bad = await app.enqueue_many("twice", [Task(), Task()])
    await store.claim(2, ["twice"], None, "worker-a", 30)
    for _ in range(2):
        assert await store.complete("worker-a", [ok], [1]) == {ok}
        assert await store.fail("worker-a", [bad], [1], [60.0], ["boom"], [False]) == {bad: "error"}
    assert await store.complete("worker-b", [ok], [1]) == set()  # not worker-b's write
    assert await store.complete("worker-a", [ok], [2]) == set()  # not that attempt
    rows = await pg.fetch(
        f"SELECT state::text, try_count FROM {schema}.background_jobs ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [("completed", 1), ("error", 1)]


async def test_a_claim_whose_reply_was_lost_is_handed_back_by_the_next_claim(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """A claim whose reply was lost leaves rows running under a worker that never ran them:
    the worker's next claim names it, and those jobs go back uncounted (and may be claimed
    again at once); the jobs of its other claims stay running."""
    store = app._store
    assert isinstance(store, Store)
    live, orphan = await app.enqueue_many("mine", [Task(), Task()])
    (first,) = (await store.claim(1, ["mine"], None, "worker-a", 30, claim_no=1)).jobs
    (lost,) = (await store.claim(1, ["mine"], None, "worker-a", 30, claim_no=2)).jobs
    assert (first.id, lost.id) == (live, orphan)
    again = await store.claim(1, ["mine"], None, "worker-a", 30, claim_no=3, lost_claims=[2])
    assert [(j.id, j.attempt) for j in again.jobs] == [(orphan, 1)]  # not counted twice
    rows = await pg.fetch(
        f"SELECT id, state::text, try_count FROM {schema}.background_jobs ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [(live, "running", 1), (orphan, "running", 1)]


async def test_rescue_never_takes_the_callers_own_jobs(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """A worker's own lease may look expired to itself after an outage: its heartbeat renews
    it; only another worker's rescue takes its jobs."""
    store = app._store
    assert isinstance(store, Store)
    (job_id,) = await app.enqueue_many("mine", [Task()])
    await store.claim(1, ["mine"], None, "worker-a", 0.1)
    await eventually(
        lambda: pg.fetchval(f"SELECT bool_and(expires_at < now()) FROM {schema}.workers"),
        bool,
        timeout_s=5,
    )
    assert await store.rescue("worker-a") == {}
    assert (await state_of(pg, schema, job_id))["state"] == "running"
    assert await store.rescue("worker-b") == {job_id: "error"}


async def test_rescued_job_out_of_tries_ends_failed(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    store = app._store
    assert isinstance(store, Store)
    job_id = await app.enqueue("fragile", Task(), max_tries=1)
    await store.claim(1, ["fragile"], None, "worker-a", 0.1)
    await eventually(lambda: store.rescue("maintenance"), bool, timeout_s=5)
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("failed", 1)


async def test_graceful_stop_waits_for_running_jobs(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def slowish(payload: Task) -> None:
        await anyio.sleep(0.5)

    job_id = await app.enqueue(slowish, Task())
    async with app.worker(concurrency=1, shutdown_timeout_s=30) as worker:
        with anyio.fail_after(5):
            await worker.wait_until(lambda s: s.running >= 1)
        t0 = time.perf_counter()
    # Leaving the block waited for the handler, and no longer than it ran.
    assert time.perf_counter() - t0 < 5
    assert (await state_of(pg, schema, job_id))["state"] == "completed"


async def test_shutdown_deadline_hands_jobs_back_without_counting_the_attempt(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def stuck(payload: Task) -> None:
        await anyio.sleep(60)

    job_id = await app.enqueue(stuck, Task())
    t0 = time.perf_counter()
    async with app.worker(concurrency=1, shutdown_timeout_s=0.3) as worker:
        with anyio.fail_after(5):
            await worker.wait_until(lambda s: s.running >= 1)
    assert time.perf_counter() - t0 < 5
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"], row["worker_id"]) == ("pending", 0, None)
    assert row["due_in_s"] <= 0
    assert worker.statistics().released == 1


async def test_idle_worker_costs_well_under_one_query_per_second(app: aqueue.App) -> None:
    @app.job(payload=Task)
    async def nothing(payload: Task) -> None: ...

    store = app._store
    assert isinstance(store, Store)
    async with app.worker(poll_interval_s=5.0, maintenance_interval_s=5.0) as worker:
        await worker.wait_ready()

        async def first_round_done() -> int:  # the leader's first maintenance round, at start
            return store.statistics().statements.get("look_behind", 0)  # its last statement

        await eventually(first_round_done, lambda n: n >= 1, timeout_s=5)
        before_stats = store.statistics()
        before = before_stats.total
        await anyio.sleep(3.0)  # the condition under test is time itself
        after_stats = store.statistics()
        spent = after_stats.total - before
    assert spent <= 2, {
        k: v - before_stats.statements.get(k, 0)
        for k, v in after_stats.statements.items()
        if v != before_stats.statements.get(k, 0)
    }


async def test_cancelled_worker_hands_running_jobs_back_at_once(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def endless(payload: Task) -> None:
        await anyio.sleep_forever()

    ids = await app.enqueue_many(endless, [Task(n=i) for i in range(3)])
    with anyio.CancelScope() as scope:
        async with app.worker(concurrency=3, lease_s=300, heartbeat_s=100) as worker:
            await worker.wait_until(lambda s: s.running == 3)
            scope.cancel()
            await anyio.sleep_forever()
    rows = await pg.fetch(
        f"SELECT state::text, try_count, worker_id FROM {schema}.background_jobs "
        f"WHERE id = ANY($1)",
        ids,
    )
    # Not left running until a 300 s lease expires: back in the queue, attempt not counted.
    assert [tuple(r) for r in rows] == [("pending", 0, None)] * 3


async def test_connections_the_server_closed_are_replaced_and_listen_reconnects(
    app: aqueue.App, pg: asyncpg.Connection
) -> None:
    @app.job(payload=Task)
    async def after_restart(payload: Task) -> None: ...

    async with app.worker(concurrency=2) as worker:
        await worker.wait_ready()
        await app.enqueue(after_restart, Task())  # puts a pooled producer connection in use
        await worker.wait_processed(1)
        # What a server restart does to idle pooled connections and to the LISTEN one.
        killed = await pg.fetchval(
            "SELECT array_agg(pid) FROM pg_stat_activity WHERE application_name = 'aqueue'"
        )
        await pg.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", killed)
        # All gone (the listener may reconnect at once: count the killed ones, not all).
        await eventually(
            lambda: pg.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", killed
            ),
            lambda n: n == 0,
            timeout_s=5,
        )
        # The stale pooled connection is swapped, not failed...
        await app.enqueue(after_restart, Task())
        # ...and the worker hears about it once the listener is back, without polling.
        with anyio.fail_after(5):
            await worker.wait_processed(2)
        await worker.wait_until(lambda s: s.listening)
        await worker.wait_idle()
        await app.enqueue(after_restart, Task())
        with anyio.fail_after(1):  # well inside the 2 s safety poll of this app
            await worker.wait_processed(3)
    assert worker.statistics().completed == 3


async def test_writes_stuck_on_row_locks_do_not_hold_up_the_heartbeats(
    app: aqueue.App, dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    """Someone else's transaction locks the rows of two jobs as they finish, so the worker's
    completion and its failure write both wait on the locks, on both of the worker's pooled
    connections, for longer than a lease. Heartbeats go over the LISTEN connection, so the
    other running jobs keep their leases: a second app rescuing expired leases finds none."""
    finish = anyio.Event()

    @app.job(payload=Task)
    async def long_job(payload: Task) -> None:
        await anyio.sleep(3.0)

    @app.job(payload=Task)
    async def gated(payload: Task) -> None:
        await finish.wait()
        if payload.fail:
            raise RuntimeError("fails on purpose")

    long_ids = await app.enqueue_many(long_job, [Task(), Task()])
    gated_ids = await app.enqueue_many(gated, [Task(), Task(fail=True)])
    rescuer = aqueue.App(dsn, schema=schema)
    rescued: dict[int, str] = {}
    settings = {"lease_s": 1.0, "heartbeat_s": 0.25, "maintenance_interval_s": 60.0}
    try:
        rescue_store = await rescuer._get_store()
        async with app.worker(concurrency=4, **settings) as worker:
            await worker.wait_until(lambda s: s.running == 4)
            async with pg.transaction():
                await pg.execute(
                    f"SELECT 1 FROM {schema}.background_jobs WHERE id = ANY($1) FOR UPDATE",
                    gated_ids,
                )
                finish.set()
                # Over twice the lease on the database clock, rescuing all along.
                deadline = await pg.fetchval("SELECT clock_timestamp() + interval '2.2 s'")
                while await pg.fetchval("SELECT clock_timestamp()") < deadline:
                    rescued |= await rescue_store.rescue("rescuer")
                    await anyio.sleep(0.1)
            await worker.wait_processed(4)
            stats = worker.statistics()
    finally:
        await rescuer.close()
    assert rescued == {}
    assert (stats.completed, stats.errored, stats.stale) == (3, 1, 0)
    for job_id in long_ids:
        row = await state_of(pg, schema, job_id)
        assert (row["state"], row["try_count"]) == ("completed", 1)
