"""The fault-injection suite: real ``python -m aqueue worker`` processes against a throwaway
PostgreSQL cluster that these tests stop, restart and kill. Every test checks a ledger (one
row per attempt: job, attempt, pid) against the jobs table."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

import aqueue
from tests import apps
from tests.faults.cluster import CONFIG, Cluster
from tests.helpers import WorkerProcess

CANARY_USER = "canary"
CANARY_PASSWORD = f"Canary-{secrets.token_hex(8)}"

# Short settings, so that leases expire and rescues happen within seconds.
LEASE_S = 2.0
MAINTENANCE_INTERVAL_S = 1.0
POLL_INTERVAL_S = 2.0
SHORT = [
    "--lease-s",
    str(LEASE_S),
    "--maintenance-interval-s",
    str(MAINTENANCE_INTERVAL_S),
    "--poll-interval-s",
    str(POLL_INTERVAL_S),
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="aqueue-faults-"))
    folder.chmod(0o755)  # the server runs as an unprivileged user when we are root
    cluster = Cluster(folder, CONFIG, log_name="fault-suite.log")
    try:
        # A role that must give its password (for the secrets test): scram, not trust.
        hba = cluster.pgdata / "pg_hba.conf"
        hba.write_text(f"local all {CANARY_USER} scram-sha-256\n" + hba.read_text())
        cluster.restart("fast")
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cdsn(cluster: Cluster) -> str:
    cluster.ensure_running()  # a test that failed half-way may have left it stopped
    return cluster.dsn()


@pytest.fixture
def fschema() -> str:
    return f"f_{secrets.token_hex(6)}"


@pytest.fixture
async def db(cdsn: str, fschema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the cluster for looking at the tables, with aqueue's tables and
    the ledger created in the test's schema."""
    async with aqueue.App(cdsn, schema=fschema) as app:
        await app.migrate()
    conn = await asyncpg.connect(cdsn)
    await conn.execute(apps.LEDGER_DDL.replace(f"{apps.SCHEMA}.", f"{fschema}."))
    try:
        yield conn
    finally:
        if not conn.is_closed():
            await conn.close()


@pytest.fixture
async def fapp(cdsn: str, fschema: str, db: asyncpg.Connection) -> AsyncIterator[aqueue.App]:
    """A producer App on the cluster, in the test's schema."""
    async with aqueue.App(cdsn, schema=fschema) as app:
        yield app


@pytest.fixture
def spawn(cdsn: str, fschema: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``python -m aqueue worker --app tests.apps:app`` with the short settings."""
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        proc = WorkerProcess(
            tmp_path / f"worker-{len(started)}.log",
            {"AQUEUE_DSN": cdsn, "AQUEUE_TEST_SCHEMA": fschema, **(env or {})},
            *SHORT,
            *args,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.faults.report import FIGURES

    if FIGURES:
        terminalreporter.section("fault suite figures")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")
