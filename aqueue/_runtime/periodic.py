"""Periodic enqueuer: on the leader only, takes each periodic entry's latest tick when it
comes (periodic_enqueue.sql), by the database's clock. The database makes each tick of an
entry enqueue at most once, so two workers that both think they lead (a failover's overlap)
still make one job."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import anyio

from .._store.store import PeriodicTick, Store
from ..errors import DatabaseError
from ..periodic import PeriodicEntry
from .leader import Leadership
from .logs import Throttled

log = logging.getLogger("aqueue.worker")

TICK_LATE_S = 0.005  # wake this long after a tick: its instant has passed on the database
RETRY_S = 1.0  # after a database error
WAIT_MAX_S = 60.0  # look again at least this often (the database clock may jump)


class PeriodicEnqueuer:
    def __init__(
        self,
        *,
        store: Store,
        entries: Sequence[PeriodicEntry],
        leadership: Leadership,
        outage_log: Throttled,
    ) -> None:
        self._store = store
        self._entries = list(entries)
        self._leadership = leadership
        self._throttled = outage_log
        self._payloads = {e.name: e.payload.SerializeToString() for e in self._entries}
        self.enqueued = 0  # jobs this worker enqueued for periodic entries
        self.skipped = 0  # ticks skipped: the entry's previous job still waited or ran

    async def run(self) -> None:
        if not self._entries:
            return
        while True:
            await self._leadership.wait_leading()
            try:
                wait_s = await self.run_once()
            except DatabaseError as exc:
                self._throttled.warning("%s", exc)
                wait_s = RETRY_S
            with anyio.move_on_after(min(wait_s, WAIT_MAX_S)):
                await self._leadership.wait_changed()

    async def run_once(self) -> float:
        """Take every entry's latest tick; return the seconds until the next tick."""
        now = await self._store.db_now()
        ticks = [self._tick(e, e.latest_tick(now)) for e in self._entries]
        for name, outcome, job_id in await self._store.periodic_enqueue(ticks):
            if outcome == "enqueued":
                self.enqueued += 1
                log.info("periodic: enqueued job %s for %r", job_id, name)
            elif outcome == "skipped":
                self.skipped += 1
                log.info(
                    "periodic: skipped a tick of %r: its previous job %s still waits or runs",
                    name,
                    job_id,
                )
            elif outcome == "first":
                log.info("periodic: %r is new; its first job comes at its next tick", name)
        following = min(e.next_tick(now) for e in self._entries)
        return max((following - now).total_seconds(), 0.0) + TICK_LATE_S

    def _tick(self, entry: PeriodicEntry, tick: dt.datetime) -> PeriodicTick:
        job = entry.job
        return PeriodicTick(
            name=entry.name,
            tick=tick,
            job_type=job.name,
            queue=job.queue,
            priority=job.priority,
            max_tries=job.max_tries,
            payload=self._payloads[entry.name],
            overlap=entry.overlap,
        )
