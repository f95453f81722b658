"""Plain records that cross the store boundary."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker claimed: it is running under this worker's lease at ``attempt``."""

    id: int
    job_type: str
    queue: str
    priority: int
    next_attempt_after: dt.datetime
    attempt: int  # try_count after the claim: 1 for the first attempt
    max_tries: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class NewJobs:
    """Validated rows for one enqueue call (one job type, shared options)."""

    job_type: str
    queue: str
    priority: int
    max_tries: int
    payloads: list[bytes]
    delay_s: float | None
    run_at: dt.datetime | None
    unique_keys: list[str | None] | None = None  # per payload; None: no uniqueness at all


@dataclass(frozen=True, slots=True)
class Limit:
    """A job type's fleet-wide limits, as a claim enforces them."""

    job_type: str
    concurrency: int | None
    rate_count: int | None
    rate_period_s: float | None
