"""Redaction: one function scrubs every message aqueue writes (DatabaseError, failure_info,
log lines). DSN-shaped text and ``password=`` values always; the bare password only when it is
long enough that it cannot be an ordinary word. And DatabaseError survives pickling."""

from __future__ import annotations

import pickle
import time

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import aqueue
from aqueue._runtime.executor import format_failure
from aqueue._store.dsn import MIN_BARE_PASSWORD_CHARS, dsn_password, redact, redact_dsn
from aqueue._store.engine_pool import EnginePool
from aqueue._store.pool import AsyncpgPool
from aqueue._store.store import Store


def store_for(dsn: str) -> Store:
    return Store(AsyncpgPool(dsn, "aqueue"), "t_redact")  # never connects


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "could not reach postgresql://app:hunter2@db.example:5432/jobs",
            "could not reach postgresql://app:***@db.example:5432/jobs",
        ),
        (  # a password with @ in it: the host starts after the last @
            "see postgres://app:p@ss@db/x then",
            "see postgres://app:***@db/x then",
        ),
        (
            "postgresql+asyncpg://:pw@h1:5432,h2:5433/db?target_session_attrs=read-write",
            "postgresql+asyncpg://:***@h1:5432,h2:5433/db?target_session_attrs=read-write",
        ),
        (
            "dsn postgresql://app@db/jobs?sslmode=require&password=hunter2&x=1 refused",
            "dsn postgresql://app@db/jobs?sslmode=require&password=***&x=1 refused",
        ),
        (
            "postgresql:///jobs?host=/run/postgresql&PASSWORD=hunter2",
            "postgresql:///jobs?host=/run/postgresql&PASSWORD=***",
        ),
        ("host=db user=app password=hunter2 dbname=d", "host=db user=app password=*** dbname=d"),
        ("host=db password = 'two words\\' here' dbname=d", "host=db password = *** dbname=d"),
        ('connect(user="app", password="hunter2")', 'connect(user="app", password=***)'),
        ("PGPASSWORD=hunter2 psql", "PGPASSWORD=*** psql"),
        ("no secret in postgresql://app@db/jobs", "no secret in postgresql://app@db/jobs"),
    ],
)
def test_dsn_shapes_and_password_values_are_always_scrubbed(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(text, "hunter2") == expected  # short: its bare literal is left alone


def test_a_short_or_common_password_leaves_ordinary_words_alone() -> None:
    dsn = "postgresql://postgres:postgres@localhost:5432/postgres"
    store = store_for(dsn)
    message = f"database postgres on postgresql server refused {dsn}"
    assert store.redact(message) == (
        "database postgres on postgresql server refused "
        "postgresql://postgres:***@localhost:5432/postgres"
    )
    assert len("postgres") < MIN_BARE_PASSWORD_CHARS


def test_a_long_password_is_scrubbed_wherever_it_appears() -> None:
    secret = "Wq8-zz@Pp/91"
    assert len(secret) >= MIN_BARE_PASSWORD_CHARS
    store = store_for("postgresql://app:Wq8-zz%40Pp%2F91@db/jobs")
    assert store.pool.password == secret
    text = f"auth failed for {secret!r} (sent as Wq8-zz%40Pp%2F91)"
    assert store.redact(text) == "auth failed for '***' (sent as ***)"


def test_a_query_string_password_is_the_pool_password() -> None:
    dsn = "postgresql://app@db/jobs?sslmode=disable&password=Query-S3cret-99"
    assert dsn_password(dsn) == "Query-S3cret-99"
    store = store_for(dsn)
    assert store.pool.password == "Query-S3cret-99"
    assert store.redact("echo Query-S3cret-99") == "echo ***"
    engine = create_async_engine("postgresql+asyncpg://app@db/jobs?password=Query-S3cret-99")
    assert EnginePool(engine).password == "Query-S3cret-99"
    assert dsn_password("postgresql://app@db/jobs") is None


def test_redact_dsn_for_logs() -> None:
    assert redact_dsn("postgresql://app:pw@db/jobs?password=pw2&a=b") == (
        "postgresql://app:***@db/jobs?password=***&a=b"
    )
    assert redact_dsn("postgresql://u:postgres@h1:1,h2:2/postgres") == (
        "postgresql://u:***@h1:1,h2:2/postgres"
    )


def test_failure_info_with_a_query_string_password_is_scrubbed() -> None:
    store = store_for("postgresql://app@db/jobs?password=pw")
    try:
        raise ConnectionError("could not reach postgresql://app@db/jobs?password=pw")
    except ConnectionError as exc:
        info = format_failure(exc, redact=store.redact)
    assert "password=pw" not in info
    assert "could not reach postgresql://app@db/jobs?password=***" in info
    error = store._error("enqueue", OSError("connect to postgresql://app@db/jobs?password=pw"))
    # An unquoted value runs to the next space or &: a password may contain ")".
    assert str(error) == (
        "enqueue: database unreachable (OSError: connect to postgresql://app@db/jobs?password=***"
    )


class ClaimError(aqueue.DatabaseError):
    """Raised in this test only."""


@pytest.mark.parametrize("cls", [aqueue.DatabaseError, ClaimError])
def test_database_error_pickles(cls: type[aqueue.DatabaseError]) -> None:
    error = cls("claim", "ConnectionError: gone")
    error.extra = 3  # type: ignore[attr-defined]
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error) == "claim: ConnectionError: gone"
    assert copy.operation == "claim"
    assert copy.extra == 3


def test_redaction_is_linear_in_the_length_of_the_text() -> None:
    # A handler's 200 KB exception message: a quadratic pattern took ~30 s here (the GIL
    # held all along, so the heartbeat thread starved too). A loose bound: breakage only.
    for text in ("a" * 200_000, "x://" * 50_000, "postgresql://u:" + "p" * 200_000):
        started = time.perf_counter()
        redact(text, "postgres")
        assert time.perf_counter() - started < 1.0
