"""A hung test fails, with the line it hangs on, instead of running to CI's limit
(pytest-timeout, configured in pyproject.toml, and the async deadline in tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

from tests.helpers import ROOT

HANGING = """
import time

import anyio
import pytest


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})])
async def test_awaits_forever(anyio_backend: object) -> None:
    await anyio.Event().wait()  # stuck here


def test_after_it() -> None:
    pass


def test_blocks_forever() -> None:
    time.sleep(3600)  # blocked here
"""


def run_pytest(path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """pytest in a child process with the suite's configuration and conftest, a 10 s timeout:
    the failure report is formatted inside it (on a slow machine 2 s left too little room)."""
    command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml")]
    command += ["--rootdir", str(ROOT), "-p", "tests.conftest", "-p", "no:cacheprovider"]
    command += ["-o", "timeout=10", str(path), *args]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


def test_the_suite_has_a_global_timeout_with_headroom() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 120 <= config["timeout"] <= 600
    assert config["timeout_method"] == "thread"  # "signal" never fires on an idle uvloop


def test_an_async_test_stuck_on_uvloop_fails_where_it_awaits_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "test_hanging.py"
    path.write_text(HANGING)
    done, took_s = run_pytest(path, "-k", "not blocks")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "timeout method: thread" in out
    assert "await anyio.Event().wait()  # stuck here" in out
    assert "still running after 9 s (90% of its pytest timeout)" in out
    assert "1 failed, 1 passed" in out
    assert took_s < 60


def test_a_blocked_test_is_stopped_with_its_stack(tmp_path: Path) -> None:
    path = tmp_path / "test_hanging.py"
    path.write_text(HANGING)
    done, took_s = run_pytest(path, "-k", "blocks")
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Timeout" in out
    assert "time.sleep(3600)  # blocked here" in out
    assert took_s < 60
