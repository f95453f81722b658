"""Run aqueue's benchmarks and print a table of medians (min-max), with machine facts.

python -m benchmarks                   # the embedded server; 5 runs of each workload
python -m benchmarks --dsn postgresql://postgres@127.0.0.1:5432/postgres
python -m benchmarks --smoke           # small sizes, one run each (about a minute)
python -m benchmarks --scale           # also 10k / 100k / 1M queued and 5M completed
python -m benchmarks --compare         # also PgQueuer and procrastinate, if installed
python -m benchmarks --only drain_c16 wakeup --json results.json
python -m benchmarks --curves          # cost curves on a throwaway cluster (benchmarks/curves.py)
python -m benchmarks --soak            # the soak benchmark instead (--soak --help: its options)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import anyio

from . import ceiling, peers, report, scale
from . import workloads as w
from .harness import machine_facts, open_bench

Run = Any  # async (Bench, size) -> Figures


@dataclass
class Workload:
    what: str
    kind: str  # rate | latency | idle
    aqueue: Run
    full: int
    smoke: int
    target: str = ""
    ceiling: Run | None = None
    peers: dict[str, Run] = field(default_factory=dict)
    scale: bool = False  # only with --scale


WORKLOADS = {
    "enqueue_single": Workload(
        "enqueue one by one, each committed (jobs/s)", "rate", w.enqueue_single, 5_000, 500,
        "≥ 1,800", ceiling.insert_one,
        {
            "pgqueuer": peers.pgqueuer_enqueue_single,
            "procrastinate": peers.procrastinate_enqueue_single,
        },
    ),
    "enqueue_bulk": Workload(
        "enqueue_many, 10,000 per call (jobs/s)", "rate", w.enqueue_bulk, 200_000, 20_000,
        "≥ 60,000", ceiling.insert_many,
        {
            "pgqueuer": peers.pgqueuer_enqueue_bulk,
            "procrastinate": peers.procrastinate_enqueue_bulk,
        },
    ),
    "drain_c16": Workload(
        "drain the queued jobs, concurrency 16 (jobs/s)", "rate", w.drain_c16, 50_000, 5_000,
        "≥ 6,000", ceiling.drain_c16,
        {"pgqueuer": peers.pgqueuer_drain_c16, "procrastinate": peers.procrastinate_drain_c16},
    ),
    "drain_c64": Workload(
        "drain the queued jobs, concurrency 64 (jobs/s)", "rate", w.drain_c64, 10_000, 5_000,
        "≥ 12,000", ceiling.drain_c64,
        {"pgqueuer": peers.pgqueuer_drain_c64, "procrastinate": peers.procrastinate_drain_c64},
    ),
    "drain_queues_2x8": Workload(
        "drain, two queues of 8 slots each (jobs/s)", "rate", w.drain_queues_2x8, 50_000,
        5_000, "within 10% of drain_c16",
    ),
    "drain_beside_limited": Workload(
        "drain c16 beside a type limited to 4 at once (1 job in 11): the other type's jobs/s",
        "rate",
        w.drain_beside_limited, 50_000, 5_000, "within 10% of drain_c16",
    ),
    "io_c256": Workload(
        "10 ms I/O handlers, concurrency 256 (jobs/s)", "rate", w.io_c256,
        50_000, 5_000, "≥ 10,000",
    ),
    "wakeup": Workload(
        "idle worker, jobs 20 ms apart: enqueue-commit to start", "latency", w.wakeup, 500, 30,
        "p50 ≤ 2 ms, p99 ≤ 5 ms",
    ),
    "steady_1000": Workload(
        "1,000 jobs/s steady: enqueue-commit to start", "latency", w.steady_1000,
        20_000, 2_000, "p50 ≤ 3 ms, p99 ≤ 20 ms",
    ),
    "idle": Workload(
        "idle worker, default settings, seconds: statements", "idle", w.idle, 30, 2, "< 1/s",
    ),
    "queued_50k": Workload(
        "scale: drain with 50,000 queued (jobs/s; the baseline)", "rate", scale.queued_50k,
        1, 1, "", scale=True,
    ),
    "queued_10k": Workload(
        "scale: drain with 10,000 queued (jobs/s)", "rate", scale.queued_10k, 1, 1, "", scale=True
    ),
    "queued_100k": Workload(
        "scale: drain with 100,000 queued, first 50,000 (jobs/s)", "rate", scale.queued_100k,
        1, 1, "", scale=True,
    ),
    "queued_1m": Workload(
        "scale: drain with 1,000,000 queued, first 50,000 (jobs/s)", "rate", scale.queued_1m,
        1, 1, "within 20% of 50,000 queued", scale=True,
    ),
    "claim_beside_1m": Workload(
        "scale: one claim (2 queues, a limited type) beside 1,000,000 other jobs (ms)",
        "latency", scale.claim_beside_1m, 1, 1, "an index range scan: < 2 ms", scale=True,
    ),
    "completed_5m": Workload(
        "scale: drain 50,000 beside 5,000,000 completed (jobs/s)", "rate", scale.completed_5m,
        1, 1, "within 20% of 50,000 queued", scale=True,
    ),
}  # fmt: skip


def main() -> int:
    if "--soak" in sys.argv[1:]:
        # Its own options (python -m benchmarks --soak --help); lazily imported.
        from . import soak

        return soak.main([arg for arg in sys.argv[1:] if arg != "--soak"])
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--dsn", default=os.environ.get("AQUEUE_BENCH_DSN"))
    parser.add_argument("--smoke", action="store_true", help="small sizes, one run each")
    parser.add_argument("--repeat", type=int, help="runs of each workload (default 5)")
    parser.add_argument("--scale", action="store_true", help="also the scale workloads")
    parser.add_argument("--compare", action="store_true", help="also PgQueuer, procrastinate")
    parser.add_argument("--explain", action="store_true", help="print the claim's plans")
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), metavar="NAME")
    parser.add_argument("--json", dest="json_path", help="also write the results here")
    parser.add_argument("--curves", action="store_true", help="only the cost curves")
    parser.add_argument("--curves-smoke", action="store_true", help="small, quick curves")
    parser.add_argument("--curves-max", type=int, help="jobs processed, held horizon (500,000)")
    parser.add_argument("--curves-out", help="folder (benchmarks/results/curves-<UTC time>)")
    parser.add_argument("--soak", action="store_true", help="the soak benchmark instead")
    args = parser.parse_args()
    if args.curves or args.curves_smoke:
        from . import curves

        return curves.main(args)
    logging.basicConfig(level=logging.WARNING)
    repeat = args.repeat or (1 if args.smoke else 5)
    names = args.only or [n for n, wl in WORKLOADS.items() if args.scale or not wl.scale]
    compare = peers.available() if args.compare else []
    if args.compare and not compare:
        print("--compare: neither pgqueuer nor procrastinate is installed", file=sys.stderr)

    async def measure(bench: Any, run: Run, size: int, label: str) -> report.Summary:
        runs = []
        for i in range(1 if args.smoke else repeat):
            runs.append(await run(bench, size))
            print(f"  {label} run {i + 1}: {runs[-1]}", file=sys.stderr, flush=True)
        return report.summarize(runs)

    async def run_all() -> dict[str, Any]:
        results: dict[str, Any] = {}
        async with open_bench(args.dsn) as bench:
            facts = await machine_facts(bench.pg)
            for name in names:
                wl = WORKLOADS[name]
                size = wl.smoke if args.smoke else wl.full
                result: dict[str, Any] = {"what": wl.what, "kind": wl.kind, "size": size}
                result["target"] = wl.target
                result["aqueue"] = await measure(bench, wl.aqueue, size, name)
                if wl.ceiling is not None:
                    result["ceiling"] = await measure(bench, wl.ceiling, size, name + " ceiling")
                result["peers"] = {
                    peer: await measure(bench, wl.peers[peer], size, f"{name} {peer}")
                    for peer in compare
                    if peer in wl.peers
                }
                results[name] = result
            plans = {}
            if args.explain:
                plans["1,000,000 queued"] = await scale.explain(bench, 1_000_000, 0)
                plans["50,000 queued, 5,000,000 completed"] = await scale.explain(
                    bench, 50_000, 5_000_000
                )
            await bench.reset()
        return {"machine": facts, "repeat": repeat, "results": results, "plans": plans}

    out = anyio.run(run_all, backend="asyncio", backend_options={"use_uvloop": True})
    facts = out["machine"]
    print(
        f"\n{facts['date']}: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, "
        f"{facts['os']}; Python {facts['python']}, PostgreSQL {facts['postgres']}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()))
    print(f"medians of {out['repeat']} run(s), (min-max)\n")
    print(report.table(out["results"]))
    print("\n" + report.resources(out["results"]))
    for title, plan in out["plans"].items():
        print(f"\nclaim plan, {title}:\n" + "\n".join(plan))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
