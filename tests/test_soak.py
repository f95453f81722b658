"""The soak benchmark keeps working: its one-minute smoke run, on a throwaway cluster of its
own (built from the embedded binaries, as in CI).

Its figures are not judged here (the machine is shared and the phases are 8 s), only that
every phase ran, every offered job completed, and the samples and outputs are all there."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak import DEFAULT_PHASES, SAMPLE_S, Batches
from benchmarks.soak_stats import Histogram, SeqBitmap
from tests.helpers import ROOT


def test_histogram_percentiles_are_within_one_percent_of_the_exact_ones() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 2) for _ in range(20_000)]
    halves = [Histogram(), Histogram()]
    for i, ms in enumerate(values):
        halves[i % 2].record(ms)
    merged = Histogram.merged(halves)
    ordered = sorted(values)
    assert merged.count == len(values)
    assert merged.max_ms == ordered[-1]
    for p in (50, 90, 99, 99.9):
        exact = ordered[math.ceil(p / 100 * len(ordered)) - 1]
        assert exact <= merged.percentile(p) <= exact * 1.01, p
    assert math.isnan(Histogram().percentile(99))


def test_histogram_clamps_at_both_ends() -> None:
    histogram = Histogram()
    histogram.record(0.0)
    histogram.record(10_000_000.0)  # beyond 600 s: the last bucket
    assert histogram.percentile(50) == pytest.approx(0.01)
    assert histogram.percentile(100) == 10_000_000.0


def test_seq_bitmap_finds_the_missing_and_the_duplicates() -> None:
    seen = SeqBitmap()
    for seq in [*range(0, 500), *range(501, 1_000_000), 7, 7]:
        seen.add(seq)
    assert seen.seen == 999_999
    assert seen.duplicates == 2
    assert seen.missing(1_000_002) == (3, [500, 1_000_000, 1_000_001])


def test_a_report_before_its_enqueue_call_returned_has_no_commit_time() -> None:
    batches = Batches()
    first = batches.begin(0)
    batches.end(first, 100.0)
    second = batches.begin(10)
    assert batches.committed_at(9) == 100.0
    assert math.isnan(batches.committed_at(10))
    batches.end(second, 101.0)
    assert batches.committed_at(25) == 101.0


@pytest.mark.slow
@pytest.mark.timeout(420)  # the run's own limit (360 s) speaks first
def test_the_soak_smoke_run_completes_every_phase_and_every_job(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks", "--soak", "--smoke", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=360)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "soak.json").read_text())

    assert [p["name"] for p in result["phases"]] == [name for name, _, _ in DEFAULT_PHASES]
    assert [p["phase"] for p in result["summary"]["phases"]] == [n for n, _, _ in DEFAULT_PHASES]
    for phase in result["phases"]:
        assert phase["offered_end"] > phase["offered_start"], phase["name"]

    verification = result["verification"]
    assert verification["offered"] > 0
    assert verification["every_job_completed"], verification
    assert verification["states"] == {"completed": verification["offered"]}
    assert verification["seqs_missing"] == 0

    samples = result["samples"]
    # The 7 phases of 8 s and one sample after the drain, on a 5 s schedule from the start.
    assert len(samples) >= 7 * 8 / SAMPLE_S
    for k, sample in enumerate(samples, start=1):
        assert abs(sample["t"] - k * SAMPLE_S) < SAMPLE_S / 2, [s["t"] for s in samples]
    last = samples[-1]
    assert last["relations"], "no relation of the schema was sampled"
    assert any(r["kind"] == "index" for r in last["relations"].values())
    # Some tables are empty at the end (no job waits delayed, none failed): not all > 0.
    assert sum(r["bytes"] for r in last["relations"].values() if r["kind"] == "table") > 0
    assert any(s["xmin_age"] > 0 for s in samples if s["phase"] == "idle_in_tx")

    report = (tmp_path / "report.md").read_text()
    assert "| phase | s | offered/s |" in report
    assert "Every offered job completed." in report
    plots = ["throughput.png", "p99.png", "dead_tuples.png", "sizes.png"]
    if importlib.util.find_spec("matplotlib") is not None:
        for name in plots:
            assert (tmp_path / name).stat().st_size > 0, name
    else:
        assert not any((tmp_path / name).exists() for name in plots)
        assert "matplotlib is not installed" in done.stdout
