"""Leadership: one worker of the fleet runs rescue, retention and periodic jobs.

The leader holds a session advisory lock (lead.sql) on its LISTEN connection, which it keeps
for its whole life; the lock lives and dies with that connection, so when the leader dies
(SIGKILL included) its backend exits and the lock is free. The others try once per
maintenance interval, so leadership passes within about one interval."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from .._store.store import Listening
from ..errors import DatabaseError
from .logs import Throttled

log = logging.getLogger("aqueue.worker")

LEAD_TIMEOUT_S = 2.0  # a try that does not answer in time gets the connection pinged


class Leadership:
    """Whether this worker leads. ``listening``: the notifier's current LISTEN connection
    (``None`` while it is down); ``None`` for the whole worker (a drain, which listens to
    nothing): it then leads alone, for its own rescues."""

    def __init__(
        self,
        *,
        listening: Callable[[], Listening | None] | None,
        outage_log: Throttled,
        worker_id: str,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._listening = listening
        self._throttled = outage_log
        self._worker_id = worker_id
        self._on_change = on_change  # the worker's statistics changed
        self._held_on: Listening | None = None
        self._changed = anyio.Event()
        self.tries = 0  # lead.sql statements run

    @property
    def leading(self) -> bool:
        """Whether this worker holds leadership now."""
        if self._listening is None:
            return True
        held = self._held_on
        return held is not None and held is self._listening() and not held.lost.is_set()

    async def try_lead(self) -> bool:
        """Take leadership if it is free (one statement; none while this worker leads)."""
        if self._listening is None:
            return True
        if self.leading:
            return True
        if self._held_on is not None:
            self._held_on = None
            log.warning(
                "leader: worker %s no longer leads (its LISTEN connection was lost)",
                self._worker_id,
            )
            self._signal()
        listening = self._listening()
        if listening is None:
            return False
        self.tries += 1
        try:
            got, ended = await listening.lead(self._worker_id, LEAD_TIMEOUT_S)
        except DatabaseError as exc:
            self._throttled.warning("%s", exc)
            return False
        if ended:
            log.warning(
                "leader: the leader's lease expired while its connection held leadership (a "
                "stopped process, a blocked loop, a host cut off): ended its backend; the "
                "next try takes over"
            )
        if got and listening is self._listening():
            self._held_on = listening
            log.info(
                "leader: worker %s now leads rescue, retention and periodic jobs",
                self._worker_id,
            )
            self._signal()
        return self.leading

    async def wait_leading(self) -> None:
        """Return once this worker leads."""
        while not self.leading:
            await self._changed.wait()

    async def wait_changed(self) -> None:
        """Return at the next change of leadership (taken or seen lost)."""
        await self._changed.wait()

    def _signal(self) -> None:
        event, self._changed = self._changed, anyio.Event()
        event.set()
        self._on_change()
