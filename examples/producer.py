"""A producer process: it queues jobs through their shared declaration
(``examples/mail_jobs.py``) and never imports the handlers (they live in the worker's code,
``examples/mail.py``). Run a worker beside it::

    python -m aqueue worker --app examples.mail:app --queue mail   # terminal 1
    python -m examples.producer 100                                # terminal 2
"""

from __future__ import annotations

import sys

import anyio

import aqueue
from examples.mail_jobs import send_email
from examples.payloads_pb2 import SendEmail


async def main(count: int) -> None:
    async with aqueue.App() as app:
        await app.migrate()
        # Lands in queue "mail" with max_tries 8, as declared. (By the bare name
        # "send_email" it would land in queue "default" with the table's defaults.)
        ids = await app.enqueue_many(
            send_email,
            [SendEmail(to=f"user{i}@example.com", subject="Welcome!") for i in range(count)],
        )
        print(f"enqueued {len(ids)} job(s), ids {ids[0]}..{ids[-1]}")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 10)
