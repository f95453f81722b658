from __future__ import annotations

import pytest

import aqueue
from aqueue.config import WorkerSettings, validate_name, validate_schema


def test_defaults() -> None:
    s = WorkerSettings.resolve({}, environ={})
    assert (s.concurrency, s.lease_s, s.heartbeat_s, s.poll_interval_s) == (16, 30.0, 10.0, 5.0)
    assert (s.maintenance_interval_s, s.shutdown_timeout_s, s.queues) == (5.0, 30.0, None)
    assert s.loop_block_limit_s == 600.0
    assert (
        WorkerSettings.resolve({}, environ={"AQUEUE_LOOP_BLOCK_LIMIT_S": "60"}).loop_block_limit_s
        == 60
    )


def test_argument_beats_environment_beats_default() -> None:
    env = {"AQUEUE_LEASE_S": "12", "AQUEUE_CONCURRENCY": "3", "AQUEUE_QUEUES": "a, b"}
    s = WorkerSettings.resolve({}, environ=env)
    assert (s.lease_s, s.heartbeat_s, s.concurrency, s.queues) == (12.0, 4.0, 3, ("a", "b"))
    s = WorkerSettings.resolve({"lease_s": 9, "concurrency": None}, environ=env)
    assert (s.lease_s, s.heartbeat_s, s.concurrency) == (9.0, 3.0, 3)


@pytest.mark.parametrize(
    ("overrides", "env", "message"),
    [
        ({"concurrency": 0}, {}, "concurrency must be >= 1"),
        ({"lease_s": -1}, {}, "lease_s must be > 0"),
        ({"lease_s": 3, "heartbeat_s": 3}, {}, "must be shorter than lease_s"),
        ({}, {"AQUEUE_LEASE_S": "soon"}, "AQUEUE_LEASE_S: invalid value 'soon'"),
        ({"concurrency": 2.5}, {}, "concurrency: invalid value 2.5"),
        ({"queues": ["ok", "not ok"]}, {}, "queue name"),
        ({"lease_ms": 3}, {}, "unknown worker setting"),
        ({"loop_block_limit_s": 0}, {}, "loop_block_limit_s must be > 0"),
    ],
)
def test_bad_settings_are_refused_with_their_source(
    overrides: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(aqueue.ConfigurationError, match=message):
        WorkerSettings.resolve(overrides, environ=env)


@pytest.mark.parametrize("schema", ["aqueue", "_x", "app_jobs2", "a" * 63])
def test_plain_schemas_pass(schema: str) -> None:
    assert validate_schema(schema) == schema


@pytest.mark.parametrize(
    "schema", ["", "Public", "1abc", "a-b", 'x"; DROP TABLE y; --', "a" * 64, "sch ema", None]
)
def test_other_schemas_are_refused_before_any_sql(schema: object) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="schema must be"):
        aqueue.App("postgresql://nobody@127.0.0.1:1/none", schema=schema)  # type: ignore[arg-type]


def test_names() -> None:
    assert validate_name("queue name", "mail.high-priority:v2") == "mail.high-priority:v2"
    for bad in ["", ".hidden", "has space", "x" * 129, "semi;colon"]:
        with pytest.raises(aqueue.ConfigurationError):
            validate_name("queue name", bad)


def test_app_refuses_bad_settings_and_dsns_at_construction() -> None:
    with pytest.raises(aqueue.ConfigurationError, match="concurrency"):
        aqueue.App("postgresql://x@localhost/db", concurrency=0)
    with pytest.raises(aqueue.ConfigurationError, match="postgresql"):
        aqueue.App("mysql://x@localhost/db")
    with pytest.raises(aqueue.ConfigurationError, match="not a database URL"):
        aqueue.App("not a url at all")
