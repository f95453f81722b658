"""What an idle fleet costs the database, by statement: ``python -m benchmarks.idle_fleet
--dsn DSN [--workers 1,8] [--seconds 20] [--interval-s 1]``.

N workers (each an App of its own, so each has its own pool, LISTEN connection and
statement counters, as N processes would) serve one empty schema for ``--seconds``; the
statements they ran are summed across the fleet, per name, and given per maintenance
interval. With one leader, rescue, retention (prune, prune_waiters) and the unserved count
run once per interval whatever N is; the others each try the leader's lock once per
interval (lead) and keep their own rows (worker_seen) and lane cursors (look_behind).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import time

import anyio
import asyncpg
from google.protobuf.empty_pb2 import Empty

import aqueue
from aqueue._store.dsn import asyncpg_dsn

SHOWN = ("lead", "rescue", "prune", "prune_waiters", "unserved_jobs", "look_behind", "claim")


async def measure(dsn: str, workers: int, seconds: float, interval_s: float) -> dict[str, float]:
    schema = f"idle_{secrets.token_hex(4)}"
    apps = [
        aqueue.App(dsn, schema=schema, maintenance_interval_s=interval_s, poll_interval_s=5.0)
        for _ in range(workers)
    ]
    for app in apps:

        @app.job(payload=Empty, name="nothing")
        async def nothing(payload: Empty) -> None: ...

    try:
        await apps[0].migrate()
        async with contextlib.AsyncExitStack() as stack:
            for app in apps:
                await stack.enter_async_context(app.worker())
            await anyio.sleep(2 * interval_s)  # every worker has started and tried to lead
            stores = [app._store for app in apps]
            before = [s.statistics().statements if s else {} for s in stores]
            t0 = time.monotonic()
            await anyio.sleep(seconds)  # the condition measured is time itself
            spent = time.monotonic() - t0
            after = [s.statistics().statements if s else {} for s in stores]
        per_interval: dict[str, float] = {}
        for b, a in zip(before, after, strict=True):
            for name, n in a.items():
                per_interval[name] = per_interval.get(name, 0) + n - b.get(name, 0)
        return {k: v * interval_s / spent for k, v in per_interval.items()}
    finally:
        for app in apps:
            await app.close()
        conn = await asyncpg.connect(asyncpg_dsn(dsn).replace("postgresql+asyncpg", "postgresql"))
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


async def main(args: argparse.Namespace) -> None:
    print(f"statements per maintenance interval ({args.interval_s} s), fleet total, idle:")
    print(f"{'workers':>8} " + " ".join(f"{name:>14}" for name in SHOWN) + f" {'all':>8}")
    for n in [int(x) for x in args.workers.split(",")]:
        rates = await measure(args.dsn, n, args.seconds, args.interval_s)
        print(
            f"{n:>8} "
            + " ".join(f"{rates.get(name, 0):>14.2f}" for name in SHOWN)
            + f" {sum(rates.values()):>8.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--workers", default="1,8")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval-s", type=float, default=1.0)
    anyio.run(main, parser.parse_args())
