"""Worker: wires the services together under one task group and owns the running jobs."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import socket
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus

from .._store.records import ClaimedJob
from .._store.store import Store
from ..config import WorkerSettings
from ..periodic import PeriodicEntry
from ..registry import Registry
from .completer import Completer
from .executor import Executor, Outcome, Verdict
from .heartbeat import Heartbeat
from .leader import Leadership
from .logs import Throttled
from .maintenance import Maintenance
from .notifier import Notifier
from .periodic import PeriodicEnqueuer
from .scheduler import Scheduler
from .slots import Slots
from .tasks import JobTasks, coroutine_frames, thread_frames

log = logging.getLogger("aqueue.worker")

COMPLETER_FLUSH_TIMEOUT_S = 10.0
FINAL_FLUSH_TIMEOUT_S = 5.0


_ATTEMPT_CODE = Executor._attempt.__code__  # awaits the handler (or its middleware)


def _handler_names(registry: Registry) -> dict[types.CodeType, str]:
    names: dict[types.CodeType, str] = {}
    for job_type in registry:
        code = getattr(job_type.handler, "__code__", None)
        if isinstance(code, types.CodeType):
            names[code] = job_type.name
    return names


def _at(frame: types.FrameType) -> str:
    return f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})"


def new_worker_id() -> str:
    """Unique per process start: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of one worker's counters since it started.

    ``claimed``: attempts started. ``running``: handlers running now. ``completed``,
    ``errored`` (failed, will retry), ``failed`` (failed for good), ``released`` (handed back
    at shutdown, attempt not counted), ``snoozed`` (the handler raised :class:`aqueue.Snooze`;
    not counted either), ``stale`` (finished after losing the lease; nothing
    written): outcomes persisted. ``cancelled``: attempts whose job ``app.cancel`` cancelled.
    ``abandoned``: handlers that ignored cancellation at shutdown for longer than
    ``cancel_grace_s`` and were left running (recorded as failed attempts).
    ``rescued``: expired leases this worker returned to the queue (any worker's).
    ``claims``: claim statements run. ``notifications``: NOTIFYs seen.
    ``listening``: the LISTEN connection is up. ``sleeping``: the scheduler is waiting.
    ``leading``: this worker is the fleet's leader (it runs rescue, retention and periodic
    jobs). ``periodic_enqueued``: jobs it enqueued for periodic entries while leading.
    """

    claimed: int
    running: int
    completed: int
    errored: int
    failed: int
    released: int
    snoozed: int
    stale: int
    cancelled: int
    abandoned: int
    rescued: int
    claims: int
    notifications: int
    listening: bool
    sleeping: bool
    leading: bool = False
    periodic_enqueued: int = 0

    @property
    def processed(self) -> int:
        """Attempts finished: completed + errored + failed + released + snoozed + stale +
        cancelled."""
        return (
            self.completed
            + self.errored
            + self.failed
            + self.released
            + self.snoozed
            + self.stale
            + self.cancelled
        )


# Why the worker cancelled an attempt. Only SHUTDOWN hands the job back; after the others
# the row belongs to someone else (or to nobody), and nothing is written for the attempt.
SHUTDOWN = "shutdown"
LEASE_LOST = "lease lost"
CANCELLED = "cancelled"
SUPERSEDED = "superseded"  # the job was claimed here again while this attempt still ran


@dataclass(slots=True)
class _Running:
    job: ClaimedJob
    scope: anyio.CancelScope
    cancel_reason: str | None = None
    task: asyncio.Task[None] | None = None
    after: asyncio.Task[None] | None = None  # an earlier attempt's task, to end first

    def cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self.scope.cancel()


class Worker:
    """A running worker, as yielded by :meth:`aqueue.App.worker`.

    Use :meth:`statistics` to look and the ``wait_*`` methods to await a condition (tests
    should never sleep), and :meth:`stop` to ask it to shut down.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        settings: WorkerSettings,
        *,
        listen: bool = True,
        exit_when_idle: bool = False,
        periodic: Sequence[PeriodicEntry] = (),
    ) -> None:
        self.worker_id = new_worker_id()
        self.settings = settings
        self._store = store
        self._registry = registry
        self._slots = Slots(settings)
        self._listen = listen
        # Attempts running here, by (job id, attempt): a job rescued from this worker while
        # its attempt still runs can be claimed here again, as a new attempt.
        self._running: dict[tuple[int, int], _Running] = {}
        self._latest: dict[int, int] = {}  # job id -> its newest attempt running here
        self._changed = anyio.Event()
        self._waiters = 0  # tasks in _wait_until
        self._stopped = anyio.Event()
        self._hard_stop = anyio.Event()
        self._stopping = False
        self._counts = dict.fromkeys(
            (
                "completed",
                "error",
                "failed",
                "released",
                "snoozed",
                "stale",
                "cancelled",
                "abandoned",
                "rescued",
            ),
            0,
        )
        self._jobs = JobTasks(on_error=self._job_task_failed)
        # One throttle for every service: an outage is logged about once a second in all.
        self._outage_log = Throttled(log)
        self._executor = Executor(registry, self.worker_id, redact=store.redact)
        self._handler_names = _handler_names(registry)
        self._completer = Completer(store, self.worker_id, self._persisted, self._outage_log)
        self._scheduler = Scheduler(
            store,
            settings,
            registry,
            self.worker_id,
            self._slots,
            self._start_job,
            self._completer,
            self._signal_change,
            self._outage_log,
            exit_when_idle=exit_when_idle,
        )
        self._notifier = Notifier(
            store,
            settings.queues,
            self._scheduler.wake,
            self._cancel_hint,
            self._outage_log,
            keepalive_s=settings.poll_interval_s,
            on_ready=self._scheduler.cursors.notified,
            on_gap=self._scheduler.cursors.reset,
        )
        self._heartbeat = Heartbeat(
            store,
            self.worker_id,
            settings.lease_s,
            settings.heartbeat_s,
            settings.loop_block_limit_s,
            self._held_leases,
            self._leases_lost,
            self._describe_loop,
            self._outage_log,
            listening=lambda: self._notifier.current,
        )
        # A worker that listens competes for leadership on its LISTEN connection; a drain
        # (no LISTEN) rescues for itself and enqueues no periodic jobs.
        self._leadership = Leadership(
            listening=(lambda: self._notifier.current) if listen else None,
            outage_log=self._outage_log,
            worker_id=self.worker_id,
            on_change=self._signal_change,
        )
        self._periodic = PeriodicEnqueuer(
            store=store,
            entries=periodic if listen else (),
            leadership=self._leadership,
            outage_log=self._outage_log,
        )
        self._maintenance = Maintenance(
            store,
            self.worker_id,
            settings.maintenance_interval_s,
            settings.lease_s,
            self._rescued,
            self._outage_log,
            job_types=registry.names(),
            queues=settings.queues,
            retention_s=settings.retention_s,
            failed_retention_s=settings.failed_retention_s,
            cursors=self._scheduler.cursors,
            wake=self._scheduler.wake,
            leadership=self._leadership if listen else None,
        )

    # -- public ---------------------------------------------------------------------------

    def statistics(self) -> WorkerStatistics:
        c = self._counts
        return WorkerStatistics(
            claimed=self._scheduler.claimed,
            running=len(self._running),
            completed=c["completed"],
            errored=c["error"],
            failed=c["failed"],
            released=c["released"],
            snoozed=c["snoozed"],
            stale=c["stale"],
            cancelled=c["cancelled"],
            abandoned=c["abandoned"],
            rescued=c["rescued"],
            claims=self._scheduler.claims,
            notifications=self._notifier.notifications,
            listening=self._notifier.listening,
            sleeping=self._scheduler.sleeping,
            leading=self._listen and self._leadership.leading,
            periodic_enqueued=self._periodic.enqueued,
        )

    def stop(self, *, graceful: bool = True) -> None:
        """Stop claiming now. ``graceful=True``: running handlers get ``shutdown_timeout_s``
        to finish; calling it again changes nothing. ``graceful=False`` (also after a
        graceful stop): the hard stop, cancel running handlers now. Either way, cancelled
        attempts are handed back to the queue without counting against ``max_tries``; a
        handler that ignores its cancellation for ``cancel_grace_s`` is left behind."""
        if not graceful:
            self._hard_stop.set()
        self._stopping = True
        self._scheduler.stop()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (or the worker ended)."""
        return self._stopping or self._stopped.is_set()

    async def wait_ready(self) -> None:
        """Wait until the worker listens for notifications and has looked at the table once."""
        await self._wait_until(
            lambda: self._scheduler.sleeping and (self._notifier.listening or not self._listen)
        )

    async def wait_idle(self) -> None:
        """Wait until nothing is running, every outcome is persisted and the scheduler sleeps."""
        await self._wait_until(
            lambda: (
                self._scheduler.sleeping
                and not self._running
                and self.statistics().processed >= self._scheduler.claimed
            )
        )

    async def wait_processed(self, count: int) -> None:
        """Wait until at least ``count`` outcomes have been persisted."""
        await self._wait_until(lambda: self.statistics().processed >= count)

    async def wait_until(self, condition: Callable[[WorkerStatistics], bool]) -> WorkerStatistics:
        """Wait until ``condition(self.statistics())`` holds; return those statistics. E.g.
        ``await worker.wait_until(lambda s: s.running == 4)``."""
        await self._wait_until(lambda: condition(self.statistics()))
        return self.statistics()

    async def wait_stopped(self) -> None:
        """Wait until the worker has shut down."""
        await self._stopped.wait()

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` (or, in drain mode, until nothing is due and running)."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._completer.run)
                try:
                    await self._run_services_and_jobs(task_status)
                finally:
                    # Every job task has ended: no more outcomes. The completer writes the
                    # rest; leases of anything it cannot write expire and get rescued.
                    self._completer.close()
                    tg.cancel_scope.deadline = anyio.current_time() + COMPLETER_FLUSH_TIMEOUT_S
        finally:
            unwritten = self._completer.leftovers()
            if unwritten:
                # Cancelled before every outcome was written: one last bounded try, shielded
                # so the cancellation cannot cut it. Writes are guarded, so a repeat is safe.
                with anyio.CancelScope(shield=True), anyio.move_on_after(FINAL_FLUSH_TIMEOUT_S):
                    await self._completer.write_once(unwritten)
            self._stopped.set()
            self._signal_change()

    async def _run_services_and_jobs(self, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as services:
            if self._listen:
                await services.start(self._notifier.run)
            services.start_soon(self._maintenance.run)
            services.start_soon(self._heartbeat.run)
            services.start_soon(self._periodic.run)
            try:
                # Plain asyncio tasks for the jobs: a task costs a fifth of anyio's
                # start_soon, and jobs start by the thousand a second. Still structured:
                # none outlives this block but one that ignores its cancellation.
                try:
                    task_status.started()
                    await self._scheduler.run()
                    await self._shutdown_running()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._end_jobs()
            finally:
                # Heartbeats last as long as any job runs; then the services stop.
                services.cancel_scope.cancel()

    async def _shutdown_running(self) -> None:
        if self._running:
            log.info(
                "stop: waiting up to %.1f s for %d running job(s)",
                self.settings.shutdown_timeout_s,
                len(self._running),
            )
            with anyio.move_on_after(self.settings.shutdown_timeout_s) as scope:

                async def done_then_stop_waiting() -> None:
                    await self._wait_until(lambda: not self._running)
                    scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(done_then_stop_waiting)
                    await self._hard_stop.wait()  # stop(graceful=False) cuts the wait short
                    scope.cancel()
        if self._running:
            log.warning(
                "stop: cancelling %d job(s) still running; they go back to the queue",
                len(self._running),
            )

    async def _end_jobs(self) -> None:
        """Cancel what still runs (the worker itself may be cancelled), wait up to
        ``cancel_grace_s`` for every job task, and leave behind, named and recorded as a
        failed attempt, a handler that ignores its cancellation."""
        for entry in list(self._running.values()):
            if entry.cancel_reason is None:
                entry.cancel(SHUTDOWN)
        left = await self._jobs.wait(self.settings.cancel_grace_s)
        for entry in list(self._running.values()):
            if entry.task in left:
                self._abandon(entry, entry.task)

    def _abandon(self, entry: _Running, task: asyncio.Task[None] | None) -> None:
        job = entry.job
        del self._running[(job.id, job.attempt)]
        self._slots.give(job.queue)
        self._counts["abandoned"] += 1
        where = "unknown code" if task is None else self._describe(coroutine_frames(task))
        log.error(
            "stop: job %d (%s) attempt %d ignored its cancellation for %.1f s; left running "
            "and recorded as a failed attempt: %s",
            job.id,
            job.job_type,
            job.attempt,
            self.settings.cancel_grace_s,
            where,
        )
        if entry.cancel_reason == SHUTDOWN:  # otherwise the row is no longer this attempt's
            info = (
                f"HandlerIgnoredCancellation: attempt {job.attempt} of job {job.id} "
                f"({job.job_type}) was cancelled when worker {self.worker_id} stopped and "
                f"was still running {self.settings.cancel_grace_s:g} s later; the worker left "
                f"it behind. Stuck at: {where}"
            )
            job_type = self._registry.get(job.job_type)
            outcome = self._executor.failed(job, job_type, info, "HandlerIgnoredCancellation")
            self._completer.submit(outcome)

    # -- jobs -----------------------------------------------------------------------------

    def _free_slots(self) -> list[int]:
        return self._slots.free()

    def _start_job(self, job: ClaimedJob) -> None:
        entry = _Running(job, anyio.CancelScope())
        earlier = self._latest.get(job.id)
        if earlier is not None:
            # Rescued from here while still running, and claimed here again: that attempt
            # lost its lease, whatever its heartbeat has not noticed yet. Cancel it, and
            # start the new one once it has ended.
            old = self._running[(job.id, earlier)]
            entry.after = old.task
            if old.cancel_reason is None:
                log.warning(
                    "claim: job %d was claimed again (attempt %d) while its attempt %d still "
                    "ran here after losing its lease; cancelling that one",
                    job.id,
                    job.attempt,
                    earlier,
                )
                old.cancel(SUPERSEDED)
                self._counts["stale"] += 1
        self._running[(job.id, job.attempt)] = entry
        self._slots.take(job.queue)
        self._latest[job.id] = job.attempt
        entry.task = self._jobs.start(self._run_job(entry), name=f"aqueue job {job.id}")

    async def _run_job(self, entry: _Running) -> None:
        outcome: Outcome | None = None
        try:
            with entry.scope:
                if entry.after is None or await self._ended(entry.after):
                    outcome = await self._executor.execute(entry.job)
                else:
                    outcome = self._executor.failed(
                        entry.job,
                        self._registry.get(entry.job.job_type),
                        f"EarlierAttemptStillRunning: attempt {entry.job.attempt} of job "
                        f"{entry.job.id} was claimed on worker {self.worker_id}, where an "
                        f"earlier attempt still ran {self.settings.cancel_grace_s:g} s after "
                        "it was cancelled (its handler ignores cancellation); this attempt "
                        "did not start",
                        "EarlierAttemptStillRunning",
                    )
        except BaseException:
            # The task itself was cancelled (its event loop is closing): hand the job back
            # rather than leave it to wait for its lease to expire.
            outcome = Outcome(entry.job, Verdict.RELEASE)
            raise
        finally:
            self._finished(entry, outcome)

    async def _ended(self, task: asyncio.Task[None]) -> bool:
        """Whether ``task`` ends within ``cancel_grace_s``."""
        done, _ = await asyncio.wait({task}, timeout=self.settings.cancel_grace_s)
        return bool(done)

    def _job_task_failed(self, error: BaseException) -> None:
        # A bug: job tasks catch whatever their handler raises. Stop rather than run on
        # with bookkeeping that may no longer match the table.
        log.critical("a job task failed; stopping the worker", exc_info=error)
        self.stop()

    def _finished(self, entry: _Running, outcome: Outcome | None) -> None:
        job = entry.job
        if self._running.pop((job.id, job.attempt), None) is None:
            return  # abandoned at shutdown; a failure was recorded for it then
        self._slots.give(job.queue)
        if self._latest.get(job.id) == job.attempt:
            del self._latest[job.id]
        reason = entry.cancel_reason
        if reason == SHUTDOWN:
            # Handed back uncounted, unless the handler finished all the same, or decided
            # the job's end itself (Discard, discard_on).
            if outcome is None or not (
                outcome.verdict is Verdict.COMPLETE
                or (outcome.verdict is Verdict.FAIL and outcome.final)
            ):
                outcome = Outcome(job, Verdict.RELEASE)
        elif reason is not None:
            outcome = None  # the row is another attempt's, or cancelled: write nothing
        if outcome is not None:
            self._completer.submit(outcome)
        self._scheduler.wake()
        self._signal_change()

    def _held_leases(self) -> list[tuple[int, int]]:
        # Called from the heartbeat thread: dict.copy() is one step under the GIL, so it
        # never sees the dict change size mid-iteration.
        return list(self._running.copy())

    def _cancel_hint(self, job_id: int) -> None:
        # Only a hint (anyone may NOTIFY): ask the table, through an early heartbeat.
        if job_id in self._latest:
            self._heartbeat.poke()

    def _leases_lost(self, lost: dict[tuple[int, int], str | None]) -> None:
        for (job_id, attempt), state in lost.items():
            entry = self._running.get((job_id, attempt))
            # The attempt may have ended since the beat.
            if entry is None or entry.cancel_reason is not None:
                continue
            if state == "cancelled":
                log.info("cancel: job %d was cancelled; cancelling its handler", job_id)
                entry.cancel(CANCELLED)
                self._counts["cancelled"] += 1
            else:
                log.warning(
                    "heartbeat: lost the lease of job %d (attempt %d, now %s); cancelling it",
                    job_id,
                    attempt,
                    state,
                )
                entry.cancel(LEASE_LOST)
                self._counts["stale"] += 1

    def _describe_loop(self, frame: types.FrameType | None) -> str:
        """Where the (blocked) event loop is, from the heartbeat thread: the handler, its
        running jobs and its line when a handler is on the stack, else the innermost frame."""
        return self._describe(thread_frames(frame), with_jobs=True)

    def _describe(self, frames: list[types.FrameType], *, with_jobs: bool = False) -> str:
        """Where code is, from its frames (outermost first): the handler (the frame
        Executor._attempt awaits, whatever decorates it) at its line, then the innermost
        line; else the innermost frame alone."""
        if not frames:
            return "unknown code"
        inner = frames[-1]
        # The registered handler's own frame, under whatever middleware; else the frame the
        # attempt awaits (a decorated handler).
        candidates = [f for f in frames if f.f_code in self._handler_names]
        candidates += [h for o, h in itertools.pairwise(frames) if o.f_code is _ATTEMPT_CODE]
        for handler in candidates:
            name = self._handler_names.get(handler.f_code, handler.f_code.co_qualname)
            text = f"handler {name!r}"
            if with_jobs:
                ids = sorted(
                    e.job.id for e in self._running.copy().values() if e.job.job_type == name
                )
                text += f" (running job(s) {ids[:10]})"
            text += f" at {_at(handler)}"
            return text if inner is handler else f"{text}, in {_at(inner)}"
        return _at(inner)

    def _persisted(self, counts: dict[str, int]) -> None:
        for key, value in counts.items():
            self._counts[key] += value
        if any(counts.get(key) for key in ("error", "failed", "snoozed", "released")):
            # Written apart from a claim: a job due again now, or a place under a fleet-wide
            # limit freed, that the claim made when the attempt ended could not see yet.
            self._scheduler.wake()
        self._signal_change()

    def _rescued(self, rescued: dict[int, str]) -> None:
        self._counts["rescued"] += len(rescued)
        self._signal_change()

    # -- conditions -----------------------------------------------------------------------

    def _signal_change(self) -> None:
        # Called per job: a fresh event only when someone waits on this one.
        if self._waiters:
            event, self._changed = self._changed, anyio.Event()
            event.set()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._waiters += 1
            try:
                await self._changed.wait()
            finally:
                self._waiters -= 1
