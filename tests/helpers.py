"""Small helpers shared by the tests: waiting on conditions, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def sqlalchemy_dsn(dsn: str, driver: str | None = "asyncpg") -> str:
    """``dsn`` for SQLAlchemy (``postgresql+asyncpg://``) or, with ``driver=None``, for
    asyncpg itself (``postgresql://``)."""
    url = make_url(dsn)
    url = url.set(drivername="postgresql+asyncpg" if driver else "postgresql")
    return url.render_as_string(hide_password=False)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    condition: Callable[[T], bool],
    *,
    timeout_s: float = 15.0,
    interval_s: float = 0.02,
) -> T:
    """Poll ``probe`` until ``condition`` holds; fail with the last value after timeout_s.
    For conditions in another process (the database, a worker process's log)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if condition(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; last value: {value!r}")
        await anyio.sleep(interval_s)


class WorkerProcess:
    """``python -m aqueue worker`` in a child process, its output in a log file."""

    def __init__(
        self, log_path: Path, env: dict[str, str], *args: str, app: str = "tests.apps:app"
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aqueue", "worker", "--app", app, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_output(self, *texts: str, timeout_s: float = 15.0) -> str:
        """Wait until the worker's output contains one of ``texts`` (fail at once if it
        exited); return the output."""

        async def probe() -> str:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            return self.output()

        return await eventually(
            probe, lambda out: any(text in out for text in texts), timeout_s=timeout_s
        )

    async def wait_started(self, timeout_s: float = 20.0) -> None:
        await self.wait_output(" started (concurrency", timeout_s=timeout_s)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def wait(self, timeout_s: float = 20.0) -> int:
        async def probe() -> int | None:
            return self.proc.poll()

        try:
            await eventually(probe, lambda rc: rc is not None, timeout_s=timeout_s)
        finally:
            self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._log.close()


async def aqueue_backends(pg: asyncpg.Connection) -> int:
    """Server backends of aqueue's own connections (application_name ``aqueue``)."""
    return int(
        await pg.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aqueue'")
    )
