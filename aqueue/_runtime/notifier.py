"""Notifier: one LISTEN connection per worker. A notification only wakes the scheduler;
notifications are hints, the table is the truth."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

import anyio
from anyio.abc import TaskStatus

from .._store.store import Store
from ..errors import DatabaseError
from .logs import Throttled

log = logging.getLogger("aqueue.worker")

RECONNECT_BACKOFF_MAX_S = 5.0


class Notifier:
    def __init__(
        self, store: Store, queues: Collection[str] | None, wake: Callable[[], None]
    ) -> None:
        self._store = store
        self._queues = None if queues is None else frozenset(queues)
        self._wake = wake
        self._throttled = Throttled(log)
        self.notifications = 0
        self.listening = False

    def _on_notify(self, payload: str) -> None:
        self.notifications += 1
        # The payload names the queue that got jobs. Notifications are hints: one for another
        # queue (or garbage) is ignored, and the table decides what is claimed.
        if self._queues is None or payload in self._queues:
            self._wake()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; reconnect with capped backoff when the connection drops.
        The first connection's failure is raised, so a worker fails fast on a bad DSN."""
        started = False
        backoff = 0.1
        while True:
            try:
                async with self._store.listen(self._on_notify) as lost:
                    self.listening = True
                    backoff = 0.1
                    if started:
                        log.info("listen: reconnected")
                        self._wake()  # notifications sent while we were away are gone
                    else:
                        started = True
                        task_status.started()
                    await lost.wait()
            except DatabaseError as exc:
                if not started:
                    raise
                self._throttled.warning("listen: %s; reconnecting in %.1f s", exc, backoff)
            finally:
                self.listening = False
            if started:
                self._throttled.warning("listen: connection lost; reconnecting")
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_S)
