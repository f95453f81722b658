"""The raw-SQL ceiling: the cheapest SQL a queue could run per job on this database, with no
queue library and no handler, on a table of the seed's single-table layout (its own,
``ceiling_jobs``, beside aqueue's). Every aqueue figure can be read as a fraction of these.
The statements are in ``benchmarks/sql``."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import anyio
import asyncpg

from .app import SCHEMA
from .harness import Bench
from .workloads import ENQUEUE_CHUNK, Figures

_SQL = Path(__file__).parent / "sql"
_PAYLOAD = b""  # an empty protobuf message encodes to no bytes


@functools.cache
def statement(name: str) -> str:
    return (_SQL / f"{name}.sql").read_text().replace("{schema}", SCHEMA)


async def _reset(bench: Bench) -> None:
    await bench.reset()
    await bench.pg.execute(statement("ceiling_table"))


async def insert_one(bench: Bench, n: int) -> Figures:
    """Prepared INSERT, autocommit, one by one on one connection."""
    await _reset(bench)
    sql = statement("insert_one")
    await bench.pg.execute(sql, "noop", _PAYLOAD)
    start = time.perf_counter()
    for _ in range(n):
        await bench.pg.execute(sql, "noop", _PAYLOAD)
    return {"jobs_per_s": n / (time.perf_counter() - start)}


async def insert_many(bench: Bench, n: int) -> Figures:
    """INSERT ... SELECT FROM unnest(array), 10,000 rows per statement."""
    await _reset(bench)
    sql = statement("insert_many")
    payloads = [_PAYLOAD] * ENQUEUE_CHUNK
    calls = max(1, n // ENQUEUE_CHUNK)
    start = time.perf_counter()
    for _ in range(calls):
        await bench.pg.execute(sql, "noop", payloads)
    return {"jobs_per_s": calls * ENQUEUE_CHUNK / (time.perf_counter() - start)}


async def _drain(bench: Bench, n: int, batch: int, connections: int) -> Figures:
    await _reset(bench)
    sql_many = statement("insert_many")
    left = n
    while left > 0:
        await bench.pg.execute(sql_many, "noop", [_PAYLOAD] * min(left, ENQUEUE_CHUNK))
        left -= ENQUEUE_CHUNK
    await bench.pg.execute(f"ANALYZE {SCHEMA}.ceiling_jobs")  # the ceiling gets the best plan
    sql = statement("claim_complete")
    conns = [await asyncpg.connect(bench.dsn) for _ in range(connections)]
    try:

        async def loop(conn: asyncpg.Connection) -> None:
            ids: list[int] = []
            while True:
                rows = await conn.fetch(sql, ids, batch)
                if not rows and not ids:
                    return
                ids = [row[0] for row in rows]

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for conn in conns:
                tg.start_soon(loop, conn)
        elapsed = time.perf_counter() - start
    finally:
        for conn in conns:
            await conn.close()
    rows = await bench.pg.fetch(
        f"SELECT state::text, count(*) FROM {SCHEMA}.ceiling_jobs GROUP BY state"
    )
    counts = {row[0]: row[1] for row in rows}
    if counts.get("completed", 0) != n:
        raise RuntimeError(f"expected {n} completed jobs, found {counts}")
    return {"jobs_per_s": n / elapsed}


async def drain_c16(bench: Bench, n: int) -> Figures:
    """Claim 16 + complete the previous 16 in one statement, on one connection."""
    return await _drain(bench, n, 16, 1)


async def drain_c64(bench: Bench, n: int) -> Figures:
    """Claim 64 + complete the previous 64 in one statement, on two connections."""
    return await _drain(bench, n, 64, 2)
