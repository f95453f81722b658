"""Results: a handler's returned message stored with the completed job, and App.result
waiting (on LISTEN) for a job to end."""

from __future__ import annotations

import time

import anyio
import asyncpg
import pytest

import aqueue
from tests.helpers import eventually
from tests.payloads_pb2 import Task

pytestmark = pytest.mark.timeout(30)


async def test_result_returns_the_decoded_message_once_the_job_completes(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    gate = anyio.Event()

    @app.job(payload=Task, result=Task)
    async def double(payload: Task) -> Task:
        await gate.wait()
        return Task(n=payload.n * 2)

    job_id = await app.enqueue(double, Task(n=21))
    async with app.worker():
        async with anyio.create_task_group() as tg:
            got: list[object] = []

            async def wait() -> None:
                got.append(await app.result(job_id, timeout=20))

            tg.start_soon(wait)
            # The waiter is registered before the job can end: its row is in awaited.
            await _until(pg, f"SELECT count(*) FROM {schema}.awaited WHERE job_id = {job_id}", 1)
            ended_at = time.monotonic()
            gate.set()
        woke_s = time.monotonic() - ended_at
    assert got == [Task(n=42)]
    # Told by NOTIFY: well under the 2 s poll of this app's workers (and result never polls).
    assert woke_s < 1.5
    row = await pg.fetchrow(
        f"SELECT state::text, result, started_at, finished_at FROM {schema}.background_jobs "
        "WHERE id = $1",
        job_id,
    )
    assert row["state"] == "completed"
    assert Task.FromString(row["result"]) == Task(n=42)
    assert row["started_at"] <= row["finished_at"]
    # The waiter's row is gone.
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.awaited") == 0


async def test_result_of_a_job_that_ended_already_and_of_a_type_without_results(
    app: aqueue.App,
) -> None:
    @app.job(payload=Task)
    async def plain(payload: Task) -> None:
        pass

    job_id = await app.enqueue(plain, Task())
    await app.drain()
    assert await app.result(job_id, timeout=5) is None


async def test_result_raises_job_failed_with_the_failure_info(app: aqueue.App) -> None:
    @app.job(payload=Task, max_tries=1)
    async def broken(payload: Task) -> None:
        raise RuntimeError("the printer is on fire")

    job_id = await app.enqueue(broken, Task())
    async with app.worker():
        with pytest.raises(aqueue.JobFailed) as caught:
            await app.result(job_id, timeout=20)
    assert caught.value.job_id == job_id
    assert "the printer is on fire" in caught.value.failure_info
    assert "RuntimeError" in caught.value.failure_info


async def test_result_raises_job_cancelled_when_cancelled_while_waiting(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, later: int
) -> None:
    async with anyio.create_task_group() as tg:

        async def cancel_once_waiting() -> None:
            await _until(pg, f"SELECT count(*) FROM {schema}.awaited", 1)
            assert await app.cancel(later)

        tg.start_soon(cancel_once_waiting)
        with pytest.raises(aqueue.JobCancelled):
            await app.result(later, timeout=10)


async def test_result_times_out_and_leaves_the_job_alone(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, later: int
) -> None:
    job_id = later
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await app.result(job_id, timeout=0.3)
    assert 0.25 < time.monotonic() - t0 < 3
    state = await pg.fetchval(
        f"SELECT state::text FROM {schema}.background_jobs WHERE id = $1", job_id
    )
    assert state == "pending"
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.awaited") == 0


async def test_result_of_an_unknown_job_raises_job_not_found(app: aqueue.App) -> None:
    with pytest.raises(aqueue.JobNotFound) as caught:
        await app.result(123456789, timeout=5)
    assert isinstance(caught.value, LookupError)
    with pytest.raises(TypeError):
        await app.result("1", timeout=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        await app.result(1, timeout=-1)


async def test_a_handler_returning_the_wrong_type_fails_the_attempt_readably(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task, result=Task, max_tries=1)
    async def sloppy(payload: Task) -> object:
        return {"n": 1}

    job_id = await app.enqueue(sloppy, Task())
    await app.drain()
    with pytest.raises(aqueue.JobFailed) as caught:
        await app.result(job_id, timeout=5)
    assert "dict" in caught.value.failure_info
    assert "Task" in caught.value.failure_info


@pytest.fixture
async def later(app: aqueue.App) -> int:
    """The id of a job due in an hour: it waits, untouched, through the test."""

    @app.job(payload=Task)
    async def someday(payload: Task) -> None:
        pass

    return await app.enqueue(someday, Task(), delay=3600)


async def _until(pg: asyncpg.Connection, query: str, want: int) -> None:
    async def probe() -> object:
        return await pg.fetchval(query)

    await eventually(probe, lambda n: n == want, timeout_s=10)


async def test_result_raises_database_error_when_its_connection_is_cut(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, later: int
) -> None:
    job_id = later
    async with anyio.create_task_group() as tg:

        async def cut() -> None:
            await _until(pg, f"SELECT count(*) FROM {schema}.awaited", 1)
            # The waiting connection is the one LISTENing on the ended channel.
            killed = await pg.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE '%awaited%' AND pid <> pg_backend_pid()"
            )
            assert killed == 1

        tg.start_soon(cut)
        with pytest.raises(aqueue.DatabaseError, match="lost"):
            await app.result(job_id, timeout=10)  # not a silent wait until the timeout


async def test_result_on_a_schema_never_migrated_raises_schema_error(dsn: str) -> None:
    unmigrated = aqueue.App(dsn, schema="t_never_migrated")
    try:
        with pytest.raises(aqueue.SchemaError, match="migrate"):
            await unmigrated.result(1, timeout=5)
    finally:
        await unmigrated.close()


async def test_closing_the_app_ends_a_waiting_result_call(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, later: int
) -> None:
    """The pool cannot close while a wait holds one of its connections: close() ends the
    wait first (AppClosedError), instead of hanging until the wait's timeout."""
    raised: list[BaseException] = []
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            try:
                await app.result(later)  # no timeout
            except aqueue.AppClosedError as exc:
                raised.append(exc)

        tg.start_soon(wait)
        await _until(pg, f"SELECT count(*) FROM {schema}.awaited", 1)
        with anyio.fail_after(5):
            await app.close()
    assert len(raised) == 1
    assert f"job {later}" in str(raised[0])
    assert await pg.fetchval(f"SELECT count(*) FROM {schema}.awaited") == 0  # it unregistered


async def test_a_job_ending_while_its_waiter_registers_is_not_missed(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, later: int
) -> None:
    """The ending transaction has run ended() (nobody waited yet) but not committed when the
    waiter registers: the waiter's look at the job waits for it to commit, then sees the
    end (no NOTIFY needed). Before, it saw the job still waiting and no NOTIFY ever came."""
    async with pg.transaction():
        assert await pg.fetchval(f"SELECT {schema}.cancel($1)", later) == "pending"
        raised: list[BaseException] = []
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                try:
                    await app.result(later, timeout=20)
                except aqueue.JobCancelled as exc:
                    raised.append(exc)

            tg.start_soon(wait)
            # The waiter's look at the job waits for the ending transaction (its row lock).
            await _until(pg, "SELECT count(*) FROM pg_locks WHERE NOT granted", 1)
            t0 = anyio.current_time()
            await pg.execute("COMMIT; BEGIN")  # commit the cancel; the block's own ends later
        assert anyio.current_time() - t0 < 5  # not the 20 s timeout, nor the 30 s re-check
    assert len(raised) == 1


async def test_many_waiters_do_not_starve_the_apps_pool(app: aqueue.App) -> None:
    """Each result() call listens on a connection of its own: a dozen waiters (more than the
    pool holds) leave the pool to the worker and the enqueues."""

    @app.job(payload=Task, result=Task)
    async def slowish(payload: Task) -> Task:
        await anyio.sleep(0.2)
        return Task(n=payload.n)

    ids = await app.enqueue_many(slowish, [Task(n=n) for n in range(12)])
    got: dict[int, object] = {}
    async with app.worker(concurrency=20):
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                for job_id in ids:

                    async def wait(job_id: int = job_id) -> None:
                        got[job_id] = await app.result(job_id, timeout=10)

                    tg.start_soon(wait)
    assert got == {job_id: Task(n=n) for n, job_id in enumerate(ids)}
