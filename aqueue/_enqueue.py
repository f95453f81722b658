"""Checks every enqueue argument before any SQL runs, and turns them into rows."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from ._store.records import NewJobs
from .config import (
    MAX_PAYLOAD_BYTES_DEFAULT,
    MAX_TRIES_DEFAULT,
    PRIORITY_DEFAULT,
    QUEUE_DEFAULT,
    validate_name,
)
from .errors import PayloadError
from .registry import JobDeclaration, Registry, check_job_options


def new_jobs(
    registry: Registry,
    job: JobDeclaration[Any] | str,
    payloads: Sequence[Message],
    priority: int | None,
    max_tries: int | None,
    delay: float | dt.timedelta | None,
    run_at: dt.datetime | None,
    queue: str | None,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES_DEFAULT,
) -> NewJobs:
    """Validate one enqueue call; raise ``TypeError``/``ValueError`` (or their aqueue
    subclasses) on bad input. Options left ``None`` come from the declaration (a JobType is
    one), or for a bare name from the job type when this process registered it, else from
    the table's defaults."""
    if isinstance(job, JobDeclaration):
        job_type: JobDeclaration[Any] | None = job
        name = job.name
    elif isinstance(job, str):
        name = validate_name("job type", job)
        job_type = registry.get(name)
    else:
        raise TypeError(
            f"job must be a JobType, a declaration (aqueue.declare) or a job type name, got {job!r}"
        )
    for payload in payloads:
        _check_payload(name, job_type, payload)
    if priority is None:
        priority = job_type.priority if job_type else PRIORITY_DEFAULT
    if max_tries is None:
        max_tries = job_type.max_tries if job_type else MAX_TRIES_DEFAULT
    check_job_options(priority, max_tries)
    if queue is None:
        queue = job_type.queue if job_type else QUEUE_DEFAULT
    validate_name("queue name", queue)
    encoded = [p.SerializeToString() for p in payloads]
    for index, data in enumerate(encoded):
        if len(data) > max_payload_bytes:
            raise PayloadError(
                f"payload {index} of job {name!r} is {len(data)} bytes, over max_payload_bytes "
                f"({max_payload_bytes}); store large data elsewhere and enqueue a reference"
            )
    return NewJobs(
        job_type=name,
        queue=queue,
        priority=priority,
        max_tries=max_tries,
        payloads=encoded,
        delay_s=_delay_seconds(delay, run_at),
        run_at=run_at,
    )


def _check_payload(name: str, job_type: JobDeclaration[Any] | None, payload: object) -> None:
    if job_type is not None and type(payload) is not job_type.payload:
        raise PayloadError(
            f"job {name!r} takes {job_type.payload.DESCRIPTOR.full_name} payloads, "
            f"got {type(payload).__module__}.{type(payload).__qualname__}"
        )
    if not isinstance(payload, Message):
        raise PayloadError(f"a payload must be a protobuf message, got {type(payload).__name__}")


def _delay_seconds(delay: float | dt.timedelta | None, run_at: dt.datetime | None) -> float | None:
    if delay is not None and run_at is not None:
        raise ValueError("pass delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, dt.datetime):
            raise TypeError(f"run_at must be a datetime, got {run_at!r}")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise ValueError("run_at must be timezone-aware (e.g. datetime.now(UTC))")
    if delay is None:
        return None
    if isinstance(delay, dt.timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise TypeError(f"delay must be seconds or a timedelta, got {delay!r}")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
    return seconds
