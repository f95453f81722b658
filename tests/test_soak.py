"""The soak benchmark keeps working: its one-minute smoke run, on a throwaway cluster of its
own (built from the embedded binaries, as in CI).

Its figures are not judged here (the machine is shared and the phases are 8 s), only that
every phase ran, every offered job completed, and the samples and outputs are all there."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak import DEFAULT_PHASES, SAMPLE_S
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


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
    assert all(r["bytes"] > 0 for r in last["relations"].values() if r["kind"] == "table")
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
