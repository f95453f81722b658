from __future__ import annotations

import random

import pytest

from aqueue import retry_delay_s


@pytest.mark.parametrize(("try_count", "base"), [(1, 30), (2, 60), (3, 120), (4, 240)])
def test_schedule_with_jitter_within_ten_percent(try_count: int, base: float) -> None:
    rng = random.Random(1234)
    delays = [retry_delay_s(try_count, rng) for _ in range(2000)]
    assert min(delays) >= base * 0.9
    assert max(delays) <= base * 1.1
    # Jitter actually spreads retries (not a constant).
    assert max(delays) - min(delays) > base * 0.15


def test_huge_try_counts_stay_finite_and_bad_ones_are_refused() -> None:
    assert retry_delay_s(10_000, random.Random(0)) < 15 * 2**21
    with pytest.raises(ValueError, match="starts at 1"):
        retry_delay_s(0)
