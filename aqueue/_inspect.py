"""Introspection from code: a job by id, pages of jobs, retrying an ended job, and counts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError, Message

from .config import validate_name
from .jobs import JobState

if TYPE_CHECKING:
    from ._store.store import Store
    from .registry import JobDeclaration, Registry

__all__ = ["Introspection", "JobRecord", "Stats", "StatsRow"]

LIMIT_MAX = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as :meth:`aqueue.App.get_job` and :meth:`aqueue.App.list_jobs` return it:
    every column of ``background_jobs``.

    ``state`` is an :class:`aqueue.JobState`. ``payload`` (and ``result``) are decoded
    messages when this app registered the job type (with ``result=`` for the result), else
    the stored ``bytes`` (also when they do not decode): test with ``isinstance(record.payload,
    bytes)``. ``started_at``: when the latest attempt started, for running and finished jobs
    (``None`` for pending and error jobs, and jobs cancelled before they ran);
    ``finished_at``: when it ended (finished jobs only); ``lease_expires_at``: a running
    job's worker's lease."""

    id: int
    job_type: str
    queue: str
    state: JobState
    queued: dt.datetime
    next_attempt_after: dt.datetime
    try_count: int
    max_tries: int
    priority: int
    payload: Message | bytes
    failure_info: str | None
    worker_id: str | None
    lease_expires_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    result: Message | bytes | None


@dataclasses.dataclass(frozen=True, slots=True)
class StatsRow:
    """How many jobs of ``job_type`` in ``queue`` are in ``state``."""

    queue: str
    job_type: str
    state: JobState
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """What :meth:`aqueue.App.stats` returns.

    - ``rows``: exact counts of the jobs waiting (``pending``, ``error``, due or not) and
      ``running``, by queue, job type and state.
    - ``oldest_due_wait_s``: how long the job that has been due the longest has waited
      (seconds, by the database's clock); ``None`` when no job is due.
    - ``finished_estimate``: the finished jobs retention keeps, from the planner's statistics
      (``pg_class.reltuples`` of the ring partitions, as of their last VACUUM or ANALYZE, so
      an estimate that reads no finished row): ``{"done": completed and cancelled together,
      "failed": failed}``.
    """

    rows: list[StatsRow]
    oldest_due_wait_s: float | None
    finished_estimate: dict[str, int]

    def count(self, *, state: JobState | str | None = None, job_type: str | None = None) -> int:
        """The sum of ``rows`` in ``state`` and of ``job_type`` (``None``: any)."""
        return sum(
            r.count
            for r in self.rows
            if (state is None or r.state == state) and (job_type is None or r.job_type == job_type)
        )


class Introspection:
    """The App's methods that read and revive jobs (mixed into :class:`aqueue.App`)."""

    registry: Registry

    async def _get_store(self) -> Store:
        raise NotImplementedError  # App's

    async def get_job(self, job_id: int) -> JobRecord | None:
        """Job ``job_id`` as a :class:`aqueue.JobRecord`, or ``None`` when there is no such
        job (never enqueued, not committed yet, or removed by retention). One lookup by id in
        each table."""
        _check_id(job_id, "job_id")
        store = await self._get_store()
        row = await store.get_job(job_id)
        return None if row is None else self._record(row)

    async def list_jobs(
        self,
        *,
        state: JobState | str | Collection[JobState | str] | None = None,
        job_type: JobDeclaration[Any] | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[JobRecord]:
        """A page of jobs, ascending by id: at most ``limit`` (1 to 10,000), those with an id
        greater than ``after_id`` (the keyset cursor: pass the last id of the previous page),
        in ``state`` (a :class:`aqueue.JobState`, its name, or a collection of them), of
        ``job_type`` (a name, or what ``@app.job``/``aqueue.declare`` returned) and in
        ``queue``; ``None`` means any. Each table is read in id order from the cursor, and
        only the tables that hold the states asked for: a page of waiting jobs never reads
        finished history. Raises ``ValueError``/``TypeError`` on bad arguments."""
        states = _states(state)
        name = _job_type_name(job_type)
        if queue is not None:
            validate_name("queue name", queue)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
            raise ValueError(f"limit must be an int from 1 to {LIMIT_MAX}, got {limit!r}")
        if after_id is not None:
            _check_id(after_id, "after_id", minimum=0)
        store = await self._get_store()
        rows = await store.list_jobs(states, name, queue, after_id or 0, limit)
        return [self._record(row) for row in rows]

    async def retry(self, job_id: int) -> bool:
        """Run a ``failed`` or ``cancelled`` job again: due now, with a fresh budget of
        tries (``max_tries`` grows by the job's ``max_tries``), its ``failure_info`` kept as
        the history of why it ended; idle workers are told at once. Its state is ``pending``
        if it never ran, else ``error``: attempt numbers keep counting, because a job
        cancelled while running may still have that attempt running, and a number reused
        would let that attempt's late write pass for the new one's. ``False``, and nothing
        changes, for a job in any other state or none (two concurrent calls: one ``True``).
        A unique key the job held is not taken again."""
        _check_id(job_id, "job_id")
        store = await self._get_store()
        return await store.retry(job_id)

    async def stats(self) -> Stats:
        """Counts of the jobs by queue, job type and state, and how long the job due
        longest has waited: see :class:`aqueue.Stats` for which numbers are exact (waiting
        and running jobs: one pass over those tables) and which estimated (finished jobs:
        the planner's statistics, no finished row read)."""
        store = await self._get_store()
        rows = await store.stats()
        now = next(r[5] for r in rows if r[0] == "now")
        exact = [r for r in rows if r[0] == "exact"]
        due = [r[5] for r in exact if r[5] is not None and r[5] <= now]
        return Stats(
            rows=[StatsRow(r[1], r[2], JobState(r[3]), int(r[4])) for r in exact],
            oldest_due_wait_s=(now - min(due)).total_seconds() if due else None,
            finished_estimate={r[3]: int(r[4]) for r in rows if r[0] == "estimate"},
        )

    def _record(self, row: Any) -> JobRecord:
        job_type = self.registry.get(row[1])
        payload: Message | bytes = row[9]
        raw_result: bytes | None = row[15]
        result: Message | bytes | None = raw_result
        if job_type is not None:
            payload = _decoded(job_type.payload, row[9])
            if raw_result is not None and job_type.result is not None:
                result = _decoded(job_type.result, raw_result)
        return JobRecord(
            id=row[0],
            job_type=row[1],
            queue=row[2],
            state=JobState(row[3]),
            queued=row[4],
            next_attempt_after=row[5],
            try_count=row[6],
            max_tries=row[7],
            priority=row[8],
            payload=payload,
            failure_info=row[10],
            worker_id=row[11],
            lease_expires_at=row[12],
            started_at=row[13],
            finished_at=row[14],
            result=result,
        )


def _decoded(message_class: type[Message], raw: bytes) -> Message | bytes:
    try:
        return message_class.FromString(raw)
    except (DecodeError, ValueError, RuntimeError):
        return raw  # as stored: the worker fails such a job with a readable failure_info


def _check_id(value: object, name: str, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")


def _states(state: object) -> list[str] | None:
    if state is None:
        return None
    given = [state] if isinstance(state, str) else state
    if not isinstance(given, Collection):
        raise TypeError(f"state must be a JobState, its name, or a collection of them: {state!r}")
    try:
        return sorted({JobState(s).value for s in given})
    except ValueError:
        known = ", ".join(s.value for s in JobState)
        raise ValueError(f"state must be among {known}; got {state!r}") from None


def _job_type_name(job_type: object) -> str | None:
    if job_type is None or isinstance(job_type, str):
        return job_type
    name = getattr(job_type, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"job_type must be a name or a job type, got {job_type!r}")
    return name
