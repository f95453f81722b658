"""The CLI's argument handling (the worker itself is exercised in tests/processes)."""

from __future__ import annotations

import pytest

from aqueue.cli import load_app, main


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "must look like module:attribute"),
        ("nosuch.module:app", "no module named 'nosuch'"),
        ("examples.mail:missing", "is not an aqueue.App"),
    ],
)
def test_bad_app_specs_exit_2_with_one_line(
    spec: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--app", spec]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_load_app_returns_the_app() -> None:
    from examples import mail

    assert load_app("examples.mail:app") is mail.app


def test_bad_setting_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--app", "examples.mail:app", "--lease-s", "-1"]) == 2
    assert "lease_s must be > 0" in capsys.readouterr().err


def test_loop_block_limit_is_a_cli_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--app", "examples.mail:app", "--loop-block-limit-s", "0"]) == 2
    assert "loop_block_limit_s must be > 0" in capsys.readouterr().err
