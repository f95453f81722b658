"""Maintenance: on the leader (see leader.py), rescues jobs whose lease expired, runs
retention and, at most once a minute, warns when due jobs wait that no running worker
serves; the other workers try to take leadership once per interval and do nothing else of
it, so an idle fleet costs the database the same whatever its size. (SKIP LOCKED still keeps
two rescuers from blocking each other, during a failover's overlap.)

Every worker keeps its own row in ``workers`` (the job types and queues it serves) and checks
its own lane cursors (the look-behind)."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence

import anyio

from .._store.store import Store
from ..config import FAILED_RETENTION_S_DEFAULT, RETENTION_S_DEFAULT
from ..errors import DatabaseError
from .cursors import Cursors
from .leader import Leadership
from .logs import Throttled

log = logging.getLogger("aqueue.worker")

# How often a worker writes its workers row again (job types and queues; heartbeats renew its
# lease, and a claim registers the worker again if a rescue removed the row).
REGISTER_INTERVAL_S = 600.0
# How often a worker checks that no job waits behind its lane cursors (the NOTIFY of its
# commit lost) and promotes delayed jobs overdue beyond any claim's window.
LOOK_BEHIND_INTERVAL_S = 10.0
UNSERVED_INTERVAL_S = 60.0  # how often the unserved jobs are counted (and logged) at most
UNSERVED_MAX_ROWS = 10_000  # due jobs counted at most per lane (job type, queue, priority)
UNSERVED_TIMEOUT_S = 2.0  # the count gives up rather than weigh on a busy database
UNSERVED_SHOWN = 5  # (job_type, queue) pairs named in the warning
PRUNE_WAITERS_INTERVAL_S = 60.0  # how often result waiters left behind are looked for
GOODBYE_TIMEOUT_S = 2.0


class Maintenance:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        interval_s: float,
        lease_s: float,
        on_rescued: Callable[[dict[int, str]], None],
        outage_log: Throttled,
        clock: Callable[[], float] = time.monotonic,
        *,
        job_types: Sequence[str],
        queues: Sequence[str] | None,
        retention_s: float = RETENTION_S_DEFAULT,
        failed_retention_s: float = FAILED_RETENTION_S_DEFAULT,
        unserved_interval_s: float = UNSERVED_INTERVAL_S,
        cursors: Cursors | None = None,
        wake: Callable[[], None] = lambda: None,
        leadership: Leadership | None = None,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._interval_s = interval_s
        self._lease_s = lease_s
        self._on_rescued = on_rescued
        self._throttled = outage_log
        self._clock = clock
        self._outage = False
        self._grace_until = -float("inf")
        self._job_types = list(job_types)
        self._queues = None if queues is None else list(queues)
        self._ttl_s = lease_s  # a new row's lease; heartbeats renew it
        self._seen_due = -float("inf")  # when the workers row is next renewed (local clock)
        self._unserved_interval_s = unserved_interval_s
        self._retention_s = {"done": retention_s, "failed": failed_retention_s}
        self.pruned = 0  # finished jobs removed by retention (an estimate)
        self._unserved_due: float | None = None  # when the unserved jobs are next counted
        self._cursors = cursors
        self._wake = wake  # the scheduler: claim again
        self._look_behind_due = -float("inf")
        self.looked_behind = 0  # lanes whose cursor the look-behind moved back
        self._leadership = leadership  # None: this worker does the leader's work (a drain)
        self._prune_waiters_due = -float("inf")

    async def run(self) -> None:
        try:
            while True:
                await self.run_once()
                # Jitter keeps many workers from rescuing in lockstep.
                await anyio.sleep(self._interval_s * random.uniform(0.8, 1.2))
        finally:
            await self.goodbye()

    async def goodbye(self) -> None:
        """Delete this worker's row: it serves nothing any more. Best effort (its row expires
        anyway), bounded, and not tried while the database is out. Tried even if this
        service never wrote the row: the worker's first claim registers it too."""
        if self._outage:
            return
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(GOODBYE_TIMEOUT_S),
            contextlib.suppress(DatabaseError),
        ):
            await self._store.worker_gone(self._worker_id)

    async def run_once(self) -> None:
        try:
            if self._outage:
                # Back from an outage, every live worker's leases may have lapsed meanwhile.
                # Give their heartbeats one lease to renew them before rescuing anything, or
                # jobs that are still running would run twice.
                await self._store.ping()
                self._outage = False
                self._grace_until = self._clock() + self._lease_s
                log.info(
                    "rescue: the database answers again; rescuing resumes in %.1f s", self._lease_s
                )
                return
            if self._clock() >= self._seen_due:
                await self._store.worker_seen(
                    self._worker_id, self._job_types, self._queues, self._ttl_s
                )
                self._seen_due = self._clock() + REGISTER_INTERVAL_S
            if self._leadership is not None and not await self._leadership.try_lead():
                await self._look_behind()
                return
            if self._clock() < self._grace_until:
                return
            rescued = await self._store.rescue(self._worker_id)
        except DatabaseError as exc:
            self._outage = True
            self._seen_due = -float("inf")  # its row may have expired meanwhile: renew first
            self._throttled.warning("%s", exc)
            return
        if rescued:
            log.warning(
                "rescue: %d job(s) whose worker stopped renewing its lease went back "
                "to the queue: %s",
                len(rescued),
                sorted(rescued)[:20],
            )
            self._on_rescued(rescued)
        await self._prune()
        await self._look_behind()
        await self._count_unserved()

    async def _look_behind(self) -> None:
        """Every ``LOOK_BEHIND_INTERVAL_S``, the scheduler's lane cursors are checked for rows
        left behind them (a lost NOTIFY), here rather than in a claim: under a held vacuum
        horizon this read walks the lanes' dead entries, and no claim should wait on that."""
        if self._cursors is None or self._clock() < self._look_behind_due:
            return
        self._look_behind_due = self._clock() + LOOK_BEHIND_INTERVAL_S
        try:
            behind = await self._store.look_behind(self._cursors.positions())
        except DatabaseError as exc:
            self._throttled.warning("%s", exc)
            return
        positions = self._cursors.positions()
        for lane, seq in behind.items():
            self._cursors.notified(lane, seq)
        if behind:
            self._wake()
            self.looked_behind += len(behind)
            # Usually a commit whose NOTIFY is on its way; else one that was lost.
            log.info(
                "look_behind: jobs behind this worker's cursor: %s",
                ", ".join(
                    f"lane {lane} seq {seq} (cursor {positions.get(lane)})"
                    for lane, seq in sorted(behind.items())
                ),
            )

    async def _prune(self) -> None:
        """Retention: move each ring of finished jobs on when its time has come. Every worker
        asks; one at a time does it, and a call with nothing due changes nothing."""
        for ring, retention_s in self._retention_s.items():
            try:
                removed = await self._store.prune(ring, retention_s)
            except DatabaseError as exc:
                self._throttled.warning("%s", exc)
                return
            if removed:
                self.pruned += removed
                log.info("prune: removed about %d %s job(s) past retention", removed, ring)
        if self._clock() < self._prune_waiters_due:
            return
        self._prune_waiters_due = self._clock() + PRUNE_WAITERS_INTERVAL_S
        try:
            forgotten = await self._store.prune_waiters()
        except DatabaseError as exc:
            self._throttled.warning("%s", exc)
            return
        if forgotten:
            log.info("prune: forgot %d result waiter(s) left behind a day ago", forgotten)

    async def _count_unserved(self) -> None:
        """At most once per ``unserved_interval_s``, warn about due jobs that no live worker
        serves (a type no running worker registered, or a queue none claims from): they
        would wait forever, silently. The first count comes one interval after start, so
        that workers started together have all said what they serve."""
        now = self._clock()
        if self._unserved_due is None:
            self._unserved_due = now + self._unserved_interval_s
            return
        if now < self._unserved_due:
            return
        self._unserved_due = now + self._unserved_interval_s
        try:
            found = await self._store.unserved_jobs(UNSERVED_MAX_ROWS, UNSERVED_TIMEOUT_S)
        except DatabaseError as exc:
            log.info("unserved jobs not counted this time: %s", exc)
            return
        if not found.counts:
            return
        shown = ", ".join(
            f"{t}@{q} ({n}{'+' if capped else ''})"
            for t, q, n, capped in found.counts[:UNSERVED_SHOWN]
        )
        if len(found.counts) > UNSERVED_SHOWN:
            shown += ", ..."
        capped = any(c for *_, c in found.counts)
        log.warning(
            "%d%s due job(s) wait that no running worker serves: %s",
            sum(n for _, _, n, _ in found.counts),
            "+" if capped else "",
            shown,
        )
