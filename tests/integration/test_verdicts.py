"""Handlers decide their job's fate: Retry, Snooze, Discard, discard_on, and the retry policy
per job type (backoff)."""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg
import pytest

import aqueue
from tests.integration.test_worker import state_of
from tests.payloads_pb2 import Task


async def test_retry_with_a_delay_counts_the_attempt_and_is_due_after_it(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def later(payload: Task) -> None:
        raise aqueue.Retry("the API said 429", delay=dt.timedelta(minutes=2))

    job_id = await app.enqueue(later, Task())
    assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("error", 1)
    assert 110 < row["due_in_s"] <= 120
    assert (
        "Retry: the handler requested a retry after attempt 1: the API said 429"
        in (row["failure_info"])
    )


async def test_retry_without_a_delay_follows_the_types_backoff_and_fails_when_out_of_tries(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task, max_tries=2, backoff=aqueue.Backoff(base_s=3, factor=3, jitter=0))
    async def again(payload: Task) -> None:
        raise aqueue.Retry()

    job_id = await app.enqueue(again, Task())
    assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert row["state"] == "error"
    assert 8 < row["due_in_s"] <= 9  # 3 * 3**1
    await pg.execute(
        f"UPDATE {schema}.background_jobs SET next_attempt_after = now() WHERE id = $1", job_id
    )
    assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("failed", 2)
    assert "requested a retry after attempt 2" in row["failure_info"]


async def test_a_backoff_callable_gives_the_exact_wait_and_a_broken_one_falls_back(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    seen: list[int] = []

    def linear(attempt: int) -> float:
        seen.append(attempt)
        return 100.0 * attempt

    @app.job(payload=Task, backoff=linear)
    async def flaky(payload: Task) -> None:
        raise RuntimeError("no")

    @app.job(payload=Task, backoff=lambda attempt: -1)
    async def badly_backed_off(payload: Task) -> None:
        raise RuntimeError("no")

    good = await app.enqueue(flaky, Task())
    bad = await app.enqueue(badly_backed_off, Task())
    assert await app.drain() == 2
    assert seen == [1]
    assert 99 < (await state_of(pg, schema, good))["due_in_s"] <= 100
    row = await state_of(pg, schema, bad)
    assert row["state"] == "error"  # not lost, not failed: the default backoff applied
    assert 30 * 0.9 - 1 < row["due_in_s"] <= 30 * 1.1
    assert "backoff raised ValueError" in row["failure_info"]
    assert "RuntimeError: no" in row["failure_info"]


async def test_snooze_does_not_count_the_attempt_and_keeps_failure_info(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    attempts: list[int] = []

    @app.job(payload=Task, max_tries=2)
    async def sleepy(payload: Task) -> None:
        attempts.append(aqueue.current_job().attempt)
        if payload.fail and len(attempts) == 1:
            raise RuntimeError("first try failed")
        raise aqueue.Snooze(dt.timedelta(seconds=90))

    fresh = await app.enqueue(sleepy, Task())
    assert await app.drain() == 1
    row = await state_of(pg, schema, fresh)
    assert (row["state"], row["try_count"], row["failure_info"]) == ("pending", 0, None)
    assert 85 < row["due_in_s"] <= 90

    attempts.clear()
    failed_once = await app.enqueue(sleepy, Task(fail=True))
    assert await app.drain() == 1
    await pg.execute(
        f"UPDATE {schema}.background_jobs SET next_attempt_after = now() WHERE id = $1",
        failed_once,
    )
    assert await app.drain() == 1
    row = await state_of(pg, schema, failed_once)
    assert attempts == [1, 2]
    # Back to the state after its failed attempt: error, tried once, its failure kept.
    assert (row["state"], row["try_count"]) == ("error", 1)
    assert "first try failed" in row["failure_info"]


async def test_snooze_zero_runs_again_at_once_with_the_same_attempt_number(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    attempts: list[int] = []

    @app.job(payload=Task, max_tries=1)
    async def poll_until_ready(payload: Task) -> None:
        attempts.append(aqueue.current_job().attempt)
        if len(attempts) < 5:
            raise aqueue.Snooze(0)

    job_id = await app.enqueue(poll_until_ready, Task())
    with anyio.fail_after(20):
        assert await app.drain() == 5
    assert attempts == [1, 1, 1, 1, 1]  # max_tries=1 and still it ran 5 times
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("completed", 1)


async def test_more_than_100_snoozes_in_a_row_fail_the_job(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    runs = 0

    @app.job(payload=Task)
    async def snoozes_forever(payload: Task) -> None:
        nonlocal runs
        runs += 1
        raise aqueue.Snooze(0)

    job_id = await app.enqueue(snoozes_forever, Task())
    async with app.worker(concurrency=1) as worker:
        with anyio.fail_after(60):
            stats = await worker.wait_until(lambda s: s.failed == 1)
    assert (stats.snoozed, stats.failed) == (100, 1)
    assert runs == 101
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("failed", 0)
    assert "SnoozedTooOften: the job was snoozed 101 times" in row["failure_info"]


async def test_a_counted_attempt_resets_the_snooze_count(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """60 snoozes, a failed attempt, 60 snoozes, success: 120 snoozes in all but never more
    than 100 in a row."""
    runs = 0

    @app.job(payload=Task, backoff=lambda attempt: 0)
    async def patient(payload: Task) -> None:
        nonlocal runs
        runs += 1
        if runs == 61:
            raise RuntimeError("one real failure")
        if runs < 122:
            raise aqueue.Snooze(0)

    job_id = await app.enqueue(patient, Task())
    async with app.worker(concurrency=1) as worker:
        with anyio.fail_after(60):
            stats = await worker.wait_until(lambda s: s.completed == 1)
    assert (stats.snoozed, stats.errored, stats.failed) == (120, 1, 0)
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("completed", 2)


async def test_discard_fails_at_once_whatever_tries_are_left(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task, max_tries=10)
    async def pointless(payload: Task) -> None:
        raise aqueue.Discard("the account was deleted")

    job_id = await app.enqueue(pointless, Task())
    assert await app.drain() == 1
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("failed", 1)
    assert "Discarded" in row["failure_info"]
    assert "the account was deleted" in row["failure_info"]


class BadInput(ValueError):
    pass


async def test_discard_on_makes_those_exceptions_and_subclasses_final(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task, discard_on=(ValueError,))
    async def strict(payload: Task) -> None:
        if payload.fail:
            raise BadInput(f"bad n {payload.n}")
        raise KeyError("transient")

    bad = await app.enqueue(strict, Task(n=7, fail=True))
    transient = await app.enqueue(strict, Task(n=8))
    assert await app.drain() == 2
    row = await state_of(pg, schema, bad)
    assert (row["state"], row["try_count"]) == ("failed", 1)
    assert "BadInput is in this job type's discard_on" in row["failure_info"]
    assert "bad n 7" in row["failure_info"]  # the traceback follows
    assert (await state_of(pg, schema, transient))["state"] == "error"


async def test_verdicts_raised_inside_a_task_group_are_heard(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """A task group wraps what its tasks raise in an ExceptionGroup: a lone Snooze or
    Discard in it still decides, and discard_on matches a group of its types only."""
    runs: dict[int, int] = {}

    async def raise_(exc: BaseException) -> None:
        raise exc

    @app.job(payload=Task, discard_on=[LookupError], max_tries=3)
    async def grouped(payload: Task) -> None:
        runs[payload.n] = runs.get(payload.n, 0) + 1
        verdicts: dict[int, BaseException] = {
            1: aqueue.Snooze(0),
            2: aqueue.Discard("from a task"),
            3: KeyError("a LookupError"),
            4: RuntimeError("not one"),
        }
        if payload.n == 1 and runs[1] > 1:
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(raise_, verdicts[payload.n])

    ids = await app.enqueue_many(grouped, [Task(n=n) for n in (1, 2, 3, 4)])
    with anyio.fail_after(20):
        await app.drain()
    states = [(await state_of(pg, schema, i))["state"] for i in ids]
    assert states == ["completed", "failed", "failed", "error"]
    assert (await state_of(pg, schema, ids[0]))["try_count"] == 1  # the snooze did not count
    assert "from a task" in (await state_of(pg, schema, ids[1]))["failure_info"]


async def test_delays_beyond_ten_years_are_refused_and_nothing_is_stuck(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def far(payload: Task) -> None:
        raise aqueue.Snooze(dt.timedelta(days=5000))

    @app.job(payload=Task, backoff=lambda attempt: 1e13)
    async def far_backoff(payload: Task) -> None:
        raise RuntimeError("no")

    snoozer = await app.enqueue(far, Task())
    backer = await app.enqueue(far_backoff, Task())
    with anyio.fail_after(20):
        assert await app.drain() == 2
    row = await state_of(pg, schema, snoozer)
    assert row["state"] == "error"  # the Snooze raised ValueError: a failed attempt
    assert "at most ten years" in row["failure_info"]
    row = await state_of(pg, schema, backer)
    assert row["state"] == "error"
    assert row["due_in_s"] < 40  # the default backoff
    with pytest.raises(ValueError, match="at most ten years"):
        await app.enqueue(far, Task(), delay=dt.timedelta(days=4000))
    with pytest.raises(ValueError, match="at most ten years"):
        aqueue.Backoff(max_s=1e12)
