"""A producer process: it queues jobs by their type name and never imports the handlers
(they live in the worker's code). Run a worker beside it::

    python -m aqueue worker --app examples.mail:app      # terminal 1
    python -m examples.producer 100                      # terminal 2
"""

from __future__ import annotations

import sys

import anyio

import aqueue
from examples.payloads_pb2 import SendEmail


async def main(count: int) -> None:
    async with aqueue.App() as app:
        await app.migrate()
        ids = await app.enqueue_many(
            "send_email",
            [SendEmail(to=f"user{i}@example.com", subject="Welcome!") for i in range(count)],
            queue="mail",
        )
        print(f"enqueued {len(ids)} job(s), ids {ids[0]}..{ids[-1]}")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 10)
