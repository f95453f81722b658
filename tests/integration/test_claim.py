"""The claim statement: it completes the attempts it is given, and it reads each lane's
index in order whatever the tables' statistics say."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

import aqueue
from aqueue._store.records import Limit
from aqueue._store.store import Store
from tests.helpers import sqlalchemy_dsn
from tests.payloads_pb2 import Task


@contextlib.asynccontextmanager
async def rolled_back(pg: asyncpg.Connection, *settings: str) -> AsyncIterator[None]:
    """A transaction with ``settings`` (``name = value``), rolled back at the end."""
    tx = pg.transaction()
    await tx.start()
    try:
        for setting in settings:
            await pg.execute(f"SET LOCAL {setting}")
        yield
    finally:
        await tx.rollback()


@contextlib.asynccontextmanager
async def logged_plans(pg: asyncpg.Connection, *settings: str) -> AsyncIterator[list[str]]:
    """A transaction, rolled back at the end, in which auto_explain logs the plan of every
    statement, nested ones (inside functions) too, with ``settings`` (``name = value``); the
    plans as they arrive."""
    plans: list[str] = []

    def on_log(_conn: Any, message: Any) -> None:
        plans.append(str(message))

    pg.add_log_listener(on_log)
    try:
        await pg.execute("LOAD 'auto_explain'")
        async with rolled_back(
            pg,
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
            "client_min_messages = log",
            *settings,
        ):
            yield plans
    finally:
        pg.remove_log_listener(on_log)


async def test_claim_completes_the_attempts_it_is_given_guarded_like_complete(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    store = app._store
    assert isinstance(store, Store)
    first_id, second_id, third_id = await app.enqueue_many("folded", [Task(), Task(), Task()])
    first, second = (await store.claim(2, ["folded"], None, "worker-a", 30)).jobs
    assert [first.id, second.id] == [first_id, second_id]
    # The second's attempt number is wrong: a late write from an earlier attempt.
    claim = await store.claim(2, ["folded"], None, "worker-a", 30, [first.id, second.id], [1, 7])
    assert claim.completed == {first_id}
    assert [job.id for job in claim.jobs] == [third_id]
    assert claim.next_due_s is None  # nothing else queued
    # Repeated (its reply lost with the connection): reported as completed again, once.
    again = await store.claim(1, ["folded"], None, "worker-a", 30, [first.id], [1])
    assert again.completed == {first_id}
    assert again.jobs == []
    # Another worker's completion of the same attempt changes nothing.
    other = await store.claim(1, ["folded"], None, "worker-b", 30, [second.id], [1])
    assert other.completed == set()
    rows = await pg.fetch(
        f"SELECT id, state::text, worker_id FROM {schema}.background_jobs ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        (first_id, "completed", "worker-a"),
        (second_id, "running", "worker-a"),
        (third_id, "running", "worker-a"),
    ]


async def test_claim_reads_its_lane_in_order_with_30000_jobs_just_queued(
    app: aqueue.App, pg: asyncpg.Connection
) -> None:
    """Right after a bulk enqueue the statistics say the tables are (nearly) empty; a planner
    left to itself may scan every ready row and sort. The candidate lookup inside the claim
    function must read the lane's index in order and stop after the 16 rows it wants. Its
    plan is read with auto_explain, which logs nested statements."""
    store = app._store
    assert isinstance(store, Store)
    for _ in range(3):
        await app.enqueue_many("bulk", [Task()] * 10_000)
    async with logged_plans(pg, "auto_explain.log_analyze = on") as plans:
        args = store.claim_args(16, ["bulk"], None, "w", 30.0, claim_no=1)
        rows = await pg.fetch(store._sql["claim"], *args)
    assert len([r for r in rows if r["kind"] == "j"]) == 16
    (lookup,) = [p for p in plans if "LIMIT lims[g.grp]" in p]
    assert "Index Scan using jobs_ready_lane_idx" in lookup, lookup
    scan = lookup.split("Index Scan using jobs_ready_lane_idx")[1]
    # Stopped after the 16 rows it wanted (PostgreSQL 18 prints rows=16.00).
    assert re.search(r"actual time=\S+ rows=16(\.00)? loops=1", scan), scan
    assert "Bitmap" not in lookup, lookup
    assert "Seq Scan on jobs_ready" not in lookup, lookup


async def test_a_cursor_stops_short_of_a_row_another_claimer_held_and_gave_back(
    app: aqueue.App, pg: asyncpg.Connection, dsn: str, schema: str
) -> None:
    """Another claimer holds a row's lock (SKIP LOCKED skips it), then rolls back: the row is
    still there and no NOTIFY says so. The next claim finds it, because the cursor stopped
    short of it instead of moving past it with the rows this claim took."""
    store = app._store
    assert isinstance(store, Store)
    held_id, *rest = await app.enqueue_many("held", [Task(), Task(), Task()])
    other = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute(f"SELECT 1 FROM {schema}.jobs_ready WHERE id = $1 FOR UPDATE", held_id)
        first = await store.claim(10, ["held"], None, "worker-a", 30, cursors={})
        assert [job.id for job in first.jobs] == rest
        assert first.next_due_s is not None
        assert first.next_due_s <= 0  # one was locked
        await tx.rollback()
    finally:
        await other.close()
    second = await store.claim(10, ["held"], None, "worker-a", 30, cursors=first.cursors)
    assert [job.id for job in second.jobs] == [held_id]
    # And then the cursor moves on: nothing is claimed twice.
    third = await store.claim(10, ["held"], None, "worker-a", 30, cursors=second.cursors)
    assert third.jobs == []


async def test_writes_to_running_attempts_find_them_by_id_not_by_worker(
    app: aqueue.App, pg: asyncpg.Connection
) -> None:
    """complete, fail, retry and heartbeat name a worker and the ids of its attempts. A plan
    that looks the worker up in jobs_running's worker index reads one entry for every job the
    worker ever ran until a VACUUM removes the dead ones (87,000 entries a statement were seen
    in the soak's first minute at 3,000 jobs/s, before the first autovacuum; without end while
    the horizon is held). Whatever plan the statistics favour, the generic plan (what a
    prepared statement and plpgsql settle on) must find the attempts by id."""
    store = app._store
    assert isinstance(store, Store)
    done_id, failed_id, handed_back_id, beating_id = await app.enqueue_many(
        "looked_up", [Task()] * 4
    )
    claimed = (await store.claim(4, ["looked_up"], None, "worker-a", 30)).jobs
    assert [job.id for job in claimed] == [done_id, failed_id, handed_back_id, beating_id]
    async with logged_plans(pg, "plan_cache_mode = force_generic_plan") as plans:
        claim_args = store.claim_args(
            1, ["looked_up"], None, "worker-a", 30.0, [done_id], [1], claim_no=2
        )
        claim = await pg.fetch(store._sql["claim"], *claim_args)
        failed = await pg.fetch(
            store._sql["fail"], [failed_id], [1], [60.0], ["boom"], [False], "worker-a"
        )
        handed_back = await pg.fetch(store._sql["release"], [handed_back_id], [1], "worker-a")
        lost = await pg.fetch(store._sql["heartbeat"], [beating_id], [1], "worker-a", 30.0)
    (summary,) = [r for r in claim if r["kind"] == "s"]
    assert summary["completed"] == [done_id]
    assert [tuple(r) for r in failed] == [(failed_id, "error")]
    assert [r[0] for r in handed_back] == [handed_back_id]
    assert lost == []  # still running under worker-a
    running = [p for p in plans if "jobs_running" in p]
    assert len(running) >= 4, plans
    assert not [p for p in running if "jobs_running_worker_idx" in p], running


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


async def test_rescue_reads_no_running_row_when_no_lease_has_expired(
    app: aqueue.App, pg: asyncpg.Connection, schema: str
) -> None:
    """The rescue runs every few seconds in every worker and almost always finds no expired
    lease. Its join of expired workers to jobs_running must then read nothing of jobs_running:
    a hash join fetched its first outer row before finding the expired side empty, walking
    every dead row jobs had left in jobs_running while the horizon was held (the cost curves:
    0.26 ms at 0 jobs processed, 16 ms at 475,000; one page per ~60 jobs). Here 200 finished
    attempts lie in front of the one running, and the plan is provoked: generic, hash joins
    only."""
    store = app._store
    assert isinstance(store, Store)
    finished = await app.enqueue_many("rescued_not", [Task()] * 200)
    claimed = (await store.claim(200, ["rescued_not"], None, "worker-a", 30)).jobs
    assert [job.id for job in claimed] == finished
    (running_id,) = await app.enqueue_many("rescued_not", [Task()])
    claim = await store.claim(1, ["rescued_not"], None, "worker-a", 30, finished, [1] * 200)
    assert claim.completed == set(finished)
    assert [job.id for job in claim.jobs] == [running_id]
    async with rolled_back(
        pg,
        "plan_cache_mode = force_generic_plan",
        "enable_nestloop = off",
        "enable_mergejoin = off",
    ):
        # The prepared statement outlives the rollback and ends with this test's connection.
        await pg.execute(f"PREPARE rescue_plan(text) AS {store._sql['rescue']}")
        explained = await pg.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE rescue_plan('worker-b')"
        )
    plan = json.loads(explained)[0]["Plan"]
    scans = [
        n
        for n in _nodes(plan)
        if n.get("Relation Name") == "jobs_running" and n["Node Type"].endswith("Scan")
    ]
    assert scans, plan
    assert all(n["Actual Loops"] == 0 for n in scans), scans
    # Nothing was rescued: worker-a's lease runs, and its job still runs under it.
    states = await pg.fetch(
        f"SELECT id, state::text FROM {schema}.background_jobs WHERE state = 'running'"
    )
    assert [tuple(r) for r in states] == [(running_id, "running")]


async def test_a_claim_with_queues_and_limits_reads_indexes_only(
    app: aqueue.App, pg: asyncpg.Connection
) -> None:
    """Two slot groups, a type limited in concurrency and rate beside 20,000 jobs of another
    queue and 20,000 of another type: the candidates come from the lanes' index, the running
    count from jobs_running_type_idx, the limit row from its primary key; nothing is read
    whole."""
    store = app._store
    assert isinstance(store, Store)
    for _ in range(2):
        await app.enqueue_many("lim", [Task()] * 10_000, queue="other")
        await app.enqueue_many("foreign", [Task()] * 10_000, queue="a")
    await app.enqueue_many("lim", [Task()] * 50, queue="a")
    await app.enqueue_many("free", [Task()] * 50, queue="b")
    limits = [Limit("lim", 3, 10, 1.0)]
    # One of lim starts: two places are left of its three.
    first = await store.claim(
        [1, 4], ["lim", "free"], ["a", "b"], "w", 30.0, queue_groups=[1, 2], limits=limits
    )
    assert sorted(j.job_type for j in first.jobs) == ["free"] * 4 + ["lim"]
    async with logged_plans(pg, "auto_explain.log_analyze = on") as plans:
        args = store.claim_args(
            [4, 4],
            ["lim", "free"],
            ["a", "b"],
            "w",
            30.0,
            queue_groups=[1, 2],
            claim_no=2,
            limits=limits,
        )
        rows = await pg.fetch(store._sql["claim"], *args)
    claimed = [(r["job_type"], r["queue"]) for r in rows if r["kind"] == "j"]
    # lim: 3 at once, 1 running already; free fills its own group.
    assert sorted(claimed) == [("free", "b")] * 4 + [("lim", "a")] * 2
    text = "\n".join(plans)
    assert "jobs_running_type_idx" in text
    assert "job_limits_pkey" in text
    for table in ("jobs_ready", "jobs_running", "job_limits", "jobs_delayed", "lanes"):
        assert f"Seq Scan on {table}" not in text, text
