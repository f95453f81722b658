"""job_type <-> protobuf message type <-> async handler."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from .backoff import DEFAULT_BACKOFF, Backoff, RetryPolicy
from .config import MAX_TRIES_DEFAULT, PRIORITY_DEFAULT, QUEUE_DEFAULT, validate_name
from .control import RateLimit
from .errors import ConfigurationError
from .hooks import Hooks

__all__ = ["JobDeclaration", "JobType", "declare"]

M = TypeVar("M", bound=Message)


@dataclasses.dataclass(frozen=True, eq=False)
class JobDeclaration(Generic[M]):
    """A job type as producers and workers share it, without its handler: made by
    :func:`aqueue.declare`. Pass it to :meth:`aqueue.App.enqueue` (the job lands in the
    declared queue with the declared priority and ``max_tries``), and bind the handler in the
    worker with ``@app.job(declaration)``.

    - ``name``: the ``job_type`` stored in the table.
    - ``payload``: the protobuf message class the handler takes.
    - ``queue``, ``priority``, ``max_tries``: defaults for jobs enqueued without overrides.
    - ``unique_key``: ``payload -> str | None``, the unique key of a job enqueued without
      ``unique_key=`` (``None``: no uniqueness); see :meth:`aqueue.App.enqueue`.
    """

    name: str
    payload: type[M]
    queue: str
    priority: int
    max_tries: int
    unique_key: Callable[[M], str | None] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class JobType(JobDeclaration[M]):
    """A registered job type, returned by :meth:`aqueue.App.job`: a :class:`JobDeclaration`
    with its handler, accepted wherever a declaration is.

    Pass it to :meth:`aqueue.App.enqueue`. Calling it runs the handler directly, in the
    caller's task, without touching the queue (handy in tests).

    - ``name``, ``payload``, ``queue``, ``priority``, ``max_tries``: as declared.
    - ``timeout_s``: how long one attempt may run before it is cancelled and recorded as a
      failure (retried like any failure); ``None``: no limit.
    - ``backoff``: the wait after a failed attempt (a :class:`aqueue.Backoff`, or a callable
      ``(attempt) -> seconds``).
    - ``discard_on``: exception types (subclasses included) that fail the job at once.
    - ``global_concurrency``: the most attempts of this type running at once across the
      fleet; ``None``: no limit.
    - ``rate_limit``: a :class:`aqueue.RateLimit` on starts across the fleet; ``None``: none.
    - ``result``: the protobuf message class the handler returns, stored with the completed
      job; ``None``: what the handler returns is ignored.
    """

    handler: Callable[[M], Awaitable[Any]] = dataclasses.field(kw_only=True)
    timeout_s: float | None = dataclasses.field(default=None, kw_only=True)
    backoff: RetryPolicy = dataclasses.field(default=DEFAULT_BACKOFF, kw_only=True)
    discard_on: tuple[type[BaseException], ...] = dataclasses.field(default=(), kw_only=True)
    global_concurrency: int | None = dataclasses.field(default=None, kw_only=True)
    rate_limit: RateLimit | None = dataclasses.field(default=None, kw_only=True)
    result: type[Message] | None = dataclasses.field(default=None, kw_only=True)

    def __call__(self, payload: M) -> Awaitable[Any]:
        return self.handler(payload)


def declare(
    name: str,
    *,
    payload: type[M],
    queue: str = QUEUE_DEFAULT,
    priority: int = PRIORITY_DEFAULT,
    max_tries: int = MAX_TRIES_DEFAULT,
    unique_key: Callable[[M], str | None] | None = None,
) -> JobDeclaration[M]:
    """Declare a job type in code that producers and workers share, without its handler::

        # shared code (imported by producers and workers)
        send_email = aqueue.declare("send_email", payload=SendEmail, queue="mail", max_tries=8)

        # producer: no handler imported; the job lands in queue "mail" with max_tries 8
        await app.enqueue(send_email, SendEmail(to="ada@example.com"))

        # worker
        @app.job(send_email)
        async def send(payload: SendEmail) -> None: ...

    Raises :class:`ConfigurationError` for a bad name or queue, ``TypeError`` for a payload
    that is not a protobuf message class, ``TypeError``/``ValueError`` for bad options.
    """
    _check_payload_class(payload)
    validate_name("job type", name)
    validate_name("queue name", queue)
    check_job_options(priority, max_tries)
    check_unique_key(unique_key)
    return JobDeclaration(name, payload, queue, priority, max_tries, unique_key)


def _check_payload_class(payload: object) -> None:
    if not (isinstance(payload, type) and issubclass(payload, Message)):
        raise TypeError(f"payload must be a protobuf message class, got {payload!r}")


def check_job_options(priority: int, max_tries: int) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, got {priority!r}")
    if not -(2**31) <= priority < 2**31:
        raise ValueError(f"priority must fit in a 32-bit integer, got {priority}")
    if isinstance(max_tries, bool) or not isinstance(max_tries, int):
        raise TypeError(f"max_tries must be an int, got {max_tries!r}")
    if not 1 <= max_tries < 2**31:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")


def check_unique_key(unique_key: object) -> None:
    if unique_key is not None and not callable(unique_key):
        raise TypeError(
            f"unique_key must be a callable payload -> str | None (the per-type default), got "
            f"{unique_key!r}; pass a job's own key to enqueue(unique_key=...)"
        )


def check_flow_options(
    backoff: object,
    discard_on: object,
    global_concurrency: object,
    rate_limit: object,
) -> tuple[type[BaseException], ...]:
    """Refuse bad ``@app.job`` flow options; return ``discard_on`` as a tuple."""
    if not isinstance(backoff, Backoff) and not callable(backoff):
        raise TypeError(
            f"backoff must be an aqueue.Backoff or a callable (attempt) -> seconds, got {backoff!r}"
        )
    if isinstance(discard_on, type):
        discard_on = (discard_on,)
    if not isinstance(discard_on, (tuple, list)) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in discard_on
    ):
        raise TypeError(f"discard_on must be a tuple of exception classes, got {discard_on!r}")
    if global_concurrency is not None:
        if isinstance(global_concurrency, bool) or not isinstance(global_concurrency, int):
            raise TypeError(
                f"global_concurrency must be an int or None, got {global_concurrency!r}"
            )
        if not 1 <= global_concurrency < 2**31:
            raise ValueError(f"global_concurrency must be >= 1, got {global_concurrency}")
    if rate_limit is not None and not isinstance(rate_limit, RateLimit):
        raise TypeError(f"rate_limit must be an aqueue.RateLimit or None, got {rate_limit!r}")
    return tuple(discard_on)


def _describe(handler: object) -> str:
    """A handler's name for messages: ``module.qualname``, or the repr of anything else."""
    target = handler.func if isinstance(handler, functools.partial) else handler
    qualname = getattr(target, "__qualname__", None)
    if isinstance(qualname, str):
        text = f"{getattr(target, '__module__', '?')}.{qualname}"
    else:
        text = f"{type(target).__module__}.{type(target).__qualname__} object"
    return f"functools.partial({text}, ...)" if target is not handler else text


def _is_async(handler: object) -> bool:
    # A coroutine function (bound methods and functools.partial of one included), or an
    # object whose __call__ is one.
    return inspect.iscoroutinefunction(handler) or (
        not inspect.isroutine(handler)
        and not isinstance(handler, type)
        and inspect.iscoroutinefunction(getattr(handler, "__call__", None))  # noqa: B004
    )


def check_handler(handler: object) -> None:
    """Refuse a handler that could never run: not async, or unable to take the payload as its
    one positional argument. Found at registration rather than by a job failing every try."""
    if not _is_async(handler):
        raise TypeError(
            f"job handler {_describe(handler)} must be an 'async def' function (or an object "
            f"whose __call__ is one); got {handler!r}"
        )
    try:
        # The callable aqueue calls, not what a functools.wraps decorator wraps (a decorator
        # may inject arguments the wrapped function needs).
        signature = inspect.signature(handler, follow_wrapped=False)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"job handler {_describe(handler)}: no signature to check ({exc})"
        ) from None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(signature.parameters.values())
    required = [p.name for p in params if p.kind in positional and p.default is p.empty]
    takes_one = any(p.kind in positional or p.kind is p.VAR_POSITIONAL for p in params)
    if len(required) > 1 or not takes_one:
        bare = signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in params],
            return_annotation=signature.empty,
        )
        raise TypeError(
            f"job handler {_describe(handler)} must accept exactly one positional argument "
            f"(the payload); it takes {bare}: give the other parameters defaults"
        )
    keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if keyword_only:
        raise TypeError(
            f"job handler {_describe(handler)} has required keyword-only parameter(s) "
            f"{', '.join(map(repr, keyword_only))} that aqueue never passes: give them defaults"
        )


class Registry:
    """The job types one App knows; a worker claims only these."""

    def __init__(self) -> None:
        self._types: dict[str, JobType[Message]] = {}
        self.hooks = Hooks()  # the App's middleware and hooks, for every job type

    def register(
        self,
        handler: Callable[[M], Awaitable[Any]],
        *,
        payload: type[M],
        name: str | None,
        queue: str,
        priority: int,
        max_tries: int,
        timeout_s: float | None = None,
        unique_key: Callable[[M], str | None] | None = None,
        backoff: RetryPolicy = DEFAULT_BACKOFF,
        discard_on: tuple[type[BaseException], ...] = (),
        global_concurrency: int | None = None,
        rate_limit: RateLimit | None = None,
        result: type[Message] | None = None,
    ) -> JobType[M]:
        _check_payload_class(payload)
        if result is not None and not (isinstance(result, type) and issubclass(result, Message)):
            raise TypeError(f"result must be a protobuf message class or None, got {result!r}")
        check_handler(handler)
        if name is None:
            name = getattr(handler, "__name__", None)
            if not isinstance(name, str):
                raise ConfigurationError(
                    f"job handler {_describe(handler)} has no __name__: pass name= to @app.job"
                )
        job_name = validate_name("job type", name)
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
        check_unique_key(unique_key)
        discard_on = check_flow_options(backoff, discard_on, global_concurrency, rate_limit)
        if job_name in self._types:
            raise ConfigurationError(f"job type {job_name!r} is already registered")
        job_type = JobType(
            name=job_name,
            payload=payload,
            queue=queue,
            priority=priority,
            max_tries=max_tries,
            unique_key=unique_key,
            handler=handler,
            timeout_s=None if timeout_s is None else float(timeout_s),
            backoff=backoff,
            discard_on=discard_on,
            global_concurrency=global_concurrency,
            rate_limit=rate_limit,
            result=result,
        )
        self._types[job_name] = job_type  # type: ignore[assignment]
        return job_type

    def get(self, name: str) -> JobType[Message] | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def limited(self) -> list[JobType[Message]]:
        """The types with a fleet-wide concurrency or rate limit."""
        return [t for t in self._types.values() if t.global_concurrency or t.rate_limit]

    def __iter__(self) -> Iterator[JobType[Message]]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)
