"""What a handler raises to decide its job's fate, and the fleet-wide limits of a job type."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

__all__ = ["Discard", "RateLimit", "Retry", "Snooze"]

SNOOZE_MAX = 100  # snoozes in a row (no counted attempt between them) before the job fails
# The longest delay accepted: PostgreSQL's intervals overflow far beyond, and a job due in
# ten years is a mistake more often than a plan.
DELAY_MAX_S = 10 * 366 * 86400.0


def seconds(what: str, value: float | dt.timedelta) -> float:
    """``value`` (seconds or a timedelta) in seconds; ``TypeError``/``ValueError`` naming
    ``what`` unless it is a finite number from 0 to ten years."""
    if isinstance(value, dt.timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        raise TypeError(f"{what} must be seconds or a timedelta, got {value!r}")
    if not (math.isfinite(result) and result >= 0):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    if result > DELAY_MAX_S:
        raise ValueError(f"{what} must be at most ten years ({DELAY_MAX_S:g} s), got {value!r}")
    return result


class Retry(Exception):
    """Raise from a handler to fail this attempt on purpose and run the job again::

        raise aqueue.Retry(delay=60)   # or a timedelta; omitted: the type's backoff

    The attempt counts against ``max_tries``: the job goes to ``error``, due again after
    ``delay`` (or the job type's backoff when ``delay`` is ``None``), or to ``failed`` when
    it was the last try. Its ``failure_info`` says a retry was requested, with ``reason``.
    Raises ``TypeError``/``ValueError`` for a bad ``delay``.
    """

    def __init__(self, reason: str = "", *, delay: float | dt.timedelta | None = None) -> None:
        super().__init__(reason)
        self.reason = str(reason)
        self.delay_s = None if delay is None else seconds("Retry delay", delay)


class Snooze(Exception):
    """Raise from a handler to put the job back without counting the attempt::

        raise aqueue.Snooze(30)   # seconds or a timedelta; 0: due again now

    ``try_count`` goes back to what it was before this attempt and the job waits
    (``pending``, or ``error`` if an earlier attempt failed) until ``delay`` has passed;
    ``failure_info`` is left as it was. A job snoozed more than 100 times with no counted
    attempt between them is failed, so a bug cannot keep it looping for ever.
    Raises ``TypeError``/``ValueError`` for a bad ``delay``.
    """

    def __init__(self, delay: float | dt.timedelta = 0.0) -> None:
        self.delay_s = seconds("Snooze delay", delay)
        super().__init__(self.delay_s)


class Discard(Exception):
    """Raise from a handler to fail the job for good, at once, whatever tries it has left::

        raise aqueue.Discard("the account was deleted")

    The job becomes ``failed``; its ``failure_info`` says it was discarded, and why.
    ``@app.job(discard_on=(SomeError, ...))`` does the same for those exceptions.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = str(reason)


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """At most ``count`` attempts of a job type start in any ``period_s`` seconds, across
    every worker of the fleet (a sliding window: a start is a claim, timed by the database's
    clock)::

        @app.job(payload=Sms, rate_limit=aqueue.RateLimit(count=20, period_s=1.0))

    Raises ``ValueError`` unless ``count >= 1`` and ``period_s > 0``.
    """

    count: int
    period_s: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise TypeError(f"RateLimit.count must be an int, got {self.count!r}")
        if not 1 <= self.count <= 1000:
            raise ValueError(
                f"RateLimit.count must be 1-1000 (for more, use a shorter period), got {self.count}"
            )
        period = seconds("RateLimit.period_s", self.period_s)
        if period <= 0:
            raise ValueError(f"RateLimit.period_s must be > 0, got {self.period_s!r}")
        object.__setattr__(self, "period_s", period)
