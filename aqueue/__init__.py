"""aqueue: an asyncio-native background job queue that keeps its jobs in PostgreSQL.

::

    import aqueue

    app = aqueue.App()                      # $AQUEUE_DSN, else the embedded PostgreSQL

    @app.job(payload=SendEmail)
    async def send_email(payload: SendEmail) -> None: ...

    await app.migrate()
    await app.enqueue(send_email, SendEmail(to="a@example.com"))
    async with app.worker(concurrency=16):
        ...
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._inspect import JobRecord, Stats, StatsRow
from ._runtime.worker import Worker, WorkerStatistics
from .app import App
from .backoff import Backoff, retry_delay_s
from .config import WorkerSettings
from .control import Discard, RateLimit, Retry, Snooze
from .errors import (
    AppClosedError,
    AqueueError,
    ConfigurationError,
    DatabaseError,
    EmbeddedUnavailableError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    PayloadError,
    SchemaError,
)
from .hooks import CallNext, JobContext, JobEvent
from .jobs import JobId, JobInfo, JobState, current_job
from .periodic import PeriodicEntry
from .registry import JobDeclaration, JobType, declare

if _TYPE_CHECKING:
    from .schema import make_metadata, metadata

__all__ = [
    "App",
    "AppClosedError",
    "AqueueError",
    "Backoff",
    "CallNext",
    "ConfigurationError",
    "DatabaseError",
    "Discard",
    "EmbeddedUnavailableError",
    "JobCancelled",
    "JobContext",
    "JobDeclaration",
    "JobEvent",
    "JobFailed",
    "JobId",
    "JobInfo",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "JobType",
    "PayloadError",
    "PeriodicEntry",
    "RateLimit",
    "Retry",
    "SchemaError",
    "Snooze",
    "Stats",
    "StatsRow",
    "Worker",
    "WorkerSettings",
    "WorkerStatistics",
    "current_job",
    "declare",
    "make_metadata",
    "metadata",
    "retry_delay_s",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> _Any:
    # The SQLAlchemy metadata loads SQLAlchemy: only for those who ask (a worker never does).
    if name in ("make_metadata", "metadata"):
        from . import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'aqueue' has no attribute {name!r}")
