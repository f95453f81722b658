"""Timeouts, cancels, bad payloads, secrets and a wrong clock, with real worker processes."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable

import asyncpg
import pytest

import aqueue
from tests.faults.checks import first_run_at, ledger_rows_of, wait_job_state
from tests.faults.cluster import Cluster
from tests.faults.report import record_figure
from tests.helpers import WorkerProcess, eventually
from tests.payloads_pb2 import Task


async def test_timeout_cancels_at_1_s_records_it_and_retries(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn("--concurrency", "2")
    await worker.wait_started()
    job_id = await fapp.enqueue("timed", Task(n=1, sleep_s=30))
    started = await first_run_at(db, fschema, job_id)

    async def state() -> asyncpg.Record:
        return await db.fetchrow(
            f"SELECT state::text, clock_timestamp() AS seen, failure_info, try_count "
            f"FROM {fschema}.background_jobs WHERE id = $1",
            job_id,
        )

    row = await eventually(state, lambda r: r["state"] != "running", interval_s=0.01)
    cancelled_after = (row["seen"] - started).total_seconds()
    record_figure("10 timeout 1 s: attempt ended after s", cancelled_after)
    assert 0.7 <= cancelled_after <= 1.3
    assert (row["state"], row["try_count"]) == ("error", 1)
    assert "TimeoutError" in row["failure_info"]
    assert "timeout_s=1" in row["failure_info"]
    # Retried like any failure: once due (an operator's "retry now"), attempt 2 runs.
    await db.execute(
        f"UPDATE {fschema}.background_jobs SET next_attempt_after = now() WHERE id = $1", job_id
    )
    await eventually(
        lambda: db.fetchval(f"SELECT max(attempt) FROM {fschema}.ledger WHERE job_id = $1", job_id),
        lambda attempt: attempt == 2,
    )


async def test_cancel_running_job_stops_its_handler_within_1_s_never_reruns(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn("--concurrency", "1")
    await worker.wait_started()
    doomed = await fapp.enqueue("record", Task(n=1, sleep_s=60))
    await eventually(lambda: ledger_rows_of(db, fschema, worker.pid), lambda n: n == 1)
    waiting = await fapp.enqueue("record", Task(n=2))  # runs once the only slot frees up
    asked: dt.datetime = await db.fetchval("SELECT clock_timestamp()")
    assert await fapp.cancel(doomed) is True
    next_started = await first_run_at(db, fschema, waiting)
    freed_after = (next_started - asked).total_seconds()
    record_figure("12 cancel: handler cancelled and slot free after s", freed_after)
    assert freed_after < 1.0
    assert f"cancel: job {doomed} was cancelled" in worker.output()
    await wait_job_state(db, fschema, waiting, "completed")
    row = await db.fetchrow(
        f"SELECT state::text, try_count FROM {fschema}.background_jobs WHERE id = $1", doomed
    )
    assert tuple(row) == ("cancelled", 1)
    assert await ledger_rows_of(db, fschema, worker.pid) == 2  # the cancelled job ran once


async def test_garbage_payloads_fail_at_once_and_oversized_ones_are_refused(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn("--concurrency", "4")
    await worker.wait_started()
    whole = Task(n=7, label="x" * 50).SerializeToString()
    payloads = [
        whole[:-10],  # truncated inside a length-delimited field
        b"\xff\xff\xff\xff",  # wire type 7 does not exist
        *[secrets.token_bytes(64) for _ in range(20)],  # random: most do not decode
    ]
    ids = [
        await db.fetchval(
            f"INSERT INTO {fschema}.background_jobs (job_type, payload) "
            f"VALUES ('record', $1) RETURNING id",
            payload,
        )
        for payload in payloads
    ]
    with pytest.raises(aqueue.PayloadError, match="max_payload_bytes"):
        await fapp.enqueue("record", Task(label="x" * (2 * 1024 * 1024)))

    async def states() -> list[asyncpg.Record]:
        return await db.fetch(
            f"SELECT id, state::text, try_count, failure_info FROM {fschema}.background_jobs "
            f"ORDER BY id"
        )

    rows = await eventually(
        states, lambda rs: all(r["state"] in ("failed", "completed") for r in rs)
    )
    assert len(rows) == len(ids)  # the oversized one was never inserted
    failed = [r for r in rows if r["state"] == "failed"]
    # Protobuf accepts some random bytes as unknown fields; those ran, the rest failed at once.
    assert {rows[0]["id"], rows[1]["id"]} <= {r["id"] for r in failed}
    for r in failed:
        assert r["try_count"] == 1
        assert "PayloadDecodeError" in r["failure_info"]
    record_figure(
        "13 garbage payloads: failed at once / decoded anyway",
        (len(failed), len(rows) - len(failed)),
    )
    # The worker is unaffected.
    ok = await fapp.enqueue("record", Task(n=1))
    await wait_job_state(db, fschema, ok, "completed")


async def test_the_password_never_appears_in_logs_or_failure_info(
    cluster: Cluster,
    fapp: aqueue.App,
    db: asyncpg.Connection,
    fschema: str,
    spawn: Callable[..., WorkerProcess],
) -> None:
    from tests.faults.conftest import CANARY_PASSWORD, CANARY_USER

    await db.execute(f"DROP ROLE IF EXISTS {CANARY_USER}")
    await db.execute(f"CREATE ROLE {CANARY_USER} LOGIN SUPERUSER PASSWORD '{CANARY_PASSWORD}'")
    secret_dsn = cluster.dsn(CANARY_USER, CANARY_PASSWORD)
    # The password is checked: without it, no connection.
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(cluster.dsn(CANARY_USER, "wrong"))
    worker = spawn(
        "--concurrency", "4", env={"AQUEUE_DSN": secret_dsn, "AQUEUE_LOG_LEVEL": "DEBUG"}
    )
    await worker.wait_started()
    # Handler errors that quote the DSN, and connections killed under the worker.
    leaks = await fapp.enqueue_many(
        "leak", [Task(n=i, label=secret_dsn) for i in range(5)], max_tries=1
    )
    for _ in range(3):
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            CANARY_USER,
        )
        job_id = await fapp.enqueue("record", Task(n=100))
        await wait_job_state(db, fschema, job_id, "completed")
    infos = await eventually(
        lambda: db.fetch(
            f"SELECT failure_info FROM {fschema}.background_jobs WHERE id = ANY($1) "
            f"AND state = 'failed'",
            leaks,
        ),
        lambda rows: len(rows) == len(leaks),
    )
    # New connections now fail: the worker logs connection errors while the role is gone.
    await db.execute(f"ALTER ROLE {CANARY_USER} NOLOGIN")
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", CANARY_USER
    )
    await worker.wait_output("not permitted to log in")
    await db.execute(f"ALTER ROLE {CANARY_USER} LOGIN")
    output = worker.output()
    assert "could not reach postgresql://canary:***@" in infos[0]["failure_info"]
    for row in infos:
        assert CANARY_PASSWORD not in row["failure_info"]
    assert CANARY_PASSWORD not in output
    assert "canary:***@" in output  # the DSN is logged, redacted
    record_figure("14 canary: log lines checked", len(output.splitlines()))


async def test_a_worker_an_hour_off_follows_the_database_clock(
    fapp: aqueue.App, db: asyncpg.Connection, fschema: str, spawn: Callable[..., WorkerProcess]
) -> None:
    try:
        import libfaketime
    except ImportError:
        pytest.skip("libfaketime (a test dependency, Linux only) is not installed")
    _, preload = libfaketime.get_reload_information()
    worker = spawn("--concurrency", "4", env={**preload, "FAKETIME": "-1h"})
    await worker.wait_started()
    # The shift took: the worker's log timestamps are an hour behind.
    first = worker.output().splitlines()[0]
    logged = dt.datetime.strptime(first[:19], "%Y-%m-%d %H:%M:%S")
    assert 3500 <= (dt.datetime.now() - logged).total_seconds() <= 3700, first
    assert "FAKETIME" not in os.environ

    delayed = await fapp.enqueue("record", Task(n=1), delay=2.0)
    failing = await fapp.enqueue("record", Task(n=2, fail=True))
    waited = await eventually(
        lambda: db.fetchval(
            f"SELECT extract(epoch FROM l.at - j.queued) FROM {fschema}.ledger l "
            f"JOIN {fschema}.background_jobs j ON j.id = l.job_id WHERE l.job_id = $1",
            delayed,
        ),
        lambda v: v is not None,
    )
    record_figure("15 clock -1 h: 2 s delay started after s", float(waited))
    assert 2.0 <= float(waited) <= 2.5
    row = await eventually(
        lambda: db.fetchrow(
            f"SELECT state::text, extract(epoch FROM next_attempt_after - now()) AS due_in "
            f"FROM {fschema}.background_jobs WHERE id = $1",
            failing,
        ),
        lambda r: r["state"] == "error",
    )
    # The first retry waits 30 s ± 10% on the database clock, not an hour off.
    assert 25 <= float(row["due_in"]) <= 33.5
