"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import random

__all__ = ["BACKOFF_BASE_S", "BACKOFF_JITTER", "retry_delay_s"]

BACKOFF_BASE_S = 15.0
BACKOFF_JITTER = 0.10


def retry_delay_s(try_count: int, rng: random.Random | None = None) -> float:
    """Seconds from the database's ``now()`` until the next attempt after failed attempt
    number ``try_count`` (1-based): ``15 * 2**try_count`` (30, 60, 120, 240 s, ...) with up to
    ±10% jitter so that jobs that failed together do not retry together."""
    if try_count < 1:
        raise ValueError(f"try_count starts at 1, got {try_count}")
    base = BACKOFF_BASE_S * 2.0 ** min(try_count, 20)
    jitter = (rng or random).uniform(-BACKOFF_JITTER, BACKOFF_JITTER)
    return base * (1.0 + jitter)
