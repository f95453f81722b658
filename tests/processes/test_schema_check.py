"""A real ``python -m aqueue worker`` on an unmigrated schema exits at once, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import WorkerProcess

pytestmark = pytest.mark.slow


async def test_worker_process_on_an_unmigrated_schema_exits_1_with_one_line(
    dsn: str, schema: str, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        tmp_path / "worker.log",
        {"AQUEUE_DSN": dsn, "AQUEUE_TEST_SCHEMA": schema, "AQUEUE_LOG_LEVEL": "WARNING"},
    )
    try:
        assert await worker.wait() == 1
    finally:
        worker.kill()
    assert worker.output().splitlines() == [
        f"aqueue: SchemaError: worker: schema '{schema}' has no aqueue tables: run "
        "`python -m aqueue migrate --app <module:attribute>` (or `await app.migrate()`)"
    ]
