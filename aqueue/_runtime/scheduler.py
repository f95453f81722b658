"""Scheduler: decides when to claim and how many. It claims at most the free slots, then
sleeps until a NOTIFY, a freed slot, the next job's due time (database clock) or the safety
poll, whichever comes first."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import anyio

from .._store.records import ClaimedJob, Limit
from .._store.store import Claim, Store
from ..config import WorkerSettings
from ..errors import DatabaseError
from ..registry import Registry
from .completer import Completer
from .cursors import Cursors
from .logs import Throttled
from .slots import Slots

log = logging.getLogger("aqueue.worker")

# When jobs are due but another worker holds their row locks (SKIP LOCKED skipped them), look
# again soon, backing off while that lasts.
LOCKED_RETRY_MIN_S = 0.02
# Claims read each lane from this worker's cursor (off: every claim reads every lane, and
# every delayed job, from the start; for measuring what the cursors are worth). Rows behind a
# cursor are found by the NOTIFY of their commit, else by the maintenance's look-behind.
USE_CURSORS = True
# Delayed jobs due up to this long before the last claim are looked at again: a transaction
# that enqueued a job due soon may commit a little after its due time.
PROMOTE_OVERLAP = dt.timedelta(seconds=10)
# Claims whose reply was lost, handed back by the next claim; beyond these (a long outage),
# the worker's lease runs out and a rescue returns their jobs.
LOST_CLAIMS_MAX = 64
ERROR_BACKOFF_MAX_S = 2.0
# With a backlog (the last claim filled every free slot), a freed slot waits up to half the
# last claim's round trip, and at most this long, for others to free up: one claim then
# fetches many jobs instead of each claim fetching the few that ended during the previous
# one. Short jobs drain about a third faster; a job never waits that it would not have
# waited for a claim anyway.
COALESCE_MAX_S = 0.005
# A drain that found nothing due looks again this often while outcomes are being written.
DRAIN_WRITE_POLL_S = 0.005


class Scheduler:
    def __init__(
        self,
        store: Store,
        settings: WorkerSettings,
        registry: Registry,
        worker_id: str,
        slots: Slots,
        start_job: Callable[[ClaimedJob], None],
        completer: Completer,
        on_change: Callable[[], None],
        outage_log: Throttled,
        *,
        exit_when_idle: bool = False,
    ) -> None:
        self._store = store
        self._settings = settings
        self._job_types = registry.names()
        self._limits = [
            Limit(
                t.name,
                t.global_concurrency,
                t.rate_limit.count if t.rate_limit else None,
                t.rate_limit.period_s if t.rate_limit else None,
            )
            for t in registry.limited()
        ]
        self._worker_id = worker_id
        self._slots = slots
        self._start_job = start_job
        self._completer = completer
        self._on_change = on_change
        self._exit_when_idle = exit_when_idle
        self._wake = anyio.Event()
        self._stopping = False
        self._throttled = outage_log
        self._locked_wait = LOCKED_RETRY_MIN_S
        self.cursors = Cursors()
        self._claim_no = 0
        self._lost_claims: list[int] = []
        self._db_now: dt.datetime | None = None  # the database clock at the last claim
        self.claims = 0
        self.claimed = 0
        self.sleeping = False  # waiting with nothing due that it could take
        self._backlog = False  # the last claim filled the free slots of some group
        self._claim_s = 0.0  # the last claim's round trip

    def wake(self) -> None:
        """Look at the table again now (a NOTIFY arrived or a slot freed up)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; :meth:`run` returns promptly."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        error_wait = 0.05
        while not self._stopping:
            # A fresh event before looking: a wake-up that lands while we claim is kept.
            self._wake = anyio.Event()
            free = self._slots.free()
            total = self._slots.total
            timeout: float | None
            try:
                if sum(free) <= 0:
                    timeout = None  # a finished job wakes us
                else:
                    if self._backlog and sum(free) < total:
                        free = await self._coalesce()
                        if self._stopping:
                            continue
                    # Outcomes on their way to the table now may land after the claim's
                    # snapshot: a drain must not take the claim's answer as final then.
                    writing = self._completer.pending()
                    started = anyio.current_time()
                    claim = await self._claim(free)
                    self._claim_s = anyio.current_time() - started
                    jobs, next_due_s = claim.jobs, claim.next_due_s
                    self.claims += 1
                    self.claimed += len(jobs)
                    if self._slots.single:
                        got = [len(jobs)]
                    else:
                        got = [0] * len(free)
                        for job in jobs:
                            got[self._slots.group(job.queue)] += 1
                    filled = [g for g, n in enumerate(free) if n and got[g] >= n]
                    self._backlog = bool(filled)
                    for job in jobs:
                        self._start_job(job)
                    now_free = self._slots.free()
                    if claim.promoted or any(now_free[g] for g in filled):
                        continue  # maybe more are due: claim again for the slots left
                    if self._exit_when_idle:
                        if not jobs and sum(free) == total:
                            if claim.held:
                                # Due, but locked or rate-limited for now: wait for them.
                                timeout = self._sleep_after(next_due_s)
                            elif not writing and not self._completer.pending():
                                return  # drain: nothing running, due, or being written
                            else:
                                # A snooze or retry due now may be on its way to the table.
                                timeout = DRAIN_WRITE_POLL_S
                        else:
                            timeout = None  # drain: wait for a running job to finish
                    elif not sum(now_free):
                        timeout = None  # every slot busy: a finished job wakes us
                    else:
                        timeout = self._sleep_after(next_due_s)
                error_wait = 0.05
            except DatabaseError as exc:
                if self._exit_when_idle:
                    raise
                self._throttled.warning("%s; trying again in %.2f s", exc, error_wait)
                timeout = error_wait
                error_wait = min(error_wait * 2, ERROR_BACKOFF_MAX_S)
            self.sleeping = True
            self._on_change()
            try:
                with anyio.move_on_after(timeout):
                    await self._wake.wait()
            finally:
                self.sleeping = False

    async def _coalesce(self) -> list[int]:
        """Wait a moment for more slots to free up (see COALESCE_MAX_S); the free slots."""
        with anyio.move_on_after(min(self._claim_s / 2, COALESCE_MAX_S)):
            while not self._stopping and sum(self._slots.free()) < self._slots.total:
                self._wake = anyio.Event()
                await self._wake.wait()
        self._wake = anyio.Event()
        return self._slots.free()

    async def _claim(self, free: list[int]) -> Claim:
        """Claim up to ``free[g]`` jobs for each slot group ``g``, writing the completions
        that are waiting on the way."""
        if not USE_CURSORS or self._exit_when_idle:
            # A drain hears no NOTIFY that would move a cursor back for a row committed
            # behind it (a snooze written while the last claim ran): it reads every lane.
            self.cursors.reset()
        if self._db_now is None or not USE_CURSORS:
            promote_since = None  # the first claim looks at every delayed job
        else:
            promote_since = self._db_now - PROMOTE_OVERLAP
        done = self._completer.take_completions()
        self._claim_no += 1
        claim_no = self._claim_no
        cursors = self.cursors.claim_sent()
        try:
            claim = await self._store.claim(
                free,
                self._job_types,
                self._settings.queues,
                self._worker_id,
                self._settings.lease_s,
                [o.job.id for o in done],
                [o.job.attempt for o in done],
                claim_no=claim_no,
                cursors=cursors,
                promote_since=promote_since,
                lost_claims=self._lost_claims,
                queue_groups=self._slots.queue_groups,
                limits=self._limits,
                complete_results=[o.result for o in done],
            )
        except BaseException:
            self.cursors.claim_done(None)
            self._completer.give_back(done)  # maybe written: the completer's write is guarded
            # Maybe committed, its reply lost: the next claim hands its jobs back.
            self._lost_claims = [*self._lost_claims, claim_no][-LOST_CLAIMS_MAX:]
            raise
        self._lost_claims = []
        self.cursors.claim_done(claim.cursors)
        self._db_now = claim.db_now
        self._completer.completions_written(done, claim.completed)
        return claim

    def _sleep_after(self, next_due_s: float | None) -> float:
        """How long to sleep after a claim that left slots free."""
        poll = self._settings.poll_interval_s
        if next_due_s is not None and next_due_s <= 0:
            # Due, but another claimer holds the rows: look again soon, backing off.
            wait, self._locked_wait = self._locked_wait, min(self._locked_wait * 2, poll)
            return wait
        self._locked_wait = LOCKED_RETRY_MIN_S
        return poll if next_due_s is None else min(next_due_s, poll)
