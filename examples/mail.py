"""The job types of a mail-sending service, shared by its producer and its worker.

Run the worker as its own process (as many as you like, on as many hosts)::

    python -m aqueue migrate --app examples.mail:app
    python -m aqueue worker --app examples.mail:app --concurrency 32
"""

from __future__ import annotations

import logging

import anyio

import aqueue
from examples.payloads_pb2 import SendEmail

log = logging.getLogger("examples.mail")

app = aqueue.App()


@app.job(payload=SendEmail, queue="mail", max_tries=8)
async def send_email(payload: SendEmail) -> None:
    await anyio.sleep(0.01)  # stands in for the SMTP round trip
    log.info("sent %r to %s (job %d)", payload.subject, payload.to, aqueue.current_job().id)
