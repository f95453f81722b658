"""Maintenance: rescues jobs whose lease expired. Every worker runs it; SKIP LOCKED keeps
concurrent rescuers from blocking each other, and each job is rescued once."""

from __future__ import annotations

import logging
import random
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
        interval_s: float,
        on_rescued: Callable[[dict[int, str]], None],
        outage_log: Throttled,
    ) -> None:
        self._store = store
        self._interval_s = interval_s
        self._on_rescued = on_rescued
        self._throttled = outage_log

    async def run(self) -> None:
        while True:
            try:
                rescued = await self._store.rescue()
            except DatabaseError as exc:
                self._throttled.warning("rescue: %s", exc)
            else:
                if rescued:
                    log.warning(
                        "rescue: %d job(s) whose worker stopped renewing its lease went back "
                        "to the queue: %s",
                        len(rescued),
                        sorted(rescued)[:20],
                    )
                    self._on_rescued(rescued)
            # Jitter keeps many workers from rescuing in lockstep.
            await anyio.sleep(self._interval_s * random.uniform(0.8, 1.2))
