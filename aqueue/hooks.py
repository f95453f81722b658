"""Middleware and hooks around each attempt.

Middleware wraps the handler (``async def mw(job, call_next) -> object``); hooks are told
about attempts (``async def hook(event) -> None``). Both are registered on the App with the
decorators of :class:`HookDecorators` and kept, in registration order, in the registry's
:class:`Hooks`. The executor runs them; when none is registered it runs exactly what it ran
before they existed.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["HookDecorators", "JobContext", "JobEvent"]


@dataclasses.dataclass(frozen=True, slots=True)
class JobContext:
    """The attempt a middleware or hook is called for: the job's ``id``, ``job_type``,
    ``queue``, ``attempt`` (1 for the first), ``max_tries``, the ``worker_id`` running it,
    and its decoded ``payload``."""

    id: int
    job_type: str
    queue: str
    attempt: int
    max_tries: int
    worker_id: str
    payload: Message


@dataclasses.dataclass(frozen=True, slots=True)
class JobEvent:
    """What a hook is told about an attempt: its ``context``; the ``exception`` it ended
    with (``None`` for a start or a success; for a timeout a ``TimeoutError``; for
    ``Retry``/``Snooze``/``Discard`` that exception); ``duration_s``, the attempt's run
    time so far (start hooks, middleware and handler; 0 for a start); and ``final``: for a
    failure, whether the job will not run again (out of tries, discarded); else False."""

    context: JobContext
    exception: BaseException | None
    duration_s: float
    final: bool = False


CallNext = Callable[[], Awaitable[object]]
Middleware = Callable[[JobContext, CallNext], Awaitable[object]]
Hook = Callable[[JobEvent], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])

KINDS = ("start", "success", "failure", "retry")


class Hooks:
    """The middleware and hooks of one registry, in registration order."""

    def __init__(self) -> None:
        self.middleware: list[Middleware] = []
        self.on: dict[str, list[Hook]] = {kind: [] for kind in KINDS}
        # Whether anything is registered: read per attempt, so kept rather than computed.
        self.any = False

    def add_middleware(self, middleware: Middleware) -> None:
        _check_async(middleware, "middleware", 2)
        self.middleware.append(middleware)
        self.any = True

    def add(self, kind: str, hook: Hook) -> None:
        _check_async(hook, f"on_job_{kind} hook", 1)
        self.on[kind].append(hook)
        self.any = True


def _check_async(function: object, what: str, arguments: int) -> None:
    from .registry import _is_async  # registry imports this module

    if not _is_async(function):
        raise TypeError(f"{what} must be an async def, got {function!r}")
    try:
        inspect.signature(function).bind(*range(arguments))  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{what} {getattr(function, '__name__', function)!r} must take {arguments} "
            "positional argument(s)"
        ) from None
    except ValueError:
        pass  # no signature to check (a builtin): it will fail at call time, logged


class HookDecorators:
    """The App's decorators for middleware and hooks (mixed into :class:`aqueue.App`)."""

    registry: Registry

    def middleware(self, function: F) -> F:
        """Register ``async def mw(job: aqueue.JobContext, call_next) -> object`` around every
        attempt of every job type of this app::

            @app.middleware
            async def db_session(job, call_next):
                async with Session() as session:
                    token = current_session.set(session)
                    try:
                        return await call_next()
                    finally:
                        current_session.reset(token)

        ``await call_next()`` runs the rest of the chain and the handler and returns what the
        handler returned; the middleware returns the attempt's result (usually that). Several
        run in registration order, the first outermost, inside the attempt: in its task (so
        context variables set here are seen by the handler), under its ``timeout_s`` and
        cancellation. Raising before (or instead of) ``call_next`` fails the attempt with
        that traceback, like a handler raising; so does raising after it. Returns
        ``function`` unchanged. ``TypeError`` if it is not an ``async def`` taking two
        arguments.
        """
        self.registry.hooks.add_middleware(function)
        return function

    def on_job_start(self, function: F) -> F:
        """Register ``async def hook(event: aqueue.JobEvent)``, called at the start of every
        attempt, inside it (its task, timeout and cancellation; before the middleware). If
        it raises, the attempt fails with its traceback, like a handler raising."""
        self.registry.hooks.add("start", function)
        return function

    def on_job_success(self, function: F) -> F:
        """Register ``async def hook(event: aqueue.JobEvent)``, called after every attempt
        that completed (``event.duration_s``: how long it ran). It cannot change the
        outcome: an exception it raises is logged, and it is cut off after 10 s."""
        self.registry.hooks.add("success", function)
        return function

    def on_job_failure(self, function: F) -> F:
        """Register ``async def hook(event: aqueue.JobEvent)``, called after every failed
        attempt: an exception (``event.exception``), a timeout, ``Discard``, and a
        ``Retry`` when the job is out of tries. ``event.final`` says the job will not run
        again (report errors on ``final`` only to hear once per job). It cannot change the
        outcome: an exception it raises is logged, and it is cut off after 10 s."""
        self.registry.hooks.add("failure", function)
        return function

    def on_job_retry(self, function: F) -> F:
        """Register ``async def hook(event: aqueue.JobEvent)``, called whenever an attempt
        ends with the job scheduled to run again: after a failure that is not final (then
        after the failure hooks), a ``Retry`` with tries left, or a ``Snooze``
        (``event.exception`` is the exception, the ``Retry`` or the ``Snooze``). It cannot
        change the outcome: an exception it raises is logged, and it is cut off after 10 s."""
        self.registry.hooks.add("retry", function)
        return function
