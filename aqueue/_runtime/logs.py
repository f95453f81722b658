"""Logging helpers for the worker's services."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Throttled:
    """Logs one line per ``interval_s`` at most; counts what it held back. For conditions
    that repeat quickly, such as a database outage seen by every statement."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last = -float("inf")
        self._held = 0

    def warning(self, msg: str, *args: object) -> None:
        now = self._clock()
        if now - self._last < self._interval_s:
            self._held += 1
            return
        if self._held:
            msg += " (%d similar line(s) held back)"
            args = (*args, self._held)
        self._last, self._held = now, 0
        self._logger.warning(msg, *args)
