"""The results as a Markdown table (for the terminal and the README) and as JSON."""

from __future__ import annotations

import statistics
from typing import Any

Summary = dict[str, dict[str, float]]  # figure -> {"median", "min", "max"}


def summarize(runs: list[dict[str, float]]) -> Summary:
    return {
        key: {
            "median": statistics.median(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in runs[0]
    }


def _n(value: float) -> str:
    if value != value:  # nan
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(summary: Summary | None, key: str, unit: str = "") -> str:
    """``median (min-max)`` of one figure."""
    if not summary or key not in summary:
        return ""
    s = summary[key]
    spread = "" if s["min"] == s["max"] else f" ({_n(s['min'])}-{_n(s['max'])})"
    return f"{_n(s['median'])}{unit}{spread}"


def aqueue_cell(kind: str, summary: Summary | None) -> str:
    if kind == "rate":
        return cell(summary, "jobs_per_s")
    if kind == "latency":
        return f"p50 {cell(summary, 'p50_ms', ' ms')}<br>p99 {cell(summary, 'p99_ms', ' ms')}"
    if kind == "idle":
        return cell(summary, "statements_per_s", "/s")
    return ""


def table(results: dict[str, Any]) -> str:
    """One row per workload: aqueue, target, the raw-SQL ceiling and aqueue's share of it,
    and the peers when they were run."""
    peers = sorted({p for r in results.values() for p in r.get("peers", {})})
    head = ["workload", "size", "aqueue", "target", "raw SQL ceiling", "aqueue / ceiling", *peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results.values():
        kind = result["kind"]
        aq = result.get("aqueue")
        ceiling = result.get("ceiling")
        share = ""
        if aq and ceiling:
            share = f"{aq['jobs_per_s']['median'] / ceiling['jobs_per_s']['median']:.0%}"
        row = [
            result["what"],
            f"{result['size']:,}" if result["size"] > 1 else "",
            aqueue_cell(kind, aq),
            result.get("target", ""),
            cell(ceiling, "jobs_per_s"),
            share,
            *(cell(result.get("peers", {}).get(p), "jobs_per_s") for p in peers),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def resources(results: dict[str, Any]) -> str:
    """The worker's memory and connections, where they were measured."""
    lines = []
    for result in results.values():
        aq = result.get("aqueue") or {}
        if "worker_peak_rss_mib" in aq:
            extra = ""
            if "worker_connections" in aq:
                extra = f", connections {cell(aq, 'worker_connections')}"
            if "left_behind" in aq:
                extra += f", left behind {cell(aq, 'left_behind')}"
            lines.append(
                f"- {result['what']}: peak RSS {cell(aq, 'worker_peak_rss_mib', ' MiB')}{extra}"
            )
    return "\n".join(lines)
