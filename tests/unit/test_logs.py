from __future__ import annotations

import logging

import pytest

from aqueue._runtime.logs import Throttled


def test_throttled_logs_once_per_interval_and_counts_what_it_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    throttled = Throttled(logging.getLogger("t"), interval_s=1.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for step in range(30):  # 30 failures over 3 s, one every 0.1 s
            now[0] = 100.0 + step * 0.1
            throttled.warning("database down: %s", step)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0] == "database down: 0"
    assert lines[1].startswith("database down: 10")
    assert "(9 similar line(s) held back)" in lines[1]
