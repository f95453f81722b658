"""The cost curves' report: markdown tables and, when matplotlib is installed, PNGs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OPERATIONS = ("claim", "next_due", "rescue", "pickup")
EXPLAINED = ("claim", "next_due", "rescue")
LABELS = {
    "claim": "claim",
    "next_due": "next-due lookup",
    "rescue": "rescue",
    "pickup": "pickup (enqueue to start)",
}
KINDS = {
    "queue": "due jobs of the served type in a queue the worker does not serve",
    "job_type": "due jobs in the served queue of a job type no worker has",
}


def _cell(figure: dict[str, float]) -> str:
    return f"{figure['p50']:.2f} ({figure['min']:.2f}-{figure['max']:.2f})"


def _table(points: list[dict[str, Any]], x: str, x_title: str) -> list[str]:
    head = [x_title, *(f"{LABELS[op]} ms" for op in OPERATIONS)]
    head += [f"{op} buffers" for op in EXPLAINED]
    head += ["dead tuples", "autovacuum runs", "relations MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for point in points:
        cells = [f"{point[x]:,}", *(_cell(point["ms"][op]) for op in OPERATIONS)]
        cells += [f"{point['buffers'][op]:,}" for op in EXPLAINED]
        facts = point["facts"]
        cells += [f"{facts['dead']:,}", str(facts["autovacuums"]), f"{facts['relations_mib']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    facts, plan = result["machine"], result["plan"]
    lines = [
        "# aqueue cost curves",
        "",
        f"{facts['date']}: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, "
        f"{facts['os']}; Python {facts['python']}, PostgreSQL {facts['postgres']}; "
        f"aqueue {facts['versions']['aqueue']}, asyncpg {facts['versions']['asyncpg']}.",
        f"Load average at start {_load(facts['loadavg_start'])}, "
        f"at end {_load(facts.get('loadavg_end'))}.",
        "A throwaway cluster from the embedded binaries: "
        + ", ".join(f"{k} = {v}" for k, v in facts["settings"].items())
        + " (autovacuum at PostgreSQL's defaults).",
        "",
        f"Each figure: median (min-max) of {plan['repeat']} runs, pickup of "
        f"{plan['pickup_repeat']}; buffers: shared hit + read of one run under EXPLAIN "
        "(ANALYZE, BUFFERS), rolled back (the second of two, so that planning the functions "
        "it calls is not counted). Claim: the one due job of the served type; next-due "
        "lookup: none due, one an hour away; rescue: no lease expired; pickup: an idle "
        "in-process worker (concurrency 16), enqueue call to handler start, its NOTIFY "
        "and its own claim included.",
        "",
        "## Held horizon: jobs processed while a transaction holds the xmin horizon",
        "",
        "An idle transaction with an xid stays open throughout: vacuum can remove nothing. "
        "Dead tuples, autovacuum runs: pg_stat_user_tables, summed over the schema.",
        "",
        *_table(result["held_horizon"], "processed", "jobs processed"),
    ]
    for kind, points in result["foreign_rows"].items():
        lines += [
            "",
            f"## Foreign rows: {KINDS[kind]}",
            "",
            "Fresh schema; ANALYZE after inserting.",
            "",
            *_table(points, "foreign", "foreign due rows"),
        ]
    return "\n".join(lines) + "\n"


def _load(load: Any) -> str:
    return "-" if load is None else " ".join(f"{v:.2f}" for v in load)


def plots(result: dict[str, Any], out_dir: Path) -> list[str]:
    """held_horizon.png, foreign_rows.png and buffers.png in ``out_dir``; returns messages
    (one saying why there are none when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return ["matplotlib is not installed: no PNGs (the tables are in curves.md)"]

    plain = matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
    # Of the minor ticks between powers of ten, label only 2 and 5: legible over decades.
    two_five = matplotlib.ticker.FuncFormatter(
        lambda v, _pos: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""
    )
    thousands = matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:,.0f}")
    held = result["held_horizon"]
    foreign = result["foreign_rows"]
    first = min((p["foreign"] for ps in foreign.values() for p in ps if p["foreign"]), default=1)
    styles = {"queue": "-", "job_type": "--"}

    def y_scale(ax: Any, ylabel: str) -> None:
        if "ms" in ylabel:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=1)  # log, with 0 buffers still on the axis
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(two_five)

    def held_axes(ax: Any, title: str, ylabel: str) -> None:
        ax.set(title=title, xlabel="jobs processed under a held horizon", ylabel=ylabel)
        ax.xaxis.set_major_formatter(thousands)
        y_scale(ax, ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()

    def foreign_axes(ax: Any, title: str, ylabel: str) -> None:
        ax.set(title=title, xlabel="foreign due rows (0, then log)", ylabel=ylabel)
        ax.set_xscale("symlog", linthresh=first)  # log, with 0 still on the axis
        ax.xaxis.set_major_formatter(thousands)
        y_scale(ax, ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")

    fig, ax = plt.subplots(figsize=(8, 5))
    xs = [p["processed"] for p in held]
    for op in OPERATIONS:
        ax.plot(xs, [p["ms"][op]["p50"] for p in held], marker="o", label=LABELS[op])
    held_axes(ax, "held horizon: median time per operation", "ms (log)")
    fig.tight_layout()
    fig.savefig(out_dir / "held_horizon.png", dpi=120)

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, op in enumerate(OPERATIONS):
        for kind, points in foreign.items():
            ax.plot(
                [p["foreign"] for p in points],
                [p["ms"][op]["p50"] for p in points],
                styles[kind],
                color=f"C{i}",
                marker="o",
                label=f"{LABELS[op]}, foreign {kind.replace('_', ' ')}",
            )
    foreign_axes(ax, "foreign due rows: median time per operation", "ms (log)")
    fig.tight_layout()
    fig.savefig(out_dir / "foreign_rows.png", dpi=120)

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for i, op in enumerate(EXPLAINED):
        left.plot(xs, [p["buffers"][op] for p in held], marker="o", label=LABELS[op])
        for kind, points in foreign.items():
            right.plot(
                [p["foreign"] for p in points],
                [p["buffers"][op] for p in points],
                styles[kind],
                color=f"C{i}",
                marker="o",
                label=f"{LABELS[op]}, foreign {kind.replace('_', ' ')}",
            )
    held_axes(left, "held horizon: buffers per operation", "shared hit + read (log above 1)")
    foreign_axes(
        right, "foreign due rows: buffers per operation", "shared hit + read (log above 1)"
    )
    fig.tight_layout()
    fig.savefig(out_dir / "buffers.png", dpi=120)
    plt.close("all")
    return []


def main(argv: list[str]) -> int:
    """``python -m benchmarks.curves_report DIR``: curves.md and the PNGs again from
    DIR/curves.json."""
    out_dir = Path(argv[0])
    result = json.loads((out_dir / "curves.json").read_text())
    (out_dir / "curves.md").write_text(markdown(result))
    for message in plots(result, out_dir):
        print(message, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
