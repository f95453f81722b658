"""Periodic jobs and the leader: one job per tick of an entry, whatever the number of
workers; no burst after downtime; overlap skipped; leadership held by one worker at a time."""

from __future__ import annotations

import datetime as dt
import itertools

import anyio
import asyncpg
import pytest

import aqueue
from aqueue._store.store import PeriodicTick
from tests.payloads_pb2 import Task

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def tick(name: str, at: dt.datetime, *, overlap: bool = False) -> PeriodicTick:
    return PeriodicTick(
        name=name,
        tick=at,
        job_type="beat",
        queue="default",
        priority=10,
        max_tries=5,
        payload=Task(n=1).SerializeToString(),
        overlap=overlap,
    )


async def jobs_of(pg: asyncpg.Connection, schema: str, job_type: str) -> list[asyncpg.Record]:
    return await pg.fetch(
        f"SELECT id, state, queued FROM {schema}.background_jobs WHERE job_type = $1 ORDER BY id",
        job_type,
    )


async def test_an_entry_starts_at_its_next_tick_and_takes_each_tick_once(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    store = await app._get_store()
    first = await store.periodic_enqueue([tick("beat", T0)])
    assert first == [("beat", "first", None)]  # recorded; no job for the tick it was seen at
    assert await jobs_of(pg, schema, "beat") == []
    assert await store.periodic_enqueue([tick("beat", T0)]) == [("beat", "taken", None)]
    (name, outcome, job_id) = (await store.periodic_enqueue([tick("beat", T0 + dt.timedelta(1))]))[
        0
    ]
    assert (name, outcome) == ("beat", "enqueued")
    rows = await jobs_of(pg, schema, "beat")
    assert [(r["id"], r["state"]) for r in rows] == [(job_id, "pending")]
    # An earlier tick, asked late (a leader whose clock reading was older): taken already.
    assert (await store.periodic_enqueue([tick("beat", T0 + dt.timedelta(hours=1))]))[0][1] == (
        "taken"
    )


async def test_a_tick_is_skipped_while_the_previous_job_waits_unless_overlap(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    store = await app._get_store()
    await store.periodic_enqueue([tick("beat", T0), tick("lap", T0, overlap=True)])
    day = dt.timedelta(days=1)
    out = await store.periodic_enqueue(
        [tick("beat", T0 + day), tick("lap", T0 + day, overlap=True)]
    )
    assert [o for _, o, _ in out] == ["enqueued", "enqueued"]
    beat_job = out[0][2]
    out = await store.periodic_enqueue(
        [tick("beat", T0 + 2 * day), tick("lap", T0 + 2 * day, overlap=True)]
    )
    assert [(n, o) for n, o, _ in out] == [("beat", "skipped"), ("lap", "enqueued")]
    assert out[0][2] == beat_job  # the job still waiting
    # Once it has ended, the next tick enqueues again.
    assert await app.cancel(beat_job)
    out = await store.periodic_enqueue([tick("beat", T0 + 3 * day)])
    assert out[0][1] == "enqueued"


async def test_ticks_missed_while_no_worker_ran_make_one_job(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    store = await app._get_store()
    await store.periodic_enqueue([tick("beat", T0)])
    # The leader asks only for the latest tick: a hundred missed ticks are one.
    out = await store.periodic_enqueue([tick("beat", T0 + dt.timedelta(minutes=100))])
    assert out[0][1] == "enqueued"
    assert len(await jobs_of(pg, schema, "beat")) == 1


async def test_a_tick_the_database_clock_has_not_reached_is_early(app: aqueue.App) -> None:
    store = await app._get_store()
    later = await store.db_now() + dt.timedelta(hours=1)
    assert await store.periodic_enqueue([tick("beat", later)]) == [("beat", "early", None)]


async def test_many_callers_taking_one_tick_at_once_enqueue_one_job(
    dsn: str, app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    store = await app._get_store()
    await store.periodic_enqueue([tick("beat", T0)])
    apps = [aqueue.App(dsn, schema=schema) for _ in range(8)]
    outcomes: list[str] = []
    try:

        async def take(other: aqueue.App) -> None:
            s = await other._get_store()
            outcomes.extend(
                o for _, o, _ in await s.periodic_enqueue([tick("beat", T0 + dt.timedelta(1))])
            )

        async with anyio.create_task_group() as tg:
            for other in apps:
                tg.start_soon(take, other)
    finally:
        for other in apps:
            await other.close()
    assert sorted(outcomes) == ["enqueued"] + ["taken"] * 7
    assert len(await jobs_of(pg, schema, "beat")) == 1


async def test_a_worker_enqueues_an_every_entry_each_tick_and_runs_the_jobs(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    ran: list[int] = []

    @app.periodic(every=dt.timedelta(seconds=1), payload=Task(n=7))
    @app.job(payload=Task)
    async def beat(payload: Task) -> None:
        ran.append(payload.n)

    async with app.worker() as worker:
        with anyio.fail_after(10):
            stats = await worker.wait_until(lambda s: s.completed >= 2)
    assert stats.leading
    assert stats.periodic_enqueued >= 2
    assert ran[:2] == [7, 7]
    rows = await jobs_of(pg, schema, "beat")
    assert len(rows) == stats.periodic_enqueued
    # One per tick: at least most of a second apart (every=1 s).
    gaps = [(b["queued"] - a["queued"]).total_seconds() for a, b in itertools.pairwise(rows)]
    assert all(gap > 0.5 for gap in gaps), gaps
    entry = await pg.fetchrow(f"SELECT * FROM {schema}.periodic WHERE name = 'beat'")
    assert entry["last_job_id"] == rows[-1]["id"]


async def test_one_of_several_workers_leads_and_another_takes_over_when_it_stops(
    dsn: str, app: aqueue.App, schema: str
) -> None:
    @app.job(payload=Task)
    async def idle(payload: Task) -> None:
        pass

    other = aqueue.App(dsn, schema=schema, maintenance_interval_s=0.2)
    other.job(payload=Task, name="idle")(idle.handler)
    try:
        async with other.worker(maintenance_interval_s=0.2) as second:
            with anyio.fail_after(5):  # alone, it leads
                await second.wait_until(lambda s: s.leading)
            async with app.worker(maintenance_interval_s=0.2) as first:
                # The other tries once per interval and never gets it while it is held.
                await anyio.sleep(0.6)
                assert not first.statistics().leading
                assert second.statistics().leading
            # first stopped; now stop the leader and watch a fresh worker take over.
            async with app.worker(maintenance_interval_s=0.2) as third:
                assert not third.statistics().leading
                second.stop()
                with anyio.fail_after(5):
                    await third.wait_until(lambda s: s.leading)
    finally:
        await other.close()


async def test_periodic_refuses_bad_schedules(app: aqueue.App) -> None:
    @app.job(payload=Task)
    async def beat(payload: Task) -> None:
        pass

    with pytest.raises(aqueue.ConfigurationError, match="cron expression"):
        app.periodic(beat, cron="every day")
    with pytest.raises(aqueue.ConfigurationError, match="time zone"):
        app.periodic(beat, cron="* * * * *", tz="Mars/Olympus")
    with pytest.raises(aqueue.ConfigurationError, match="exactly one"):
        app.periodic(beat)
    with pytest.raises(aqueue.ConfigurationError, match="exactly one"):
        app.periodic(beat, cron="* * * * *", every=dt.timedelta(hours=1))
    with pytest.raises(aqueue.ConfigurationError, match="shorter"):
        app.periodic(beat, every=dt.timedelta(milliseconds=10))
    with pytest.raises(aqueue.PayloadError):
        app.periodic(beat, every=dt.timedelta(hours=1), payload=aqueue.Backoff())  # type: ignore[arg-type]
    app.periodic(beat, every=dt.timedelta(hours=1))
    with pytest.raises(aqueue.ConfigurationError, match="exists already"):
        app.periodic(beat, cron="0 * * * *")
    app.periodic(beat, cron="0 * * * *", name="beat-hourly")  # a second entry, named


async def test_a_stopped_leader_gives_the_lock_up_before_its_connection_is_pooled_again(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    @app.job(payload=Task)
    async def idle(payload: Task) -> None:
        pass

    leader_locks = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = hashtext('aqueue.leader')::oid AND objid = hashtext($1)::oid"
    )
    async with app.worker() as worker:
        with anyio.fail_after(5):
            await worker.wait_until(lambda s: s.leading)
        assert await pg.fetchval(leader_locks, schema) == 1
    # The app (and its pool, holding the former LISTEN connection) is still open.
    assert app._store is not None
    assert await pg.fetchval(leader_locks, schema) == 0
    async with app.worker() as again:  # and the next worker of this app leads at once
        with anyio.fail_after(5):
            await again.wait_until(lambda s: s.leading)
