"""A producer that never imports the handlers queues by declaration: the job lands where
the declaration says, and a worker bound to the same declaration runs it."""

from __future__ import annotations

import asyncpg

import aqueue
from tests.payloads_pb2 import Task

send_mail = aqueue.declare("send_mail", payload=Task, queue="mail", priority=30, max_tries=7)


async def rows(pg: asyncpg.Connection, schema: str, ids: list[int]) -> list[tuple[object, ...]]:
    found = await pg.fetch(
        f"SELECT job_type, queue, priority, max_tries, state::text "
        f"FROM {schema}.background_jobs WHERE id = ANY($1) ORDER BY id",
        ids,
    )
    return [tuple(row) for row in found]


async def test_declared_jobs_land_in_their_queue_and_a_queue_worker_runs_them(
    dsn: str, schema: str, app: aqueue.App, pg: asyncpg.Connection
) -> None:
    assert len(app.registry) == 0  # the producer registers no handler
    ids = [await app.enqueue(send_mail, Task(n=1))]
    ids += await app.enqueue_many(send_mail, [Task(n=2), Task(n=3)])
    assert await rows(pg, schema, ids) == [("send_mail", "mail", 30, 7, "pending")] * 3

    ran: list[int] = []
    async with aqueue.App(dsn, schema=schema) as worker_app:

        @worker_app.job(send_mail)
        async def deliver(payload: Task) -> None:
            ran.append(payload.n)

        async with worker_app.worker(queues=["mail"]) as worker:
            await worker.wait_processed(3)
    assert sorted(ran) == [1, 2, 3]
    assert await rows(pg, schema, ids) == [("send_mail", "mail", 30, 7, "completed")] * 3


async def test_a_bare_name_takes_the_table_defaults_not_the_handlers(
    app: aqueue.App, schema: str, pg: asyncpg.Connection
) -> None:
    # This process registers no handler for it: the declaration's options are unknown here.
    job_id = await app.enqueue("send_mail", Task())
    assert await rows(pg, schema, [job_id]) == [("send_mail", "default", 10, 5, "pending")]
    # Explicit options still win over the declaration's.
    job_id = await app.enqueue(send_mail, Task(), queue="urgent", priority=99, max_tries=1)
    assert await rows(pg, schema, [job_id]) == [("send_mail", "urgent", 99, 1, "pending")]
