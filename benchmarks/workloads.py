"""aqueue's workloads. Each one takes the Bench and a size, and returns its figures (named
with their units: ``jobs_per_s``, ``p50_ms``, ...). Throughput is measured from the commit
that makes the jobs visible to the moment none is left queued or running: the worker is
already up and idle, so start-up is not counted, and completion means written to the table."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio
import asyncpg
from google.protobuf.empty_pb2 import Empty
from google.protobuf.wrappers_pb2 import Int64Value

from .app import SCHEMA, io_10ms, limited, noop, timed
from .harness import Bench, StartTimes, WorkerProcess, pace, percentile

Figures = dict[str, float]
ENQUEUE_CHUNK = 10_000


async def enqueue_single(bench: Bench, n: int) -> Figures:
    """One task enqueues ``n`` jobs one by one, each committed (and NOTIFYing) on its own."""
    await bench.reset()
    payload = Empty()
    await bench.app.enqueue(noop, payload)  # connect and warm the pool outside the clock
    start = time.perf_counter()
    for _ in range(n):
        await bench.app.enqueue(noop, payload)
    return {"jobs_per_s": n / (time.perf_counter() - start)}


async def enqueue_bulk(bench: Bench, n: int) -> Figures:
    """``enqueue_many`` in calls of 10,000 jobs, each call one statement and one NOTIFY."""
    await bench.reset()
    payloads = [Empty()] * ENQUEUE_CHUNK
    await bench.app.enqueue(noop, Empty())
    start = time.perf_counter()
    for _ in range(max(1, n // ENQUEUE_CHUNK)):
        await bench.app.enqueue_many(noop, payloads)
    calls = max(1, n // ENQUEUE_CHUNK)
    return {"jobs_per_s": calls * ENQUEUE_CHUNK / (time.perf_counter() - start)}


async def queue_at_once(
    bench: Bench,
    job: Any,
    n: int,
    *,
    queues: tuple[str, ...] = ("default",),
    extra: list[tuple[Any, int]] | None = None,
) -> tuple[int, float]:
    """Insert ``n`` jobs in one transaction (they appear together, with one NOTIFY per
    statement), split evenly over ``queues``, with ``extra`` (job type, count) after them;
    return the first job's id and ``time.perf_counter()`` after the commit."""
    payloads = [Empty()] * min(n, ENQUEUE_CHUNK)
    first: int | None = None
    async with bench.pg.transaction():
        for i, queue in enumerate(queues):
            left = n // len(queues) + (n % len(queues) if i == 0 else 0)
            while left > 0:
                ids = await bench.app.enqueue_many(job, payloads[:left], conn=bench.pg, queue=queue)
                first = ids[0] if first is None else first
                left -= ENQUEUE_CHUNK
        for other, count in extra or []:
            await bench.app.enqueue_many(other, [Empty()] * count, conn=bench.pg)
    assert first is not None
    return first, time.perf_counter()


async def _drain(
    bench: Bench,
    job: Any,
    n: int,
    concurrency: int,
    *worker_args: str,
    queues: tuple[str, ...] = ("default",),
    beside: tuple[Any, int] | None = None,
) -> Figures:
    """Drain ``n`` jobs of ``job``, split evenly over ``queues``, with ``beside`` (a job type
    and a count) queued in the same transaction."""
    await bench.reset()
    await bench.release_app()  # so that the only connections named "aqueue" are the worker's
    watch = await asyncpg.connect(bench.dsn)
    worker = WorkerProcess(bench.dsn, concurrency, 0, *worker_args)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(watch.close)
        await stack.enter_async_context(worker.running())
        await anyio.sleep(0.2)  # past its first (empty) claim
        connections = 0
        done = anyio.Event()

        async def watch_connections() -> None:
            nonlocal connections
            while not done.is_set():
                connections = max(connections, await bench.aqueue_connections(watch))
                with anyio.move_on_after(0.25):
                    await done.wait()

        extra = [] if beside is None else [beside]
        _, start = await queue_at_once(bench, job, n, queues=queues, extra=extra)
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_connections)
            end = await bench.wait_finished(timeout_s=600)
            done.set()
        counts = await bench.counts()
        total = n + (beside[1] if beside else 0)
        if counts.get("completed", 0) != total:
            raise RuntimeError(f"expected {total} completed jobs, found {counts}")
        figures = {
            "jobs_per_s": total / (end - start),
            "worker_peak_rss_mib": worker.peak_rss_mib(),
            "worker_connections": connections,
        }
        if beside is not None:
            # Each type's own rate, from the database's clock: enqueue commit to last done.
            rows = await bench.pg.fetch(
                f"SELECT job_type, count(*) / extract(epoch FROM max(finished_at) - min(queued)) "
                f"FROM {SCHEMA}.jobs_done GROUP BY job_type"
            )
            rates = {job_type: float(rate) for job_type, rate in rows}
            # The headline is the unlimited type's own rate: the limited one's tail (4 at a
            # time) would otherwise decide the figure.
            figures["all_jobs_per_s"] = figures["jobs_per_s"]
            figures["jobs_per_s"] = rates.pop(job.name)
            for job_type, rate in rates.items():
                figures[f"{job_type}_jobs_per_s"] = rate
        return figures


async def drain_c16(bench: Bench, n: int) -> Figures:
    return await _drain(bench, noop, n, 16)


async def drain_c64(bench: Bench, n: int) -> Figures:
    return await _drain(bench, noop, n, 64)


async def drain_queues_2x8(bench: Bench, n: int) -> Figures:
    """Two queues of 8 slots each (``--queue a=8 --queue b=8``), half the jobs in each."""
    return await _drain(bench, noop, n, 16, "--queue", "a=8", "--queue", "b=8", queues=("a", "b"))


async def drain_beside_limited(bench: Bench, n: int) -> Figures:
    """``n`` no-op jobs beside ``n / 10`` of a type limited to 4 running at once across the
    fleet (a claim that would take one locks the type's row and counts its running
    attempts): concurrency 16. The figure is the no-op jobs' rate, enqueue commit to the last
    one done (database clock); the limited type's and the whole drain's are reported too."""
    return await _drain(bench, noop, n, 16, beside=(limited, n // 10))


async def io_c256(bench: Bench, n: int) -> Figures:
    """Handlers that await 10 ms of I/O, at concurrency 256."""
    return await _drain(bench, io_10ms, n, 256)


async def _latencies(bench: Bench, n: int, rate_per_s: float) -> Figures:
    """Enqueue ``n`` timed jobs at ``rate_per_s``, one committed statement each; each job's
    latency is its handler's first line minus the moment its enqueue call returned (the
    commit was acknowledged)."""
    await bench.reset()
    times = StartTimes()
    committed: dict[int, float] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(times.serve)
        worker = WorkerProcess(bench.dsn, 16, times.port)
        async with worker.running():
            await anyio.sleep(0.2)
            await bench.app.enqueue(timed, Int64Value(value=-1))  # warm up both sides
            await times.wait_for(1, timeout_s=10)

            async def one(i: int) -> None:
                await bench.app.enqueue(timed, Int64Value(value=i))
                committed[i] = time.time()

            reached = await pace(rate_per_s, n, one)
            await times.wait_for(n + 1, timeout_s=60)
            await bench.wait_finished(timeout_s=60)
            rss = worker.peak_rss_mib()
        tg.cancel_scope.cancel()
    counts = await bench.counts()
    left = n + 1 - counts.get("completed", 0)
    ms = [(times.started[i] - committed[i]) * 1000 for i in range(n)]
    return {
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "enqueued_per_s": reached,
        "left_behind": left,
        "worker_peak_rss_mib": rss,
    }


async def wakeup(bench: Bench, n: int) -> Figures:
    """An idle worker: one job at a time, 20 ms apart."""
    return await _latencies(bench, n, rate_per_s=50)


async def steady_1000(bench: Bench, n: int) -> Figures:
    """1,000 jobs a second for ``n`` jobs (20,000: 20 s)."""
    return await _latencies(bench, n, rate_per_s=1000)


async def idle(bench: Bench, seconds: int) -> Figures:
    """An idle worker with the default settings (in this process): statements a second."""
    await bench.reset()
    store = await bench.app._get_store()
    async with bench.app.worker() as worker:
        await worker.wait_ready()
        before = store.statistics().total
        await anyio.sleep(seconds)
        after = store.statistics().total
    return {"statements_per_s": (after - before) / seconds}
