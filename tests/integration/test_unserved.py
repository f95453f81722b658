"""Workers say in ``workers`` what they serve; due jobs that no running worker serves are
logged, at most once a minute."""

from __future__ import annotations

import logging

import asyncpg
import pytest

import aqueue
from aqueue._runtime import maintenance as maintenance_module
from aqueue._runtime.logs import Throttled
from aqueue._runtime.maintenance import Maintenance
from aqueue._store.store import Store
from tests.helpers import eventually
from tests.payloads_pb2 import Task

UNSERVED = "no running worker serves"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def store_of(app: aqueue.App) -> Store:
    return await app._get_store()


def maintenance(
    store: Store, worker_id: str, job_types: list[str], queues: list[str] | None, clock: Clock
) -> Maintenance:
    return Maintenance(
        store,
        worker_id,
        1.0,
        30.0,
        lambda rescued: None,
        Throttled(logging.getLogger("tests")),
        clock,
        job_types=job_types,
        queues=queues,
    )


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and UNSERVED in r.getMessage()
    ]


async def queue_some(app: aqueue.App) -> None:
    await app.enqueue_many("send_email", [Task()] * 3, queue="mail")
    await app.enqueue_many("resize", [Task()] * 2)
    await app.enqueue("noop", Task())
    await app.enqueue("send_email", Task(), queue="mail", delay=3600)  # not due: not counted


async def test_due_jobs_no_worker_serves_are_logged_at_most_once_a_minute(
    app: aqueue.App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aqueue")
    await queue_some(app)
    clock = Clock()
    m = maintenance(await store_of(app), "w-noop", ["noop"], None, clock)
    await m.run_once()  # says what it serves; the first count comes a minute later
    clock.now += 59
    await m.run_once()
    assert warnings(caplog) == []
    clock.now += 1
    await m.run_once()
    assert warnings(caplog) == [
        f"5 due job(s) wait that {UNSERVED}: send_email@mail (3), resize@default (2)"
    ]
    clock.now += 40
    await m.run_once()  # within the minute: not counted, not logged again
    assert len(warnings(caplog)) == 1
    clock.now += 20
    await m.run_once()
    assert len(warnings(caplog)) == 2


async def test_jobs_served_by_a_live_worker_are_not_logged(
    app: aqueue.App, pg: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aqueue")
    await queue_some(app)
    store = await store_of(app)
    clock = Clock()
    m = maintenance(store, "w-noop", ["noop"], None, clock)
    # Serves both types, but only in queue "mail": resize@default stays unserved.
    mail = maintenance(store, "w-mail", ["send_email", "resize"], ["mail"], clock)
    await m.run_once()
    await mail.run_once()
    clock.now += 60
    await m.run_once()
    assert warnings(caplog) == [f"2 due job(s) wait that {UNSERVED}: resize@default (2)"]

    everything = maintenance(store, "w-all", ["resize"], None, clock)
    await everything.run_once()
    clock.now += 60
    await m.run_once()
    assert len(warnings(caplog)) == 1  # all served now: nothing logged

    # A worker that stopped renewing its row (killed) no longer counts once it expired, and
    # the next worker to renew its own row deletes it.
    await pg.execute(
        f"UPDATE {schema}.workers SET expires_at = now() - interval '1 s' "
        "WHERE worker_id = 'w-mail'"
    )
    clock.now += 60
    await m.run_once()  # renews its own row first (due every 20 s): w-mail's goes
    assert warnings(caplog)[-1] == f"3 due job(s) wait that {UNSERVED}: send_email@mail (3)"
    ids = await pg.fetch(f"SELECT worker_id FROM {schema}.workers ORDER BY 1")
    assert [r[0] for r in ids] == ["w-all", "w-noop"]


async def test_the_count_looks_at_a_bounded_number_of_due_jobs(
    app: aqueue.App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="aqueue")
    monkeypatch.setattr(maintenance_module, "UNSERVED_MAX_ROWS", 2)
    await queue_some(app)
    clock = Clock()
    m = maintenance(await store_of(app), "w-noop", ["noop"], None, clock)
    await m.run_once()
    clock.now += 60
    await m.run_once()
    assert warnings(caplog) == [
        f"4+ due job(s) wait that {UNSERVED}: resize@default (2+), send_email@mail (2+)"
    ]


async def test_a_worker_says_what_it_serves_while_it_runs(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def send_email(payload: Task) -> None: ...

    @app.job(payload=Task)
    async def resize(payload: Task) -> None: ...

    async def rows() -> list[tuple[object, ...]]:
        found = await pg.fetch(
            f"SELECT worker_id, job_types, queues, expires_at > now() AS live FROM {schema}.workers"
        )
        return [tuple(r) for r in found]

    async with app.worker(queues=["mail", "bulk"]) as worker:
        found = await eventually(rows, lambda r: len(r) == 1)
        assert found == [(worker.worker_id, ["resize", "send_email"], ["mail", "bulk"], True)]
    assert await rows() == []  # said goodbye when it stopped
