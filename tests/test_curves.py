"""The cost curves keep working: ``python -m benchmarks --curves-smoke`` on its own throwaway
cluster (embedded binaries, no local PostgreSQL needed).

The figures are not judged here, only that every operation got a finite figure and a buffer
count at every step of every curve, and that the report files were written."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

OPERATIONS = ("claim", "next_due", "rescue", "pickup")
EXPLAINED = ("claim", "next_due", "rescue")


# python -m benchmarks, with matplotlib unimportable (None in sys.modules) when asked.
RUN = """
import runpy, sys
if sys.argv[1] == "hide":
    sys.modules["matplotlib"] = None
sys.argv = ["benchmarks", *sys.argv[2:]]
runpy.run_module("benchmarks", run_name="__main__", alter_sys=True)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("matplotlib", ["as installed", "hide"])
def test_the_curves_smoke_run_reports_every_operation_at_every_step(
    tmp_path: Path, matplotlib: str
) -> None:
    out = tmp_path / "curves"
    command = [sys.executable, "-c", RUN, matplotlib, "--curves-smoke", "--curves-out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-4000:]

    report = json.loads((out / "curves.json").read_text())
    curves = {"held horizon": (report["held_horizon"], "processed")}
    for kind, points in report["foreign_rows"].items():
        curves[f"foreign {kind}"] = (points, "foreign")
    assert set(report["foreign_rows"]) == {"queue", "job_type"}
    for curve, (points, x) in curves.items():
        steps = [point[x] for point in points]
        assert len(steps) >= 3, curve
        assert steps[0] == 0, curve
        assert steps == sorted(set(steps)), curve
        for point in points:
            where = (curve, point[x])
            for op in OPERATIONS:
                figure = point["ms"][op]
                assert all(math.isfinite(figure[k]) for k in ("p50", "min", "max")), (*where, op)
                assert 0 < figure["min"] <= figure["p50"] <= figure["max"], (*where, op)
            for op in EXPLAINED:
                assert point["buffers"][op] >= 0, (*where, op)
            # Every job it enqueued to measure with ended: completed, or cancelled.
            assert set(point["facts"]["jobs"]) <= {"completed", "cancelled", "pending"}, where
    for point in report["held_horizon"]:
        assert point["facts"]["jobs"]["completed"] >= point["processed"], point["processed"]

    markdown = (out / "curves.md").read_text()
    assert "## Held horizon" in markdown
    assert markdown.count("## Foreign rows") == 2
    pngs = ("held_horizon.png", "foreign_rows.png", "buffers.png")
    if matplotlib == "hide":
        assert "matplotlib is not installed: no PNGs" in done.stderr
        assert not [name for name in pngs if (out / name).exists()]
    elif importlib.util.find_spec("matplotlib") is not None:
        for name in pngs:
            assert (out / name).stat().st_size > 0, name
