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

from ._runtime.worker import Worker, WorkerStatistics
from .app import App
from .backoff import retry_delay_s
from .config import WorkerSettings
from .errors import (
    AqueueError,
    ConfigurationError,
    DatabaseError,
    EmbeddedUnavailableError,
    PayloadError,
)
from .jobs import JobInfo, JobState, current_job
from .registry import JobType
from .schema import make_metadata, metadata

__all__ = [
    "App",
    "AqueueError",
    "ConfigurationError",
    "DatabaseError",
    "EmbeddedUnavailableError",
    "JobInfo",
    "JobState",
    "JobType",
    "PayloadError",
    "Worker",
    "WorkerSettings",
    "WorkerStatistics",
    "current_job",
    "make_metadata",
    "metadata",
    "retry_delay_s",
]

__version__ = "0.1.0"
