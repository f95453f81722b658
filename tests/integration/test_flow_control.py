"""Named queues with slots of their own, beside bare queues sharing concurrency."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

import aqueue
from aqueue._store.records import Limit
from aqueue.config import WorkerSettings, queue_total
from tests.integration.test_worker import state_of
from tests.payloads_pb2 import Task


def test_queues_are_given_as_a_mapping_a_list_or_a_string() -> None:
    s = WorkerSettings.resolve({"queues": {"default": 16, "mail": 4, "misc": None}})
    assert (s.queues, dict(s.queue_slots)) == (
        ("default", "mail", "misc"),
        {"default": 16, "mail": 4},
    )
    assert queue_total(s) == 16 + 4 + 16  # misc shares concurrency (16)
    s = WorkerSettings.resolve({}, {"AQUEUE_QUEUES": "default=16,mail=4"})
    assert (s.queues, dict(s.queue_slots), queue_total(s)) == (
        ("default", "mail"),
        {"default": 16, "mail": 4},
        20,
    )
    s = WorkerSettings.resolve({"queues": ["a", "b=2"], "concurrency": 3})  # as --queue gives
    assert (dict(s.queue_slots), queue_total(s)) == ({"b": 2}, 5)
    s = WorkerSettings.resolve({"queues": ["a", "b"]})
    assert (dict(s.queue_slots), queue_total(s)) == ({}, 16)
    assert queue_total(WorkerSettings.resolve({})) == 16
    for bad in ({"mail": 0}, {"mail": "four"}, ["a", "a=2"], {"mail": 1.5}, ["bad name=1"]):
        with pytest.raises(aqueue.ConfigurationError):
            WorkerSettings.resolve({"queues": bad})


async def test_a_queue_full_of_long_jobs_never_takes_another_queues_slots(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """default has 2 slots, mail 1, and bare queue misc shares concurrency=1: with default
    full of jobs that wait, mail and misc still run theirs, and default never runs more
    than 2 at once."""
    release = anyio.Event()
    running: dict[str, int] = {"default": 0, "mail": 0, "misc": 0}
    peak: dict[str, int] = dict(running)
    done: list[str] = []

    @app.job(payload=Task)
    async def work(payload: Task) -> None:
        queue = aqueue.current_job().queue
        running[queue] += 1
        peak[queue] = max(peak[queue], running[queue])
        try:
            if queue == "default":
                await release.wait()
        finally:
            running[queue] -= 1
        done.append(queue)

    await app.enqueue_many(work, [Task()] * 6, queue="default")
    await app.enqueue_many(work, [Task()] * 3, queue="mail")
    await app.enqueue_many(work, [Task()] * 2, queue="misc")
    async with app.worker(concurrency=1, queues={"default": 2, "mail": 1, "misc": None}) as w:
        with anyio.fail_after(20):
            await w.wait_until(lambda s: s.completed == 5)  # mail's 3 and misc's 2
        assert sorted(done) == ["mail"] * 3 + ["misc"] * 2
        assert running["default"] == 2
        release.set()
        with anyio.fail_after(20):
            await w.wait_until(lambda s: s.completed == 11)
    assert peak == {"default": 2, "mail": 1, "misc": 1}


async def test_one_claim_serves_every_queue_with_free_slots_in_priority_order(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    order: list[tuple[str, int]] = []

    @app.job(payload=Task)
    async def note(payload: Task) -> None:
        order.append((aqueue.current_job().queue, payload.n))

    for n, priority in ((1, 1), (2, 5), (3, 9)):
        await app.enqueue(note, Task(n=n), queue="a", priority=priority)
        await app.enqueue(note, Task(n=n), queue="b", priority=priority)
    async with app.worker(queues={"a": 3, "b": 3}) as worker:
        with anyio.fail_after(20):
            stats = await worker.wait_until(lambda s: s.completed == 6)
    assert stats.claims >= 1
    assert stats.claimed == 6
    # Both queues' jobs came in the first claim, each queue's by priority.
    assert [n for q, n in order if q == "a"] == [3, 2, 1]
    assert [n for q, n in order if q == "b"] == [3, 2, 1]


async def test_a_limited_type_waiting_at_its_limit_holds_up_no_other_type(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    release = anyio.Event()
    peak = running = 0

    @app.job(payload=Task, global_concurrency=1)
    async def one_at_a_time(payload: Task) -> None:
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        try:
            await release.wait()
        finally:
            running -= 1

    @app.job(payload=Task)
    async def free(payload: Task) -> None:
        pass

    await app.enqueue_many(one_at_a_time, [Task()] * 5, priority=50)
    await app.enqueue_many(free, [Task()] * 20)
    async with app.worker(concurrency=8) as worker:
        with anyio.fail_after(20):
            await worker.wait_until(lambda s: s.completed == 20)
        assert running == 1
        release.set()
        with anyio.fail_after(30):
            await worker.wait_until(lambda s: s.completed == 25)
    assert peak == 1


async def test_a_timed_out_attempt_frees_its_place_under_global_concurrency(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task, global_concurrency=1, timeout_s=0.3, max_tries=1)
    async def slow(payload: Task) -> None:
        if payload.fail:
            await anyio.sleep(60)  # hangs: cancelled at its timeout

    hung = await app.enqueue(slow, Task(fail=True), priority=20)
    after = await app.enqueue(slow, Task())
    async with app.worker(concurrency=4) as worker:
        with anyio.fail_after(20):
            await worker.wait_until(lambda s: s.completed == 1 and s.failed == 1)
    assert (await state_of(pg, schema, hung))["state"] == "failed"
    assert "timeout_s=0.3" in (await state_of(pg, schema, hung))["failure_info"]
    assert (await state_of(pg, schema, after))["state"] == "completed"


async def test_a_rescued_attempt_frees_its_place_under_global_concurrency(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """A worker that died holding the only place of a type limited to 1: once its lease
    expires and it is rescued, both jobs run."""

    @app.job(payload=Task, global_concurrency=1)
    async def guarded(payload: Task) -> None:
        pass

    await app.enqueue_many(guarded, [Task(n=1), Task(n=2)])
    store = await app._get_store()
    limits = [Limit("guarded", 1, None, None)]
    ghost = await store.claim(4, ["guarded"], None, "ghost", 0.5, limits=limits)
    assert len(ghost.jobs) == 1  # the limit held it to one
    async with app.worker(maintenance_interval_s=0.2) as worker:
        with anyio.fail_after(20):
            stats = await worker.wait_until(lambda s: s.completed == 2)
    assert stats.rescued == 1
    rows = await pg.fetch(
        f"SELECT state::text, try_count FROM {schema}.background_jobs ORDER BY id"
    )
    assert [(r["state"], r["try_count"]) for r in rows] == [("completed", 2), ("completed", 1)]


def test_the_cli_takes_sized_and_bare_queues() -> None:
    from aqueue.cli import _parser

    args = _parser().parse_args(
        ["worker", "--app", "m:app", "--queue", "default=16", "--queue", "mail=4", "--queue", "x"]
    )
    s = WorkerSettings.resolve({"queues": args.queues})
    assert (s.queues, dict(s.queue_slots), queue_total(s)) == (
        ("default", "mail", "x"),
        {"default": 16, "mail": 4},
        36,
    )


async def test_a_claim_that_completes_a_limited_attempt_takes_its_place_at_once(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """claim.sql completes first (a one-time filter runs complete() before the claim): the
    place it frees is taken in the same statement, with no extra round trip."""
    await app.enqueue_many("lim", [Task(), Task(), Task()])
    store = await app._get_store()
    limits = [Limit("lim", 1, None, None)]
    first = await store.claim(4, ["lim"], None, "w1", 30.0, limits=limits, claim_no=1)
    assert len(first.jobs) == 1
    full = await store.claim(4, ["lim"], None, "w1", 30.0, limits=limits, claim_no=2)
    assert full.jobs == []  # its one place is taken
    (done,) = first.jobs
    second = await store.claim(
        4, ["lim"], None, "w1", 30.0, [done.id], [done.attempt], limits=limits, claim_no=3
    )
    assert second.completed == {done.id}
    assert len(second.jobs) == 1


async def test_drain_waits_out_a_rate_window_rather_than_stop_with_jobs_due(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    starts: list[float] = []

    @app.job(payload=Task, rate_limit=aqueue.RateLimit(count=3, period_s=0.5))
    async def paced(payload: Task) -> None:
        starts.append(anyio.current_time())

    await app.enqueue_many(paced, [Task()] * 7)
    with anyio.fail_after(20):
        assert await app.drain(concurrency=8) == 7
    # 3, then 3 more once the first three leave the window, then the last one.
    assert starts[6] - starts[0] >= 1.0 - 0.05
    assert starts[3] - starts[0] >= 0.5 - 0.05


async def test_a_place_freed_by_a_failure_is_taken_at_once_not_at_the_next_poll(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """A failed attempt is written apart from the claims; the worker claims again once it
    is written, so the next job of a type limited to 1 starts at once, not after
    poll_interval_s (here 30 s)."""

    @app.job(payload=Task, global_concurrency=1)
    async def discarded(payload: Task) -> None:
        raise aqueue.Discard("no")

    await app.enqueue_many(discarded, [Task()] * 5)
    async with app.worker(poll_interval_s=30) as worker:
        with anyio.fail_after(10):
            await worker.wait_until(lambda s: s.failed == 5)


async def test_ten_thousand_unique_keys_in_one_call(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    ids = await app.enqueue_many(
        "keyed",
        [Task(n=i) for i in range(10_000)],
        unique_keys=[f"k{i % 5000}" for i in range(10_000)],
    )
    assert len(set(ids)) == 5000
    assert [i.duplicate for i in ids[:5000]] == [False] * 5000
    assert all(i.duplicate for i in ids[5000:])
    assert ids[5000:] == ids[:5000]
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.background_jobs") == 5000


def test_a_bad_queue_size_names_where_it_came_from() -> None:
    with pytest.raises(aqueue.ConfigurationError, match=r"^AQUEUE_QUEUES: queue 'mail'"):
        WorkerSettings.resolve({}, {"AQUEUE_QUEUES": "default,mail=x", "AQUEUE_LEASE_S": "30"})
    with pytest.raises(aqueue.ConfigurationError, match=r"^queues: queue 'mail'"):
        WorkerSettings.resolve({"queues": {"mail": 0}})
