"""The job record as aqueue stores it, and its states."""

from __future__ import annotations

import contextvars
import dataclasses
import enum

__all__ = ["JobInfo", "JobState", "current_job"]


class JobState(enum.StrEnum):
    """The state of a row in ``background_jobs``; ``state::text`` in SQL yields these words.

    ``pending``: never attempted yet. ``running``: claimed by a worker that holds its lease.
    ``completed``: the handler returned. ``error``: an attempt failed; it runs again at
    ``next_attempt_after``. ``failed``: out of tries (or unrunnable); never run again.
    ``cancelled``: withdrawn; never run again.
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclasses.dataclass(frozen=True, slots=True)
class JobInfo:
    """What a handler may want to know about the attempt it runs: see :func:`current_job`."""

    id: int
    job_type: str
    queue: str
    attempt: int  # 1 for the first attempt
    max_tries: int
    worker_id: str


_current: contextvars.ContextVar[JobInfo] = contextvars.ContextVar("aqueue_current_job")


def current_job() -> JobInfo:
    """The job the calling handler is running (id, attempt, ...). Raises ``LookupError``
    outside a handler."""
    return _current.get()
