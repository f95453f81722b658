"""The App the benchmark workers run (``python -m aqueue worker --app benchmarks.app:app``).

Payloads are protobuf well-known types, so the suite needs no generated code. ``timed``
reports when its handler started over UDP to the port in ``$AQUEUE_BENCH_UDP_PORT``: the
latency figures are taken from the handler's own first line, not from the table.
"""

from __future__ import annotations

import os
import socket
import time

import anyio
from google.protobuf.empty_pb2 import Empty
from google.protobuf.wrappers_pb2 import Int64Value

import aqueue

SCHEMA = "aqueue_bench"
app = aqueue.App(schema=SCHEMA)

_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_udp_port = int(os.environ.get("AQUEUE_BENCH_UDP_PORT", "0"))


@app.job(payload=Empty)
async def noop(payload: Empty) -> None:
    """The no-op job of every throughput figure."""


@app.job(payload=Empty)
async def io_10ms(payload: Empty) -> None:
    """A handler that awaits 10 ms of I/O."""
    await anyio.sleep(0.01)


@app.job(payload=Int64Value)
async def timed(payload: Int64Value) -> None:
    """Sends ``<sequence number> <time.time() at start>`` to the benchmark process."""
    _udp.sendto(f"{payload.value} {time.time()!r}".encode(), ("127.0.0.1", _udp_port))


@app.job(payload=Empty, global_concurrency=4)
async def limited(payload: Empty) -> None:
    """A no-op job type of which at most 4 attempts run at once across the fleet."""
