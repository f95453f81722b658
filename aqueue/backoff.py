"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable

from .control import DELAY_MAX_S

__all__ = ["BACKOFF_BASE_S", "BACKOFF_JITTER", "BACKOFF_MAX_S", "Backoff", "retry_delay_s"]

BACKOFF_BASE_S = 15.0
BACKOFF_JITTER = 0.10
BACKOFF_MAX_S = 24 * 3600.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Backoff:
    """An exponential retry policy: after failed attempt ``n`` (1-based) the job waits
    ``base_s * factor**n`` seconds, randomly moved by up to ``±jitter`` of itself (so jobs
    that failed together do not retry together), then capped at ``max_s``::

        @app.job(payload=Ping, backoff=aqueue.Backoff(base_s=1, factor=3, max_s=600))

    The default is ``Backoff(base_s=15, factor=2, max_s=86400, jitter=0.1)``: 30 s, 60 s,
    2 min, 4 min, ... and never more than a day. ``@app.job(backoff=...)`` also takes any
    callable ``(attempt: int) -> seconds`` returning the exact wait (no jitter added).
    Raises ``ValueError`` for a negative or non-finite value, or ``factor < 1``.
    """

    base_s: float = BACKOFF_BASE_S
    factor: float = 2.0
    max_s: float = BACKOFF_MAX_S
    jitter: float = BACKOFF_JITTER

    def __post_init__(self) -> None:
        for name in ("base_s", "factor", "max_s", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Backoff.{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"Backoff.{name} must be a finite number >= 0, got {value!r}")
        if self.factor < 1:
            raise ValueError(f"Backoff.factor must be >= 1, got {self.factor!r}")
        if self.jitter >= 1:
            raise ValueError(f"Backoff.jitter must be below 1, got {self.jitter!r}")
        if self.max_s > DELAY_MAX_S:
            raise ValueError(f"Backoff.max_s must be at most ten years, got {self.max_s!r}")

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt ``attempt`` (1-based), in seconds."""
        if attempt < 1:
            raise ValueError(f"attempts are numbered from 1, got {attempt}")
        try:
            base = self.base_s * self.factor ** min(attempt, 10_000)
        except OverflowError:
            base = math.inf
        if self.jitter:
            base *= 1.0 + (rng or random).uniform(-self.jitter, self.jitter)
        return min(base, self.max_s)


DEFAULT_BACKOFF = Backoff()

RetryPolicy = Backoff | Callable[[int], float]


def retry_delay_s(try_count: int, rng: random.Random | None = None) -> float:
    """Seconds from the database's ``now()`` until the next attempt after failed attempt
    number ``try_count`` (1-based) under the default policy: ``15 * 2**try_count`` (30, 60,
    120, 240 s, ...) with up to ±10% jitter, capped at one day."""
    return DEFAULT_BACKOFF.delay_s(try_count, rng)


def policy_delay_s(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """The wait ``policy`` gives after failed attempt ``attempt``. A callable's answer is
    checked: anything but a finite number of seconds from 0 to ten years raises
    ``ValueError``."""
    if isinstance(policy, Backoff):
        return policy.delay_s(attempt, rng)
    value = policy(attempt)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and 0 <= value <= DELAY_MAX_S)
    ):
        raise ValueError(
            f"the backoff callable returned {value!r} for attempt {attempt}; it must return "
            "a finite number of seconds from 0 to ten years"
        )
    return float(value)
