"""The mail service's job types as declared for everyone: producers import this module (and
never the handlers, which live in ``examples/mail.py`` with the worker). Jobs queued through
a declaration land in its queue, with its priority and ``max_tries``."""

from __future__ import annotations

import aqueue
from examples.payloads_pb2 import SendEmail

send_email = aqueue.declare("send_email", payload=SendEmail, queue="mail", max_tries=8)
