"""The job record as aqueue stores it, and its states."""

from __future__ import annotations

import enum

__all__ = ["JobState"]


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
