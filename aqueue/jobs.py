"""The job record as aqueue stores it, and its states."""

from __future__ import annotations

import contextvars
import dataclasses
import enum

__all__ = ["JobId", "JobInfo", "JobState", "current_job"]


class JobId(int):
    """A job's id, as :meth:`aqueue.App.enqueue` returns it: an ``int`` that also says
    whether the enqueue added a job. ``duplicate`` is ``True`` when a job of the same type
    already held the unique key (it is that job's id, and nothing was inserted). It prints
    and compares as the plain number."""

    duplicate: bool = False  # set on the instance for a duplicate only: ids come by the 10,000


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
