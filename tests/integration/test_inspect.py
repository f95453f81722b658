"""Introspection from code: get_job, list_jobs (keyset pages), retry, stats; and drain with
include_delayed."""

from __future__ import annotations

import json

import anyio
import asyncpg
import pytest

import aqueue
from tests.payloads_pb2 import Task


@pytest.fixture
def jobs(app: aqueue.App) -> aqueue.JobType[Task]:
    @app.job(payload=Task, max_tries=1, result=Task)
    async def work(payload: Task) -> Task | None:
        if payload.n < 0:
            raise ValueError(f"negative: {payload.n}")
        return Task(n=payload.n + 1)

    return work


async def test_get_job_in_every_state(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, jobs: aqueue.JobType[Task]
) -> None:
    done = await app.enqueue(jobs, Task(n=1))
    broken = await app.enqueue(jobs, Task(n=-1))
    await app.drain()
    waiting = await app.enqueue(jobs, Task(n=2))
    later = await app.enqueue(jobs, Task(n=3), delay=3600)
    cancelled = await app.enqueue(jobs, Task(n=4))
    assert await app.cancel(cancelled)

    record = await app.get_job(done)
    assert record is not None
    assert record.state is aqueue.JobState.COMPLETED
    assert (record.payload, record.result, record.try_count) == (Task(n=1), Task(n=2), 1)
    assert record.started_at is not None and record.finished_at is not None  # noqa: PT018
    assert record.started_at <= record.finished_at
    failed = await app.get_job(broken)
    assert failed is not None and failed.state is aqueue.JobState.FAILED  # noqa: PT018
    assert "negative: -1" in (failed.failure_info or "")
    assert failed.result is None and failed.started_at is not None  # noqa: PT018
    pending = await app.get_job(waiting)
    assert pending is not None and pending.state is aqueue.JobState.PENDING  # noqa: PT018
    assert (pending.started_at, pending.finished_at, pending.result) == (None, None, None)
    delayed = await app.get_job(later)
    assert delayed is not None and delayed.state is aqueue.JobState.PENDING  # noqa: PT018
    assert delayed.next_attempt_after > pending.next_attempt_after
    gone = await app.get_job(cancelled)
    assert gone is not None and gone.state is aqueue.JobState.CANCELLED  # noqa: PT018
    assert gone.started_at is None  # cancelled before it ran
    assert await app.get_job(10**12) is None

    # Running (with its lease), then error.
    gate = anyio.Event()

    @app.job(payload=Task, max_tries=3)
    async def slow(payload: Task) -> None:
        await gate.wait()
        raise RuntimeError("not yet")

    running_id = await app.enqueue(slow, Task())
    async with app.worker() as worker:
        await worker.wait_until(lambda s: s.running == 1)
        running = await app.get_job(running_id)
        gate.set()
        await worker.wait_until(lambda s: s.errored == 1)
    assert running is not None and running.state is aqueue.JobState.RUNNING  # noqa: PT018
    assert running.lease_expires_at is not None and running.started_at is not None  # noqa: PT018
    errored = await app.get_job(running_id)
    assert errored is not None and errored.state is aqueue.JobState.ERROR  # noqa: PT018


async def test_a_payload_of_a_type_this_app_does_not_know_comes_raw(
    app: aqueue.App, jobs: aqueue.JobType[Task]
) -> None:
    job_id = await app.enqueue("elsewhere", Task(n=9))
    record = await app.get_job(job_id)
    assert record is not None
    assert record.payload == Task(n=9).SerializeToString()
    assert isinstance(record.payload, bytes)


async def test_list_jobs_filters_and_pages_by_keyset(
    app: aqueue.App, jobs: aqueue.JobType[Task]
) -> None:
    ids = await app.enqueue_many(jobs, [Task(n=n) for n in range(25)])
    failing = await app.enqueue_many(jobs, [Task(n=-n - 1) for n in range(5)])
    await app.drain()
    others = await app.enqueue_many("other", [Task(n=n) for n in range(7)], queue="misc")

    seen: list[int] = []
    after = None
    while True:
        page = await app.list_jobs(limit=6, after_id=after)
        if not page:
            break
        assert len(page) <= 6
        seen += [r.id for r in page]
        after = page[-1].id
    assert seen == sorted(ids + failing + others)  # ascending, no gaps, no repeats

    failed = await app.list_jobs(state="failed")
    assert [r.id for r in failed] == failing
    assert {r.state for r in failed} == {aqueue.JobState.FAILED}
    mixed = await app.list_jobs(state=[aqueue.JobState.FAILED, "pending"], limit=1000)
    assert [r.id for r in mixed] == sorted(failing + others)
    assert [r.id for r in await app.list_jobs(queue="misc")] == others
    assert [r.id for r in await app.list_jobs(job_type="other", after_id=others[3])] == others[4:]
    completed = await app.list_jobs(job_type=jobs, state="completed", limit=10)
    assert [r.id for r in completed] == ids[:10]
    with pytest.raises(ValueError, match="state"):
        await app.list_jobs(state="finished")
    with pytest.raises(ValueError, match="limit"):
        await app.list_jobs(limit=0)
    with pytest.raises(TypeError, match="after_id"):
        await app.list_jobs(after_id="7")  # type: ignore[arg-type]


async def test_a_page_of_waiting_jobs_reads_no_finished_row(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, jobs: aqueue.JobType[Task]
) -> None:
    await app.enqueue_many(jobs, [Task(n=n) for n in range(300)])
    await app.drain(concurrency=16)
    await app.enqueue_many(jobs, [Task(n=n) for n in range(3)])
    await pg.execute(f"ANALYZE {schema}.jobs_done")
    store = await app._get_store()
    text = store._sql["list_jobs"]
    # A custom plan (the states known) and a generic one (gated at run time): neither reads
    # a row of the finished rings.
    for mode in ("force_custom_plan", "force_generic_plan"):
        await pg.execute(f"SET plan_cache_mode = {mode}")
        plan = await pg.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {text}", ["pending", "error"], None, None, 0, 100
        )
        nodes = _plan_nodes(json.loads(plan)[0]["Plan"])
        read: dict[str, int] = {}
        for n in nodes:
            if n.get("Relation Name"):
                name = str(n["Relation Name"])
                read[name] = read.get(name, 0) + int(n.get("Actual Rows", 0))  # type: ignore[call-overload]
        finished = {k: v for k, v in read.items() if k.startswith(("jobs_done", "jobs_failed"))}
        assert sum(finished.values()) == 0, (mode, read)  # the ring's 300 rows: none read
        assert read["jobs_ready"] == 3, (mode, read)
    await pg.execute("RESET plan_cache_mode")


async def test_retry_brings_failed_and_cancelled_jobs_back_and_nothing_else(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, jobs: aqueue.JobType[Task]
) -> None:
    broken = await app.enqueue(jobs, Task(n=-5))
    fine = await app.enqueue(jobs, Task(n=5))
    await app.drain()
    cancelled = await app.enqueue(jobs, Task(n=6), delay=3600)
    assert await app.cancel(cancelled)
    waiting = await app.enqueue(jobs, Task(n=7), delay=3600)

    assert not await app.retry(fine)  # completed: no
    assert not await app.retry(waiting)  # pending: no
    assert not await app.retry(10**12)
    before = await app.get_job(broken)
    assert before is not None
    # Two at once: one wins.
    results: list[bool] = []
    async with anyio.create_task_group() as tg:
        for _ in range(2):

            async def one() -> None:
                results.append(await app.retry(broken))

            tg.start_soon(one)
    assert sorted(results) == [False, True]
    after = await app.get_job(broken)
    assert after is not None
    # A fresh budget of tries; attempt numbers keep counting (never reused).
    assert (after.state, after.try_count, after.max_tries) == (aqueue.JobState.ERROR, 1, 2)
    assert after.failure_info == before.failure_info  # kept as history
    assert after.queued == before.queued
    assert await app.retry(cancelled)
    never_ran = await app.get_job(cancelled)
    assert never_ran is not None
    assert (never_ran.state, never_ran.try_count) == (aqueue.JobState.PENDING, 0)

    async with app.worker() as worker:
        with anyio.fail_after(10):
            await worker.wait_until(lambda s: s.failed + s.completed == 2)
    assert (await app.get_job(cancelled)).state is aqueue.JobState.COMPLETED  # type: ignore[union-attr]
    redone = await app.get_job(broken)
    assert redone is not None and redone.state is aqueue.JobState.FAILED  # noqa: PT018
    assert redone.try_count == 2  # its second attempt, out of its new budget


async def test_a_retried_job_wakes_an_idle_worker(
    app: aqueue.App, jobs: aqueue.JobType[Task]
) -> None:
    broken = await app.enqueue(jobs, Task(n=-5))
    await app.drain()
    async with app.worker(poll_interval_s=60) as worker:
        await worker.wait_idle()
        assert await app.retry(broken)
        with anyio.fail_after(5):  # NOTIFY, not the 60 s poll
            await worker.wait_until(lambda s: s.failed == 1)


async def test_stats_counts_waiting_exactly_and_estimates_finished(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, jobs: aqueue.JobType[Task]
) -> None:
    await app.enqueue_many(jobs, [Task(n=n) for n in range(40)])
    await app.enqueue_many(jobs, [Task(n=-1) for _ in range(10)])
    await app.drain(concurrency=8)
    await app.enqueue_many(jobs, [Task(n=n) for n in range(5)])
    await app.enqueue_many(jobs, [Task(n=n) for n in range(3)], delay=3600)
    await app.enqueue_many("other", [Task()] * 2, queue="misc")
    await pg.execute(f"ANALYZE {schema}.jobs_done, {schema}.jobs_failed")
    stats = await app.stats()
    assert stats.count(state="pending", job_type="work") == 8
    assert stats.count(state="pending", job_type="other") == 2
    assert stats.count(state="running") == 0
    assert {(r.queue, r.job_type) for r in stats.rows} == {("default", "work"), ("misc", "other")}
    assert stats.finished_estimate == {"done": 40, "failed": 10}  # exact once analyzed
    assert stats.oldest_due_wait_s is not None
    assert 0 <= stats.oldest_due_wait_s < 60


async def test_drain_with_include_delayed_runs_delayed_and_backed_off_jobs(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    tries: list[int] = []

    @app.job(payload=Task, max_tries=3)
    async def flaky(payload: Task) -> None:
        tries.append(aqueue.current_job().attempt)
        if aqueue.current_job().attempt < 3:
            raise RuntimeError("not yet")

    later = await app.enqueue(flaky, Task(), delay=3600)
    assert await app.drain() == 0  # not due: a plain drain leaves it
    assert await app.drain(include_delayed=True) == 3  # made due, then each backoff too
    assert tries == [1, 2, 3]
    record = await app.get_job(later)
    assert record is not None and record.state is aqueue.JobState.COMPLETED  # noqa: PT018


def _plan_nodes(node: dict[str, object]) -> list[dict[str, object]]:
    """``node`` and every node under it."""
    found = [node]
    for child in node.get("Plans", []):  # type: ignore[attr-defined]
        found += _plan_nodes(child)
    return found


async def test_retrying_a_job_cancelled_while_running_never_reuses_its_attempt_number(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """Cancelled while its handler runs (and takes a while to stop), then retried at once:
    the same worker claims it again while the old attempt is still ending. The new attempt
    has a number of its own, so it completes and nothing is left running."""
    started = anyio.Event()

    @app.job(payload=Task)
    async def slow_to_stop(payload: Task) -> None:
        if aqueue.current_job().attempt == 1:
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.5)  # still ending when the retry is claimed

    job_id = await app.enqueue(slow_to_stop, Task())
    async with app.worker(concurrency=2) as worker:
        with anyio.fail_after(10):
            await started.wait()
        assert await app.cancel(job_id)
        assert await app.retry(job_id)
        with anyio.fail_after(10):
            await worker.wait_until(lambda s: s.completed == 1)
    record = await app.get_job(job_id)
    assert record is not None
    assert (record.state, record.try_count) == (aqueue.JobState.COMPLETED, 2)
    running = await pg.fetchval(f"SELECT count(*) FROM {schema}.jobs_running")
    assert running == 0
