"""Executor: decode a claimed job's payload and run its handler; report an Outcome. It never
touches SQL; the completer persists what it reports."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from google.protobuf.message import DecodeError

from .._store.records import ClaimedJob
from ..backoff import retry_delay_s
from ..config import FAILURE_INFO_MAX_CHARS
from ..jobs import JobInfo, _current
from ..registry import Registry

log = logging.getLogger("aqueue.worker")

TRUNCATED_MARKER = "\n[... failure_info truncated by aqueue ...]\n"


class Verdict(enum.Enum):
    COMPLETE = "complete"  # the handler returned
    FAIL = "fail"  # the attempt failed: error with backoff, or failed when out of tries/final
    RELEASE = "release"  # hand the job back without counting the attempt (worker stopping)


@dataclass(frozen=True, slots=True)
class Outcome:
    job: ClaimedJob
    verdict: Verdict
    delay_s: float = 0.0
    failure_info: str = ""
    final: bool = False


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
        timeout_s = job_type.timeout_s
        try:
            if timeout_s is None:
                await job_type.handler(payload)
                return Outcome(job, Verdict.COMPLETE)
            # The attempt's own deadline: a cancellation from outside (shutdown, cancel, lost
            # lease) still propagates; only this scope's own expiry is a timeout.
            with anyio.CancelScope(deadline=anyio.current_time() + timeout_s) as limit:
                await job_type.handler(payload)
        except Exception as exc:
            return self.failed(job, format_failure(exc, redact=self._redact), type(exc).__name__)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # this task was cancelled: the worker's decision, not a failure
            # Raised by the handler itself (it awaited a future someone else cancelled):
            # a failure like any other, or it would be handed back and claimed again at
            # once, over and over, never counting against max_tries.
            return self.failed(job, format_failure(exc, redact=self._redact), type(exc).__name__)
        except GeneratorExit:
            raise  # the coroutine is being closed: nothing runs any more
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt (or another BaseException) raised by the
            # handler's code: a real Ctrl-C reaches a worker as a signal, or as a
            # cancellation from asyncio's runner. Let it escape the task and asyncio
            # re-raises it out of the event loop: the worker dies, and so would every
            # worker that claims this job next.
            info = format_failure(exc, redact=self._redact)
            return self.failed(job, info, type(exc).__name__, level=logging.ERROR)
        if limit.cancel_called:
            # Past its deadline, even if the handler swallowed the cancellation and returned.
            info = (
                f"TimeoutError: attempt {job.attempt} of job {job.id} ({job.job_type}) ran "
                f"longer than its timeout_s={timeout_s:g} and was cancelled"
            )
            return self.failed(job, info, "TimeoutError")
        return Outcome(job, Verdict.COMPLETE)

    def failed(
        self, job: ClaimedJob, info: str, error: str, *, level: int = logging.INFO
    ) -> Outcome:
        """A failed attempt; ``info`` is its failure_info, already redacted and bounded.
        Logged at ``level``; the last attempt's failure at WARNING at least: with no logging
        configured at all, Python's last-resort handler still shows it on stderr."""
        final = job.attempt >= job.max_tries
        log.log(
            max(level, logging.WARNING) if final else level,
            "fail: job %d (%s) attempt %d/%d raised %s%s",
            job.id,
            job.job_type,
            job.attempt,
            job.max_tries,
            error,
            "; out of tries, failed for good" if final else "; will retry",
        )
        delay = 0.0 if final else retry_delay_s(job.attempt, self._rng)
        return Outcome(job, Verdict.FAIL, delay_s=delay, failure_info=info)
