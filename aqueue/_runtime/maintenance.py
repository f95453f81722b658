"""Maintenance: rescues jobs whose lease expired. Every worker runs it; SKIP LOCKED keeps
concurrent rescuers from blocking each other, and each job is rescued once."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import anyio

from .._store.store import Store
from ..errors import DatabaseError
from .logs import Throttled

log = logging.getLogger("aqueue.worker")


class Maintenance:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        interval_s: float,
        lease_s: float,
        running: Callable[[], list[int]],
        on_rescued: Callable[[dict[int, str]], None],
        outage_log: Throttled,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._interval_s = interval_s
        self._lease_s = lease_s
        self._running = running
        self._on_rescued = on_rescued
        self._throttled = outage_log
        self._clock = clock
        self._outage = False
        self._grace_until = -float("inf")

    async def run(self) -> None:
        while True:
            await self.run_once()
            # Jitter keeps many workers from rescuing in lockstep.
            await anyio.sleep(self._interval_s * random.uniform(0.8, 1.2))

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
            if self._clock() < self._grace_until:
                return
            rescued = await self._store.rescue(self._worker_id, self._running())
        except DatabaseError as exc:
            self._outage = True
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
