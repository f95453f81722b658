"""Checks every enqueue argument before any SQL runs, and turns them into rows."""

from __future__ import annotations

import datetime as dt
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
from .control import seconds
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
    unique_keys: Sequence[str | None] | None = None,
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
    keys = _unique_keys(name, job_type, payloads, unique_keys)
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
        unique_keys=keys,
    )


UNIQUE_KEY_MAX_CHARS = 1000


def _unique_keys(
    name: str,
    job_type: JobDeclaration[Any] | None,
    payloads: Sequence[Message],
    given: Sequence[str | None] | None,
) -> list[str | None] | None:
    """Each payload's unique key: the caller's, else the job type's ``unique_key`` callable's;
    ``None`` when no job has one."""
    if given is not None:
        if isinstance(given, str) or not isinstance(given, Sequence):
            raise TypeError(f"unique_keys must be a list of str or None, got {given!r}")
        if len(given) != len(payloads):
            raise ValueError(
                f"unique_keys has {len(given)} keys for {len(payloads)} payloads; give one "
                "per payload (None: no uniqueness for that job)"
            )
        keys = list(given)
    elif job_type is not None and job_type.unique_key is not None:
        keys = []
        for payload in payloads:
            try:
                keys.append(job_type.unique_key(payload))
            except Exception as exc:
                raise ValueError(
                    f"the unique_key callable of job type {name!r} raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    else:
        return None
    for key in keys:
        if key is not None and not isinstance(key, str):
            raise TypeError(f"a unique key must be a str or None, got {key!r} (job {name!r})")
        if key is not None and not 1 <= len(key) <= UNIQUE_KEY_MAX_CHARS:
            raise ValueError(
                f"a unique key must be 1-{UNIQUE_KEY_MAX_CHARS} characters, got {len(key)} "
                f"(job {name!r})"
            )
        if key is not None and "\x00" in key:
            raise ValueError(f"a unique key cannot contain NUL characters (job {name!r})")
    return None if all(k is None for k in keys) else keys


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
    return None if delay is None else seconds("delay", delay)
