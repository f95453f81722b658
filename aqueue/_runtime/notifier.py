"""Notifier: one LISTEN connection per worker. A notification only wakes the scheduler;
notifications are hints, the table is the truth."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

import anyio
from anyio.abc import TaskStatus

from .._store.store import Listening, Store
from ..errors import DatabaseError
from .logs import Throttled

log = logging.getLogger("aqueue.worker")

RECONNECT_BACKOFF_MAX_S = 2.0
PING_TIMEOUT_S = 5.0
CANCEL_PREFIX = "!cancel "  # '!' and ' ' are not allowed in queue names


class Notifier:
    def __init__(
        self,
        store: Store,
        queues: Collection[str] | None,
        wake: Callable[[], None],
        on_cancel_hint: Callable[[int], None],
        outage_log: Throttled,
        keepalive_s: float,
        *,
        on_ready: Callable[[int, int], None] = lambda lane, seq: None,
        on_gap: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._queues = None if queues is None else frozenset(queues)
        self._wake = wake
        self._on_cancel_hint = on_cancel_hint
        self._throttled = outage_log
        self._keepalive_s = keepalive_s
        self._on_ready = on_ready
        self._on_gap = on_gap
        self.notifications = 0
        self.listening = False
        self.current: Listening | None = None  # the LISTEN connection, while it is up

    def _on_notify(self, payload: str) -> None:
        self.notifications += 1
        # Notifications are hints, and anyone who can connect can send one: the payload names
        # the queue that got jobs ('<queue>', or '<queue> <lane> <seq>' for due jobs: the
        # lowest seq committed in that lane), or ('!cancel <id>') a job someone cancelled.
        # One for another queue, or garbage, is ignored; the tables decide what is claimed or
        # cancelled (a forged lane hint costs one claim a longer read, nothing else).
        if payload.startswith(CANCEL_PREFIX):
            job_id = payload[len(CANCEL_PREFIX) :]
            if _is_id(job_id):
                self._on_cancel_hint(int(job_id))
            return
        queue, _, hint = payload.partition(" ")
        lane, _, seq = hint.partition(" ")
        if _is_id(lane) and _is_id(seq):
            self._on_ready(int(lane), int(seq))
        if self._queues is None or queue in self._queues:
            self._wake()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; reconnect with capped backoff when the connection drops.
        The first connection's failure is raised, so a worker fails fast on a bad DSN."""
        started = False
        backoff = 0.1
        while True:
            try:
                async with self._store.listen(self._on_notify) as listening:
                    self.listening = True
                    self.current = listening
                    backoff = 0.1
                    if started:
                        log.info("listen: reconnected")
                        # Notifications sent while we were away are gone: look at everything.
                        self._on_gap()
                        self._wake()
                    else:
                        started = True
                        task_status.started()
                    await self._watch(listening)
            except DatabaseError as exc:
                if not started:
                    raise
                self._throttled.warning("%s; reconnecting in %.1f s", exc, backoff)
            finally:
                self.listening = False
                self.current = None
            if started:
                self._throttled.warning("listen: connection lost; reconnecting")
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_S)

    async def _watch(self, listening: Listening) -> None:
        """Return when the connection is lost; raise when it stops answering a keepalive
        ping (a connection that died without a goodbye would otherwise look alive forever).
        A heartbeat that failed on it gets a ping at once: an answer puts the heartbeats back
        on it, silence gets it replaced (beats go over the pool until either happens)."""
        while True:
            with anyio.move_on_after(self._keepalive_s):
                await listening.wait_for_trouble()
            if listening.lost.is_set():
                return
            try:
                await listening.ping(PING_TIMEOUT_S)
            except DatabaseError as exc:
                raise DatabaseError("listen", f"keepalive failed: {exc}") from exc


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < len(text) < 20
