"""Middleware and hooks around each attempt: order, what they see, and that a hook never
changes a job's outcome (nor holds its slot for ever)."""

from __future__ import annotations

import contextvars
import logging

import anyio
import asyncpg
import pytest

import aqueue
from aqueue._runtime import executor
from aqueue.hooks import CallNext
from tests.integration.test_worker import state_of
from tests.payloads_pb2 import Task

current_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


def recorder(app: aqueue.App) -> list[tuple[str, int, str | None, bool]]:
    """Every hook kind, recording (kind, job id, exception type, final)."""
    seen: list[tuple[str, int, str | None, bool]] = []

    def add(kind: str, event: aqueue.JobEvent) -> None:
        assert event.duration_s >= 0
        exc = None if event.exception is None else type(event.exception).__name__
        seen.append((kind, event.context.id, exc, event.final))

    @app.on_job_start
    async def start(event: aqueue.JobEvent) -> None:
        add("start", event)

    @app.on_job_success
    async def success(event: aqueue.JobEvent) -> None:
        add("success", event)

    @app.on_job_failure
    async def failure(event: aqueue.JobEvent) -> None:
        add("failure", event)

    @app.on_job_retry
    async def retry(event: aqueue.JobEvent) -> None:
        add("retry", event)

    return seen


async def test_middleware_run_in_registration_order_the_first_outermost(app: aqueue.App) -> None:
    trail: list[str] = []

    @app.middleware
    async def outer(job: aqueue.JobContext, call_next: CallNext) -> object:
        trail.append(f"outer in {job.job_type} #{job.attempt} n={job.payload.n}")  # type: ignore[attr-defined]
        try:
            return await call_next()
        finally:
            trail.append("outer out")

    @app.middleware
    async def tenant(job: aqueue.JobContext, call_next: CallNext) -> object:
        trail.append("tenant in")
        token = current_tenant.set("acme")
        try:
            return await call_next()
        finally:
            current_tenant.reset(token)
            trail.append("tenant out")

    @app.job(payload=Task)
    async def work(payload: Task) -> None:
        trail.append(f"handler sees tenant {current_tenant.get()}")

    await app.enqueue(work, Task(n=3))
    assert await app.drain() == 1
    assert trail == [
        "outer in work #1 n=3",
        "tenant in",
        "handler sees tenant acme",
        "tenant out",
        "outer out",
    ]


async def test_a_middleware_may_replace_the_result(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.middleware
    async def doubles(job: aqueue.JobContext, call_next: CallNext) -> object:
        returned = await call_next()
        assert isinstance(returned, Task)
        return Task(n=returned.n * 2)

    @app.job(payload=Task, result=Task)
    async def echo(payload: Task) -> Task:
        return Task(n=payload.n)

    job_id = await app.enqueue(echo, Task(n=5))
    await app.drain()
    assert await app.result(job_id, timeout=5) == Task(n=10)


async def test_a_middleware_raising_before_call_next_fails_the_attempt_with_its_traceback(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    ran: list[int] = []

    @app.middleware
    async def gate(job: aqueue.JobContext, call_next: CallNext) -> object:
        raise PermissionError("tenant suspended")

    @app.job(payload=Task, max_tries=2)
    async def work(payload: Task) -> None:
        ran.append(1)

    job_id = await app.enqueue(work, Task())
    await app.drain()
    row = await state_of(pg, schema, job_id)
    assert (row["state"], row["try_count"]) == ("error", 1)
    assert "PermissionError: tenant suspended" in row["failure_info"]
    assert "in gate" in row["failure_info"]  # its traceback
    assert ran == []


async def test_each_hook_fires_for_the_outcomes_it_names(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    seen = recorder(app)
    snoozed_once: list[int] = []

    @app.job(payload=Task, max_tries=2)
    async def fates(payload: Task) -> None:
        attempt = aqueue.current_job().attempt
        if payload.n == 1:
            return
        if payload.n == 2:
            raise ValueError("flaky")  # fails, then (attempt 2) fails for good
        if payload.n == 3:
            raise aqueue.Retry("later", delay=0) if attempt == 1 else aqueue.Discard("gone")
        if payload.n == 4 and not snoozed_once:  # a snooze does not count: attempt stays 1
            snoozed_once.append(1)
            raise aqueue.Snooze(0)

    ok, flaky, decided, snoozed = [await app.enqueue(fates, Task(n=n)) for n in (1, 2, 3, 4)]
    async with app.worker(concurrency=1) as worker:
        with anyio.fail_after(20):
            # flaky's second try comes after its backoff: make it due now.
            await worker.wait_until(lambda s: s.completed == 2 and s.failed == 1)
            await pg.execute(
                f"UPDATE {schema}.background_jobs SET next_attempt_after = now() WHERE id = $1",
                flaky,
            )
            await worker.wait_until(lambda s: s.failed == 2)

    def of(job_id: int) -> list[tuple[str, str | None, bool]]:
        return [(kind, exc, final) for kind, jid, exc, final in seen if jid == job_id]

    assert of(ok) == [("start", None, False), ("success", None, False)]
    assert of(flaky) == [
        ("start", None, False),
        ("failure", "ValueError", False),
        ("retry", "ValueError", False),
        ("start", None, False),
        ("failure", "ValueError", True),  # out of tries: report this one
    ]
    assert of(decided) == [
        ("start", None, False),
        ("retry", "Retry", False),  # a Retry with tries left: no failure hook
        ("start", None, False),
        ("failure", "Discard", True),
    ]
    assert of(snoozed) == [
        ("start", None, False),
        ("retry", "Snooze", False),
        ("start", None, False),
        ("success", None, False),
    ]


async def test_a_start_hook_that_raises_fails_the_attempt(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    ran: list[int] = []

    @app.on_job_start
    async def refuse(event: aqueue.JobEvent) -> None:
        raise RuntimeError("no tracing backend")

    @app.job(payload=Task)
    async def work(payload: Task) -> None:
        ran.append(1)

    job_id = await app.enqueue(work, Task())
    await app.drain()
    row = await state_of(pg, schema, job_id)
    assert row["state"] == "error"
    assert "RuntimeError: no tracing backend" in row["failure_info"]
    assert ran == []


async def test_hooks_after_the_handler_never_change_the_outcome(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    @app.on_job_success
    async def broken(event: aqueue.JobEvent) -> None:
        raise KeyError("sentry is down")

    @app.on_job_success
    async def exits(event: aqueue.JobEvent) -> None:
        raise SystemExit(3)

    @app.on_job_failure
    async def also_broken(event: aqueue.JobEvent) -> None:
        raise ValueError("still down")

    @app.job(payload=Task, max_tries=1)
    async def work(payload: Task) -> None:
        if payload.n:
            raise RuntimeError("boom")

    good = await app.enqueue(work, Task(n=0))
    bad = await app.enqueue(work, Task(n=1))
    with caplog.at_level(logging.WARNING, "aqueue.worker"):
        await app.drain()
    assert (await state_of(pg, schema, good))["state"] == "completed"
    assert (await state_of(pg, schema, bad))["state"] == "failed"
    text = caplog.text
    for expected in ("on_job_success hook", "KeyError", "SystemExit", "on_job_failure hook"):
        assert expected in text
    assert "still down" in text


async def test_a_hook_that_hangs_is_cut_off_and_the_slot_frees(
    app: aqueue.App,
    pg: asyncpg.Connection,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(executor, "HOOK_TIMEOUT_S", 0.3)

    @app.on_job_success
    async def hangs(event: aqueue.JobEvent) -> None:
        await anyio.sleep_forever()

    @app.job(payload=Task)
    async def work(payload: Task) -> None:
        pass

    ids = [await app.enqueue(work, Task(n=n)) for n in range(2)]
    with caplog.at_level(logging.WARNING, "aqueue.worker"), anyio.fail_after(10):
        assert await app.drain(concurrency=1) == 2  # one slot: the second ran after the cut
    for job_id in ids:
        assert (await state_of(pg, schema, job_id))["state"] == "completed"
    assert caplog.text.count("was cut off") == 2


async def test_hooks_and_middleware_must_be_async(app: aqueue.App) -> None:
    with pytest.raises(TypeError, match="async def"):
        app.middleware(lambda job, call_next: call_next())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async def"):
        app.on_job_failure(print)  # type: ignore[arg-type]

    async def no_args() -> None: ...

    with pytest.raises(TypeError, match="positional"):
        app.on_job_start(no_args)  # type: ignore[arg-type]


async def test_a_stop_while_a_hook_runs_keeps_the_outcome(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """The attempt completed; a slow success hook is still running when the worker stops:
    the job stays completed, it is not handed back to run again."""
    ran: list[int] = []
    in_hook = anyio.Event()

    @app.on_job_success
    async def slow_report(event: aqueue.JobEvent) -> None:
        in_hook.set()
        await anyio.sleep(1.0)

    @app.job(payload=Task)
    async def work(payload: Task) -> None:
        ran.append(1)

    job_id = await app.enqueue(work, Task())
    async with app.worker(shutdown_timeout_s=0.1) as worker:
        with anyio.fail_after(10):
            await in_hook.wait()
        worker.stop(graceful=False)  # cancels the job's task while the hook runs
    assert (await state_of(pg, schema, job_id))["state"] == "completed"
    assert ran == [1]
    assert worker.statistics().released == 0
