"""Helpers for testing code that uses aqueue, in your own test suite::

    import aqueue.testing

    async def test_send_email_reads_its_attempt() -> None:
        await aqueue.testing.run_handler(send_email, SendEmail(to="a@example.com"), attempt=3)

No database is needed for a handler that touches none.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

from ._enqueue import _check_payload
from .config import validate_name
from .jobs import JobInfo, _current
from .registry import JobType, check_job_options

__all__ = ["run_handler"]

M = TypeVar("M", bound=Message)


async def run_handler(
    job: JobType[M],
    payload: M,
    *,
    id: int = 1,
    attempt: int = 1,
    max_tries: int | None = None,
    queue: str | None = None,
    worker_id: str = "test",
) -> None:
    """Run ``job``'s handler on ``payload`` in the calling task, with
    :func:`aqueue.current_job` returning a :class:`aqueue.JobInfo` of the values given, as a
    worker would run attempt ``attempt`` of job ``id``.

    ``job`` is what ``@app.job`` returned; ``max_tries`` and ``queue`` default to its own.
    Whatever the handler raises propagates. Nothing is queued, claimed or written, and
    ``timeout_s`` is not applied. After it returns (or raises), ``current_job()`` is what it
    was before the call (``LookupError`` outside a handler).

    Raises :class:`aqueue.PayloadError` when ``payload`` is not the job's message type (as
    :meth:`aqueue.App.enqueue` would), ``TypeError``/``ValueError`` for a bad ``id``,
    ``attempt`` or ``max_tries``, :class:`aqueue.ConfigurationError` for a bad queue name.
    """
    if not isinstance(job, JobType):
        raise TypeError(f"job must be what @app.job returned (a JobType), got {job!r}")
    _check_payload(job.name, job, payload)  # the same check as enqueue
    for name, value in (("id", id), ("attempt", attempt)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    max_tries = job.max_tries if max_tries is None else max_tries
    check_job_options(job.priority, max_tries)
    queue = validate_name("queue name", job.queue if queue is None else queue)
    token = _current.set(JobInfo(id, job.name, queue, attempt, max_tries, worker_id))
    try:
        await job.handler(payload)
    finally:
        _current.reset(token)
