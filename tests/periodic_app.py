"""The App the periodic-job process tests run (``--app tests.periodic_app:app``): one entry
ticking every second (``AQUEUE_TEST_EVERY_S``) whose handler does nothing."""

from __future__ import annotations

import datetime as dt
import os

import aqueue
from tests.payloads_pb2 import Task

SCHEMA = os.environ.get("AQUEUE_TEST_SCHEMA", "aqueue")
EVERY_S = float(os.environ.get("AQUEUE_TEST_EVERY_S", "1"))

app = aqueue.App(schema=SCHEMA)


@app.periodic(every=dt.timedelta(seconds=EVERY_S), payload=Task(n=1))
@app.job(payload=Task)
async def tick(payload: Task) -> None:
    pass
