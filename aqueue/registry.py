"""job_type <-> protobuf message type <-> async handler."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from google.protobuf.message import Message

from .config import validate_name
from .errors import ConfigurationError

__all__ = ["JobType"]

M = TypeVar("M", bound=Message)


@dataclasses.dataclass(frozen=True, eq=False)
class JobType(Generic[M]):
    """A registered job type, returned by :meth:`aqueue.App.job`.

    Pass it to :meth:`aqueue.App.enqueue`. Calling it runs the handler directly, in the
    caller's task, without touching the queue (handy in tests).

    - ``name``: the ``job_type`` stored in the table.
    - ``payload``: the protobuf message class the handler takes.
    - ``queue``, ``priority``, ``max_tries``: defaults for jobs enqueued without overrides.
    - ``timeout_s``: how long one attempt may run before it is cancelled and recorded as a
      failure (retried like any failure); ``None``: no limit.
    """

    name: str
    payload: type[M]
    handler: Callable[[M], Awaitable[None]]
    queue: str
    priority: int
    max_tries: int
    timeout_s: float | None = None

    def __call__(self, payload: M) -> Awaitable[None]:
        return self.handler(payload)


def check_job_options(priority: int, max_tries: int) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, got {priority!r}")
    if not -(2**31) <= priority < 2**31:
        raise ValueError(f"priority must fit in a 32-bit integer, got {priority}")
    if isinstance(max_tries, bool) or not isinstance(max_tries, int):
        raise TypeError(f"max_tries must be an int, got {max_tries!r}")
    if not 1 <= max_tries < 2**31:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")


class Registry:
    """The job types one App knows; a worker claims only these."""

    def __init__(self) -> None:
        self._types: dict[str, JobType[Message]] = {}

    def register(
        self,
        handler: Callable[[M], Awaitable[None]],
        *,
        payload: type[M],
        name: str | None,
        queue: str,
        priority: int,
        max_tries: int,
        timeout_s: float | None = None,
    ) -> JobType[M]:
        if not (isinstance(payload, type) and issubclass(payload, Message)):
            raise TypeError(f"payload must be a protobuf message class, got {payload!r}")
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"a job handler must be an 'async def' function, got {handler!r}")
        job_name = validate_name("job type", name or handler.__name__)
        validate_name("queue name", queue)
        check_job_options(priority, max_tries)
        if timeout_s is not None and (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, (int, float))
            or not 0 < timeout_s < float("inf")
        ):
            raise ValueError(
                f"timeout_s must be a number of seconds > 0, or None; got {timeout_s!r}"
            )
        if job_name in self._types:
            raise ConfigurationError(f"job type {job_name!r} is already registered")
        job_type = JobType(
            job_name,
            payload,
            handler,
            queue,
            priority,
            max_tries,
            None if timeout_s is None else float(timeout_s),
        )
        self._types[job_name] = job_type  # type: ignore[assignment]
        return job_type

    def get(self, name: str) -> JobType[Message] | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def __iter__(self) -> Iterator[JobType[Message]]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)
