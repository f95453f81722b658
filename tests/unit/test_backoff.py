"""Retry policies: aqueue.Backoff and the default."""

from __future__ import annotations

import random

import pytest

import aqueue
from aqueue.backoff import BACKOFF_MAX_S, policy_delay_s, retry_delay_s


@pytest.mark.parametrize(("try_count", "base"), [(1, 30), (2, 60), (3, 120), (4, 240)])
def test_schedule_with_jitter_within_ten_percent(try_count: int, base: float) -> None:
    rng = random.Random(1234)
    delays = [retry_delay_s(try_count, rng) for _ in range(2000)]
    assert min(delays) >= base * 0.9
    assert max(delays) <= base * 1.1
    # Jitter actually spreads retries (not a constant).
    assert max(delays) - min(delays) > base * 0.15


def test_huge_try_counts_stay_finite_and_bad_ones_are_refused() -> None:
    assert retry_delay_s(10_000, random.Random(0)) == BACKOFF_MAX_S
    with pytest.raises(ValueError, match="numbered from 1"):
        retry_delay_s(0)


def test_the_default_doubles_from_30_s_with_10_percent_jitter_and_stops_at_a_day() -> None:
    rng = random.Random(1)
    for attempt, base in ((1, 30), (2, 60), (3, 120), (10, 15 * 2**10)):
        delays = [retry_delay_s(attempt, rng) for _ in range(200)]
        assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
        assert max(delays) - min(delays) > base * 0.1  # jitter is there
    # max_tries=20 used to mean a last wait of about 91 days.
    assert retry_delay_s(20, rng) == BACKOFF_MAX_S == 86400
    assert retry_delay_s(10_000, rng) == BACKOFF_MAX_S


def test_a_backoff_applies_jitter_before_the_cap() -> None:
    policy = aqueue.Backoff(base_s=1, factor=10, max_s=50, jitter=0.5)
    rng = random.Random(2)
    assert all(5 <= policy.delay_s(1, rng) <= 15 for _ in range(100))
    assert all(policy.delay_s(2, rng) == 50 for _ in range(100))  # 50..150, capped


def test_no_jitter_is_exact_and_callables_are_used_as_they_answer() -> None:
    assert aqueue.Backoff(base_s=2, factor=3, jitter=0).delay_s(2) == 18
    assert policy_delay_s(lambda attempt: attempt * 1.5, 4) == 6.0
    for bad in (-1, float("nan"), "5", None):
        with pytest.raises(ValueError, match="backoff callable returned"):
            policy_delay_s(lambda attempt, bad=bad: bad, 1)  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [{"base_s": -1}, {"factor": 0.5}, {"max_s": float("inf")}, {"jitter": 1.0}, {"base_s": "1"}],
)
def test_bad_backoffs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises((TypeError, ValueError)):
        aqueue.Backoff(**kwargs)  # type: ignore[arg-type]


def test_bad_verdicts_and_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="Retry delay"):
        aqueue.Retry(delay=-1)
    with pytest.raises(TypeError):
        aqueue.Snooze("soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count must be"):
        aqueue.RateLimit(count=0, period_s=1)
    with pytest.raises(ValueError, match="period_s must be"):
        aqueue.RateLimit(count=5, period_s=0)
    assert aqueue.Snooze(0).delay_s == 0.0
