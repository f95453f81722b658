"""The benchmark suite keeps working: its one-minute smoke run, on the test database.

Benchmarks never decide pass or fail: the figures are not judged here, only that every
workload ran to the end (each checks its own jobs all completed) and reported numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from benchmarks.__main__ import WORKLOADS
from tests.helpers import ROOT, sqlalchemy_dsn

pytestmark = pytest.mark.slow


@pytest.mark.timeout(660)  # the smoke run's own limit (600 s) speaks first
async def test_the_benchmark_smoke_run_completes_and_reports_every_workload(
    dsn: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out)]
    command += ["--dsn", sqlalchemy_dsn(dsn, driver=None)]
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    expected = {name for name, workload in WORKLOADS.items() if not workload.scale}
    assert set(report["results"]) == expected
    for name, result in report["results"].items():
        for figure, summary in result["aqueue"].items():
            assert math.isfinite(summary["median"]), (name, figure)
        if result["kind"] == "rate":
            assert result["aqueue"]["jobs_per_s"]["median"] > 0, name
        if result["kind"] == "latency":
            assert result["aqueue"]["left_behind"]["median"] == 0, name
            assert 0 < result["aqueue"]["p50_ms"]["median"] <= result["aqueue"]["p99_ms"]["median"]
        if "ceiling" in result:
            assert result["ceiling"]["jobs_per_s"]["median"] > 0, name
    drain = report["results"]["drain_c16"]["aqueue"]
    assert 1 <= drain["worker_connections"]["median"] <= 3  # pool (2) + LISTEN
    assert "| workload | size | aqueue | target | raw SQL ceiling |" in done.stdout
