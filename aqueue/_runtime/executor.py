"""Executor: decode a claimed job's payload and run its handler; report an Outcome. It never
touches SQL; the completer persists what it reports."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from google.protobuf.message import DecodeError, EncodeError, Message

from .._store.records import ClaimedJob
from ..backoff import policy_delay_s, retry_delay_s
from ..config import FAILURE_INFO_MAX_CHARS
from ..control import Discard, Retry, Snooze
from ..hooks import Hooks, JobContext, JobEvent
from ..jobs import JobInfo, _current
from ..registry import JobType, Registry

log = logging.getLogger("aqueue.worker")

TRUNCATED_MARKER = "\n[... failure_info truncated by aqueue ...]\n"
HOOK_TIMEOUT_S = 10.0  # a success, failure or retry hook is cut off after this


class Verdict(enum.Enum):
    COMPLETE = "complete"  # the handler returned
    FAIL = "fail"  # the attempt failed: error with backoff, or failed when out of tries/final
    RELEASE = "release"  # hand the job back without counting the attempt (worker stopping)
    SNOOZE = "snooze"  # the handler asked to run later without counting the attempt


@dataclass(frozen=True, slots=True)
class Outcome:
    job: ClaimedJob
    verdict: Verdict
    delay_s: float = 0.0
    failure_info: str = ""
    final: bool = False
    result: bytes | None = None  # what the handler returned, encoded (a type with result=)


def format_failure(
    exc: BaseException, limit: int = FAILURE_INFO_MAX_CHARS, redact: Callable[[str], str] = str
) -> str:
    """Class, message and traceback of ``exc``, ``redact``-ed, then bounded to ``limit``
    characters (the middle is cut, so the exception line and the innermost frames survive)."""
    return bound_text(redact("".join(traceback.format_exception(exc))), limit)


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it in a ``text`` column: a NUL character becomes
    ``\\x00`` and a lone surrogate (a ``surrogateescape``-decoded file name) ``\\udcxx``."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        # Surrogates cannot be encoded as UTF-8; backslashreplace spells them out.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def bound_text(text: str, limit: int = FAILURE_INFO_MAX_CHARS) -> str:
    """``text`` made :func:`storable`, then bounded to ``limit`` characters."""
    text = storable(text)
    if len(text) <= limit:
        return text
    keep = max(limit - len(TRUNCATED_MARKER), 0)
    head = keep // 2
    return text[:head] + TRUNCATED_MARKER + text[len(text) - (keep - head) :]


class Executor:
    def __init__(
        self,
        registry: Registry,
        worker_id: str,
        rng: random.Random | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self._registry = registry
        self._worker_id = worker_id
        self._rng = rng or random.Random()
        self._redact = redact  # scrubs the DSN's password from failure_info

    async def execute(self, job: ClaimedJob) -> Outcome:
        """Run one attempt. Whatever escapes the handler is a failed attempt, with its
        traceback: any ``Exception``, ``SystemExit`` and ``KeyboardInterrupt`` (a library
        calling ``sys.exit()`` must not take the worker down) or other ``BaseException``,
        and a ``CancelledError`` the handler raised on its own. Only a cancellation of
        this task (the worker cancelled it: shutdown, lost lease, ``app.cancel``)
        propagates; the worker decides what it means. The attempt's own ``timeout_s`` is a
        failure too."""
        job_type = self._registry.get(job.job_type)
        if job_type is None:  # claims filter by registered types; defensive only
            return Outcome(
                job, Verdict.FAIL, failure_info=f"no handler for {job.job_type!r}", final=True
            )
        try:
            payload = job_type.payload.FromString(job.payload)
        except (DecodeError, ValueError, RuntimeError) as exc:
            info = bound_text(
                f"PayloadDecodeError: the payload ({len(job.payload)} bytes) does not decode as "
                f"{job_type.payload.DESCRIPTOR.full_name}: {exc}\n"
                "Retrying cannot help; the job was failed at once."
            )
            log.warning("fail: job %d (%s) has an undecodable payload", job.id, job.job_type)
            return Outcome(job, Verdict.FAIL, failure_info=info, final=True)
        # Each job runs in its own task, so this context is the handler's alone.
        _current.set(
            JobInfo(job.id, job.job_type, job.queue, job.attempt, job.max_tries, self._worker_id)
        )
        hooks = self._registry.hooks
        if not hooks.any:  # the hot path: no context, no clock, no extra awaits
            outcome, _ = await self._attempt(job, job_type, job_type.handler, payload)
            return outcome
        context = JobContext(
            job.id, job.job_type, job.queue, job.attempt, job.max_tries, self._worker_id, payload
        )
        started = time.monotonic()

        async def wrapped(message: Message) -> Any:
            for hook in hooks.on["start"]:
                await hook(JobEvent(context, None, 0.0))
            return await _chain(hooks, context, job_type.handler, message, 0)

        outcome, raised = await self._attempt(job, job_type, wrapped, payload)
        # Shielded: the outcome is decided, and a stop or cancel arriving while a hook runs
        # must not turn it into a hand-back (the handler would run again). Each hook is
        # bounded by HOOK_TIMEOUT_S all the same.
        with anyio.CancelScope(shield=True):
            await self._after(hooks, outcome, JobEvent(context, raised, time.monotonic() - started))
        return outcome

    async def _attempt(
        self,
        job: ClaimedJob,
        job_type: JobType[Message],
        run: Callable[[Message], Any],
        payload: Message,
    ) -> tuple[Outcome, BaseException | None]:
        """Run ``run(payload)`` as the attempt; its outcome and what it raised."""
        timeout_s = job_type.timeout_s
        try:
            if timeout_s is None:
                returned = await run(payload)
                return self._returned(job, job_type, returned), None
            # The attempt's own deadline: a cancellation from outside (shutdown, cancel, lost
            # lease) still propagates; only this scope's own expiry is a timeout.
            with anyio.CancelScope(deadline=anyio.current_time() + timeout_s) as limit:
                returned = await run(payload)
        except Exception as exc:
            control = _control(exc)
            if control is not None:
                return self._decided(job, job_type, control), control
            return self._raised(job, job_type, exc), exc
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # this task was cancelled: the worker's decision, not a failure
            # Raised by the handler itself (it awaited a future someone else cancelled):
            # a failure like any other, or it would be handed back and claimed again at
            # once, over and over, never counting against max_tries.
            return self._raised(job, job_type, exc), exc
        except GeneratorExit:
            raise  # the coroutine is being closed: nothing runs any more
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt (or another BaseException) raised by the
            # handler's code: a real Ctrl-C reaches a worker as a signal, or as a
            # cancellation from asyncio's runner. Let it escape the task and asyncio
            # re-raises it out of the event loop: the worker dies, and so would every
            # worker that claims this job next.
            return self._raised(job, job_type, exc, level=logging.ERROR), exc
        if limit.cancel_called:
            # Past its deadline, even if the handler swallowed the cancellation and returned.
            info = (
                f"TimeoutError: attempt {job.attempt} of job {job.id} ({job.job_type}) ran "
                f"longer than its timeout_s={timeout_s:g} and was cancelled"
            )
            return self.failed(job, job_type, info, "TimeoutError"), TimeoutError(info)
        return self._returned(job, job_type, returned), None

    def _returned(self, job: ClaimedJob, job_type: JobType[Message], value: object) -> Outcome:
        """The attempt returned ``value``: completed, with the result encoded when the type
        declares ``result=``. Anything but that message (or None) fails the attempt."""
        expected = job_type.result
        if expected is None or value is None:
            return Outcome(job, Verdict.COMPLETE)
        if type(value) is not expected:
            got = type(value)
            info = (
                f"ResultTypeError: attempt {job.attempt} of job {job.id} ({job.job_type}) "
                f"returned {got.__module__}.{got.__qualname__}; the job type declares "
                f"result={expected.DESCRIPTOR.full_name} (return one of those, or None)"
            )
            return self.failed(job, job_type, bound_text(self._redact(info)), "ResultTypeError")
        assert isinstance(value, Message)
        try:
            encoded = value.SerializeToString()
        except (EncodeError, ValueError) as exc:
            info = (
                f"ResultEncodeError: the returned {expected.DESCRIPTOR.full_name} does not "
                f"encode: {exc}"
            )
            return self.failed(job, job_type, bound_text(self._redact(info)), "ResultEncodeError")
        return Outcome(job, Verdict.COMPLETE, result=encoded)

    async def _after(self, hooks: Hooks, outcome: Outcome, event: JobEvent) -> None:
        """Tell the success, failure and retry hooks how the attempt ended. They cannot
        change the outcome: what they raise is logged; each is cut off after
        HOOK_TIMEOUT_S."""
        job = outcome.job
        if outcome.verdict is Verdict.COMPLETE:
            kinds = ["success"]
        elif outcome.verdict is Verdict.SNOOZE:
            kinds = ["retry"]
        elif outcome.verdict is Verdict.FAIL:
            final = outcome.final or job.attempt >= job.max_tries
            event = dataclasses.replace(event, final=final)
            requested = isinstance(event.exception, Retry)
            kinds = (["failure"] if final or not requested else []) + ([] if final else ["retry"])
        else:
            return
        for kind in kinds:
            for hook in hooks.on[kind]:
                await self._call_hook(kind, hook, event)

    async def _call_hook(self, kind: str, hook: Callable[[JobEvent], Any], event: JobEvent) -> None:
        job = event.context
        name = getattr(hook, "__qualname__", repr(hook))
        try:
            with anyio.move_on_after(HOOK_TIMEOUT_S) as scope:
                await hook(event)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the worker cancelled this task: not the hook's doing
            log.warning("on_job_%s hook %s raised CancelledError for job %d", kind, name, job.id)
        except GeneratorExit:
            raise
        except BaseException as exc:  # a hook never changes the job's outcome
            log.warning(
                "on_job_%s hook %s raised %s for job %d (%s); the job's outcome stands: %s",
                kind,
                name,
                type(exc).__name__,
                job.id,
                job.job_type,
                self._redact(str(exc)),
            )
            return
        if scope.cancelled_caught:
            log.warning(
                "on_job_%s hook %s ran longer than %g s for job %d (%s) and was cut off",
                kind,
                name,
                HOOK_TIMEOUT_S,
                job.id,
                job.job_type,
            )

    def _decided(
        self, job: ClaimedJob, job_type: JobType[Message], control: Snooze | Retry | Discard
    ) -> Outcome:
        """The handler raised Snooze, Retry or Discard."""
        if isinstance(control, Snooze):
            log.info("snooze: job %d (%s) for %g s", job.id, job.job_type, control.delay_s)
            return Outcome(job, Verdict.SNOOZE, delay_s=control.delay_s)
        reason = self._redact(control.reason)
        if isinstance(control, Retry):
            info = f"Retry: the handler requested a retry after attempt {job.attempt}"
            info += f": {reason}" if reason else ""
            return self.failed(job, job_type, bound_text(info), "Retry", delay_s=control.delay_s)
        info = (
            f"Discarded: the handler discarded the job at attempt {job.attempt}: "
            f"{reason or '(no reason given)'}"
        )
        return self.failed(job, job_type, bound_text(info), "Discard", final=True)

    def _raised(
        self,
        job: ClaimedJob,
        job_type: JobType[Message],
        exc: BaseException,
        *,
        level: int = logging.INFO,
    ) -> Outcome:
        """The handler raised ``exc``: a failed attempt, final if ``discard_on`` names it."""
        info = format_failure(exc, redact=self._redact)
        final = bool(job_type.discard_on) and (
            isinstance(exc, job_type.discard_on)
            # A task group's exceptions, every one of them of the types named.
            or (isinstance(exc, BaseExceptionGroup) and exc.split(job_type.discard_on)[1] is None)
        )
        if final:
            info = bound_text(
                f"Discarded: {type(exc).__name__} is in this job type's discard_on; not "
                f"retried.\n{info}"
            )
        return self.failed(job, job_type, info, type(exc).__name__, level=level, final=final)

    def failed(
        self,
        job: ClaimedJob,
        job_type: JobType[Message] | None,
        info: str,
        error: str,
        *,
        level: int = logging.INFO,
        final: bool = False,
        delay_s: float | None = None,
    ) -> Outcome:
        """A failed attempt; ``info`` is its failure_info, already redacted and bounded.
        ``final``: never retried; else due again after ``delay_s`` (``None``: the type's
        backoff). Logged at ``level``; the last attempt's failure at WARNING at least: with
        no logging configured at all, Python's last-resort handler still shows it on
        stderr."""
        last = final or job.attempt >= job.max_tries
        log.log(
            max(level, logging.WARNING) if last else level,
            "fail: job %d (%s) attempt %d/%d raised %s%s",
            job.id,
            job.job_type,
            job.attempt,
            job.max_tries,
            error,
            "; discarded"
            if final
            else "; out of tries, failed for good"
            if last
            else "; will retry",
        )
        if last:
            delay = 0.0
        elif delay_s is not None:
            delay = delay_s
        elif job_type is None:
            delay = retry_delay_s(job.attempt, self._rng)
        else:
            try:
                delay = policy_delay_s(job_type.backoff, job.attempt, self._rng)
            except Exception as exc:  # the user's callable: a bad answer must not lose the job
                delay = retry_delay_s(job.attempt, self._rng)
                log.error(
                    "fail: job %d (%s): its backoff failed (%s); the default backoff "
                    "applies (%.1f s)",
                    job.id,
                    job.job_type,
                    exc,
                    delay,
                )
                info = bound_text(
                    f"{info}\n[aqueue: the job type's backoff raised {type(exc).__name__}: "
                    f"{self._redact(str(exc))}; the default backoff applied]"
                )
        return Outcome(job, Verdict.FAIL, delay_s=delay, failure_info=info, final=final)


async def _chain(
    hooks: Hooks,
    context: JobContext,
    handler: Callable[[Message], Any],
    payload: Message,
    index: int,
) -> Any:
    """Middleware ``index`` and those after it, then the handler."""
    if index == len(hooks.middleware):
        return await handler(payload)
    return await hooks.middleware[index](
        context, lambda: _chain(hooks, context, handler, payload, index + 1)
    )


def _control(exc: BaseException) -> Snooze | Retry | Discard | None:
    """The handler's verdict in ``exc``: raised itself, or alone in an exception group (a
    task group wraps what its tasks raise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, (Snooze, Retry, Discard)) else None
