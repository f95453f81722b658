"""Every statement that adds rows to jobs_ready announces them: one NOTIFY per lane,
'<queue> <lane_id> <lowest seq added>', delivered at commit. Workers' cursors rely on it (a
row committed behind a cursor is found only through its NOTIFY or, seconds later, the
look-behind), so each way into jobs_ready is checked here against the rows it added."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import asyncpg

import aqueue
from aqueue._store.sql import channel_for
from aqueue._store.store import Store
from tests.helpers import sqlalchemy_dsn
from tests.payloads_pb2 import Task

Heard = Callable[[Callable[[], Awaitable[object]]], Awaitable[list[str]]]


@contextlib.asynccontextmanager
async def listening(dsn: str, schema: str) -> AsyncIterator[Heard]:
    """``heard(action)``: runs ``action`` and returns the notifications of the schema's
    channel it caused, in order (a marker NOTIFY sent after it says when all have come)."""
    channel = channel_for(schema)
    conn = await asyncpg.connect(sqlalchemy_dsn(dsn, driver=None))
    received: list[str] = []
    arrived = anyio.Event()
    markers = itertools.count()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        received.append(payload)
        arrived.set()

    await conn.add_listener(channel, on_notify)

    async def heard(action: Callable[[], Awaitable[object]]) -> list[str]:
        nonlocal arrived
        received.clear()
        await action()
        marker = f"!marker {next(markers)}"
        await conn.execute("SELECT pg_notify($1, $2)", channel, marker)
        with anyio.fail_after(10):
            while marker not in received:
                arrived = anyio.Event()
                await arrived.wait()
        return received[: received.index(marker)]

    try:
        yield heard
    finally:
        await conn.close()


async def lowest_seqs(pg: asyncpg.Connection, schema: str, ids: list[int]) -> list[str]:
    """The announcements the rows ``ids`` of jobs_ready call for, one per lane."""
    rows = await pg.fetch(
        f"SELECT queue, lane_id, min(seq) FROM {schema}.jobs_ready WHERE id = ANY($1) "
        "GROUP BY queue, lane_id ORDER BY lane_id",
        ids,
    )
    assert rows, f"none of {ids} is in jobs_ready"
    return [f"{queue} {lane} {seq}" for queue, lane, seq in rows]


async def test_each_way_into_jobs_ready_announces_its_lanes_lowest_seq(
    app: aqueue.App, pg: asyncpg.Connection, dsn: str, schema: str
) -> None:
    store = app._store
    assert isinstance(store, Store)
    async with listening(dsn, schema) as heard:
        # enqueue, one job due now: enqueue.sql's plain INSERT.
        ids: list[int] = []

        async def one() -> None:
            ids.append(await app.enqueue("mail", Task(label="one")))

        assert await heard(one) == await lowest_seqs(pg, schema, ids)

        # enqueue_many, and enqueue with a past run_at: the function enqueue.
        many: list[int] = []

        async def several() -> None:
            many.extend(await app.enqueue_many("mail", [Task(), Task(), Task()], priority=3))

        assert await heard(several) == await lowest_seqs(pg, schema, many)

        # An SQL INSERT into the view.
        async def from_sql() -> None:
            await pg.execute(
                f"INSERT INTO {schema}.background_jobs (job_type, queue, payload) "
                "VALUES ('sms', 'texts', $1)",
                Task().SerializeToString(),
            )

        got = await heard(from_sql)
        sms = [await pg.fetchval(f"SELECT id FROM {schema}.jobs_ready WHERE job_type = 'sms'")]
        assert got == await lowest_seqs(pg, schema, sms)

        # A job due later is announced by queue only (workers sleep until it is due)...
        later: list[int] = []

        async def delayed() -> None:
            later.append(await app.enqueue("mail", Task(), delay=3600))

        assert await heard(delayed) == ["default"]
        # ... and its lane once it is moved to jobs_ready: by an operator's UPDATE ...
        assert await heard(
            lambda: pg.execute(
                f"UPDATE {schema}.background_jobs SET next_attempt_after = now() WHERE id = $1",
                later[0],
            )
        ) == await lowest_seqs(pg, schema, later)

        # ... or by the claim's promote, once it is due.
        soon: list[int] = []

        async def delayed_again() -> None:
            soon.append(await app.enqueue("report", Task(), delay=3600))

        await heard(delayed_again)
        await pg.execute(
            f"UPDATE {schema}.jobs_delayed SET next_attempt_after = now() - interval '1 s'"
        )
        promoted = await heard(lambda: store.claim(0, ["nothing"], None, "w-a", 30))
        assert promoted == await lowest_seqs(pg, schema, soon)

        # Running attempts back in jobs_ready: fail (due again now), release, the claim's
        # lost-claims hand-back, rescue (each claim takes two jobs, the same two each time).
        claim = await store.claim(2, ["mail"], None, "w-a", 30, claim_no=1)
        failed = [job.id for job in claim.jobs]
        attempts = [job.attempt for job in claim.jobs]
        got = await heard(
            lambda: store.fail("w-a", failed, attempts, [0.0] * 2, ["boom"] * 2, [False] * 2)
        )
        assert got == await lowest_seqs(pg, schema, failed)

        claim = await store.claim(2, ["mail"], None, "w-a", 30, claim_no=2)
        handed = [job.id for job in claim.jobs]
        tries = [job.attempt for job in claim.jobs]
        got = await heard(lambda: store.release("w-a", handed, tries))
        assert got == await lowest_seqs(pg, schema, handed)

        claim = await store.claim(2, ["mail"], None, "w-a", 30, claim_no=3)
        lost = [job.id for job in claim.jobs]
        got = await heard(
            lambda: store.claim(0, ["mail"], None, "w-a", 30, claim_no=4, lost_claims=[3])
        )
        assert got == await lowest_seqs(pg, schema, lost)

        claim = await store.claim(2, ["mail"], None, "w-dead", 30, claim_no=1)
        rescued = [job.id for job in claim.jobs]
        await pg.execute(
            f"UPDATE {schema}.workers SET expires_at = now() - interval '1 s' "
            "WHERE worker_id = 'w-dead'"
        )
        got = await heard(lambda: store.rescue("w-a"))
        assert got == await lowest_seqs(pg, schema, rescued)
        assert all(len(ids) == 2 for ids in (failed, handed, lost, rescued))

        # A statement that adds nothing announces nothing.
        assert await heard(lambda: store.claim(0, ["mail"], None, "w-a", 30)) == []
        assert await heard(lambda: store.rescue("w-a")) == []
