"""The handlers of a mail-sending service, bound to the job types its producers share
(``examples/mail_jobs.py``).

Run the worker as its own process (as many as you like, on as many hosts)::

    python -m aqueue migrate --app examples.mail:app
    python -m aqueue worker --app examples.mail:app --concurrency 32
"""

from __future__ import annotations

import logging

import anyio

import aqueue
from examples import mail_jobs
from examples.payloads_pb2 import SendEmail

log = logging.getLogger("examples.mail")

app = aqueue.App()


@app.job(mail_jobs.send_email)  # its name, payload, queue "mail" and max_tries 8
async def send_email(payload: SendEmail) -> None:
    await anyio.sleep(0.01)  # stands in for the SMTP round trip
    log.info("sent %r to %s (job %d)", payload.subject, payload.to, aqueue.current_job().id)
