"""The App the soak benchmark's worker runs (``python -m aqueue worker --app
benchmarks.soak_app:app``): one job whose handler reports ``<seq> <time.time()>`` at its first
line over UDP to the port in ``$AQUEUE_BENCH_UDP_PORT`` (as benchmarks/app.py's ``timed``),
then awaits 1 ms of I/O."""

from __future__ import annotations

import os
import socket
import time

import anyio
from google.protobuf.wrappers_pb2 import Int64Value

import aqueue

# Its own schema: with --dsn on a shared server it must not meet the other benchmarks'.
SCHEMA = "aqueue_soak"
app = aqueue.App(schema=SCHEMA)

_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_udp_port = int(os.environ.get("AQUEUE_BENCH_UDP_PORT", "0"))


@app.job(payload=Int64Value)
async def soak(payload: Int64Value) -> None:
    """Reports its start, then a 1 ms handler."""
    _udp.sendto(f"{payload.value} {time.time()!r}".encode(), ("127.0.0.1", _udp_port))
    await anyio.sleep(0.001)
