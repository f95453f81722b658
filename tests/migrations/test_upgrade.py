"""Upgrading an installation with jobs in it: migration 0004 moves every job of the single
table into the per-state tables, and they carry on (pending run, delayed wait, running stay
with their worker's lease, finished stay finished)."""

from __future__ import annotations

import asyncpg

import aqueue
from aqueue._store.sql import raw_migrations
from aqueue._store.store import Store
from tests.payloads_pb2 import Task

COLUMNS = "id, job_type, queue, state::text, try_count, max_tries, priority, payload, failure_info"


async def test_an_upgrade_moves_every_job_over_and_they_carry_on(
    dsn: str, pg: asyncpg.Connection, schema: str
) -> None:
    app = aqueue.App(dsn, schema=schema, poll_interval_s=2.0, maintenance_interval_s=0.2)

    @app.job(payload=Task)
    async def old(payload: Task) -> None: ...

    try:
        store = await app._get_store()
        assert isinstance(store, Store)
        assert await store.migrate(raw_migrations()[:3]) == [1, 2, 3]
        payload = Task(label="from 0003").SerializeToString()
        # The seed's single table, as a running installation has it.
        await pg.execute(
            f"""INSERT INTO {schema}.background_jobs (job_type, queue, state, next_attempt_after,
                try_count, max_tries, priority, payload, failure_info, worker_id,
                lease_expires_at)
            VALUES
                ('old', 'default', 'pending', now(), 0, 5, 10, $1, NULL, NULL, NULL),
                ('old', 'default', 'pending', now() + interval '1 hour', 0, 5, 10, $1, NULL,
                 NULL, NULL),
                ('old', 'default', 'error', now() - interval '1 second', 1, 5, 20, $1,
                 'ValueError: once', 'w-old', NULL),
                ('old', 'default', 'running', now(), 1, 5, 10, $1, NULL, 'w-old',
                 now() + interval '1 second'),
                ('old', 'default', 'completed', now(), 1, 5, 10, $1, NULL, 'w-old', NULL),
                ('old', 'default', 'failed', now(), 5, 5, 10, $1, 'ValueError: always', 'w-old',
                 NULL),
                ('old', 'other', 'cancelled', now(), 0, 5, 10, $1, NULL, NULL, NULL)""",
            payload,
        )
        leased = f"SELECT lease_expires_at FROM {schema}.background_jobs WHERE state = 'running'"
        lease = await pg.fetchval(leased)
        before = [
            tuple(r)
            for r in await pg.fetch(f"SELECT {COLUMNS} FROM {schema}.background_jobs ORDER BY id")
        ]
        assert await app.migrate() == [m.version for m in raw_migrations()[3:]]
        after = [
            tuple(r)
            for r in await pg.fetch(f"SELECT {COLUMNS} FROM {schema}.background_jobs ORDER BY id")
        ]
        assert after == before
        ids = [row[0] for row in before]
        assert await pg.fetchval(leased) == lease  # the running job keeps its lease
        new_id = await app.enqueue(old, Task())
        assert new_id > max(ids)
        # A worker runs what is due, rescues the running job once its lease ran out (another
        # worker's: w-old), and leaves the delayed one.
        async with app.worker() as worker:
            await worker.wait_until(lambda s: s.completed == 4)
        states = {
            r[0]: (r[1], r[2])
            for r in await pg.fetch(
                f"SELECT id, state::text, try_count FROM {schema}.background_jobs"
            )
        }
        assert states == {
            ids[0]: ("completed", 1),
            ids[1]: ("pending", 0),
            ids[2]: ("completed", 2),
            ids[3]: ("completed", 2),
            ids[4]: ("completed", 1),
            ids[5]: ("failed", 5),
            ids[6]: ("cancelled", 0),
            new_id: ("completed", 1),
        }
    finally:
        await app.close()
