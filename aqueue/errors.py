"""aqueue's exceptions: one root, each raised in one situation.

::

    AqueueError
    ├── ConfigurationError (also ValueError)   bad settings, names, DSN; before any SQL runs
    │   └── EmbeddedUnavailableError           no DSN given and aqueue[embedded] not installed
    ├── PayloadError (also TypeError)          a payload of the wrong type, or too large, at enqueue
    ├── AppClosedError                         an App used after close()
    ├── JobFailed                              App.result: the job failed for good
    ├── JobCancelled                           App.result: the job was cancelled
    ├── JobNotFound (also LookupError)         App.result: no such job (or pruned)
    └── DatabaseError                          the database refused or dropped a statement
        └── SchemaError                        the schema is not migrated (or is newer than aqueue)

Wrong arguments that are plain programming errors (``max_tries=0``, a naive datetime, both
``delay`` and ``run_at``) raise ``ValueError``/``TypeError`` as the standard library would.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AppClosedError",
    "AqueueError",
    "ConfigurationError",
    "DatabaseError",
    "EmbeddedUnavailableError",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "PayloadError",
    "SchemaError",
]

MIGRATE_HINT = "run `python -m aqueue migrate --app <module:attribute>` (or `await app.migrate()`)"


class AqueueError(Exception):
    """The root of every exception aqueue raises on purpose."""


class ConfigurationError(AqueueError, ValueError):
    """Raised when a setting, schema name, queue name, job type or DSN is invalid.

    Always raised before any SQL runs, so nothing was written.
    """


class EmbeddedUnavailableError(ConfigurationError):
    """Raised when no DSN was given (argument or ``$AQUEUE_DSN``) and the embedded
    PostgreSQL server cannot be used because ``aqueue[embedded]`` is not installed."""


class PayloadError(AqueueError, TypeError):
    """Raised at enqueue when the payload is not the protobuf message type the job declared,
    is not a protobuf message at all, or encodes to more than the app's
    ``max_payload_bytes``. Nothing was written."""


class AppClosedError(AqueueError):
    """Raised when an :class:`aqueue.App` is used (enqueue, migrate, a worker, ...) after
    :meth:`aqueue.App.close`. A closed App never opens a new pool behind your back: make a
    new App instead."""


class JobFailed(AqueueError):
    """Raised by :meth:`aqueue.App.result` when the job ended ``failed``: out of tries, or
    failed for good (``Discard``, ``discard_on``). ``job_id`` and ``failure_info`` (the text
    stored with the job: the last attempt's traceback, or why it was failed) say more."""

    def __init__(self, job_id: int, failure_info: str | None) -> None:
        super().__init__(f"job {job_id} failed")
        self.job_id = job_id
        self.failure_info = failure_info or ""

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.job_id, self.failure_info)


class JobCancelled(AqueueError):
    """Raised by :meth:`aqueue.App.result` when the job was cancelled (:meth:`aqueue.App.cancel`)
    before it completed. ``job_id`` names it."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.job_id,)


class JobNotFound(AqueueError, LookupError):
    """Raised by :meth:`aqueue.App.result` when no job has that id: never enqueued, enqueued
    in a transaction that has not committed (or rolled back), or finished longer ago than
    the retention keeps jobs. ``job_id`` names it."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job {job_id} (never enqueued, not committed, or pruned)")
        self.job_id = job_id

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.job_id,)


class DatabaseError(AqueueError):
    """Raised when PostgreSQL refused a statement or the connection to it failed.

    The message names the operation (``claim``, ``enqueue``, ...) and the driver's error;
    it never contains the DSN's password. The driver's exception is chained as ``__cause__``.
    It pickles (a subclass too): the copy has the same message and ``operation``.
    """

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self._message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # args holds the formatted message, not the two arguments: pickle (a process pool,
        # a test runner's workers) would call __init__ with the wrong ones.
        return type(self), (self.operation, self._message), self.__dict__


class SchemaError(DatabaseError):
    """Raised when aqueue's tables in the app's schema do not match this version of aqueue:

    - when a worker (:meth:`aqueue.App.worker`, ``run_worker``, ``python -m aqueue worker``)
      or :meth:`aqueue.App.drain` starts on a schema that has no aqueue tables, or is at an
      older migration than this aqueue (migrate it), or at a newer one (upgrade aqueue on
      that host); nothing ran;
    - when a statement such as :meth:`aqueue.App.enqueue` finds aqueue's tables, types or
      functions missing in the schema (it was never migrated, or the name is misspelled);
      nothing was written.

    A :class:`DatabaseError`, so code that catches those keeps working.
    """
