"""Heartbeat: extends the leases of this worker's running jobs, and reports the attempts
whose lease is gone (another worker rescued them) so they can be cancelled."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from .._store.store import Store
from ..errors import DatabaseError
from .logs import Throttled

log = logging.getLogger("aqueue.worker")


class Heartbeat:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        lease_s: float,
        interval_s: float,
        running: Callable[[], list[tuple[int, int]]],
        on_lost: Callable[[list[tuple[int, int]]], None],
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._running = running
        self._on_lost = on_lost
        self._throttled = Throttled(log)
        self.beats = 0

    async def run(self) -> None:
        while True:
            await anyio.sleep(self._interval_s)
            held = self._running()
            if not held:
                continue
            try:
                kept = await self._store.heartbeat(
                    self._worker_id, [h[0] for h in held], [h[1] for h in held], self._lease_s
                )
            except DatabaseError as exc:
                self._throttled.warning("heartbeat: %s", exc)
                continue
            self.beats += 1
            lost = [h for h in held if h[0] not in kept]
            if lost:
                self._on_lost(lost)
