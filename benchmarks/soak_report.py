"""The soak benchmark's judgement and outputs: a summary per phase with its goals (pass or
fail), the Markdown report, and the PNG plots (only with matplotlib installed)."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

# The goals (the words), in one place.
CLEAN_P50_MS = 5.0
CLEAN_P99_MS = 50.0
HELD_P99_MS = 100.0
RECOVERY_S = 60.0  # back to the clean p99 within this long after a held phase ends
SIZE_RATIO = 1.5  # sizes after 1 h at most this times their size after 10 min
SIZES_EARLY_S = 600.0
KEEP_UP_S = 1.0  # "completed = offered": at most this many seconds of jobs left behind
# The README's fresh-table drains (no-op jobs, 2026-11-29), which the burst's drain is put
# beside; at concurrency 32 it is expected to reach at least the concurrency-16 figure.
FRESH_DRAIN_C16 = 8_309.0
FRESH_DRAIN_C64 = 18_541.0

Result = dict[str, Any]


def _in_phase(samples: list[Result], phase: Result) -> list[Result]:
    """The samples whose 5 s interval lies mostly inside the phase."""
    return [s for s in samples if phase["start_s"] < s["t"] - 2.5 <= phase["end_s"]]


def _worst(samples: list[Result], key: str) -> float | None:
    values = [s[key] for s in samples if s[key] is not None]
    return max(values) if values else None


def _goal(text: str, value: float | None, limit: float, unit: str = "ms") -> Result:
    """A goal met or not; not judged (``pass`` None) without a value: no window to judge."""
    if value is None:
        return {"goal": text, "value": "no window to judge", "pass": None}
    return {"goal": text, "value": f"{value:,.1f} {unit}", "pass": value <= limit}


def _verdict(goals: list[Result]) -> bool | None:
    """False if any goal failed; None if none was judged."""
    judged = [g["pass"] for g in goals if g["pass"] is not None]
    return all(judged) if judged else None


def _mark(ok: bool | None, yes: str = "✓", no: str = "✗", neither: str = "n/a") -> str:
    return neither if ok is None else yes if ok else no


def _burst_drain(samples: list[Result], rate: float) -> Result:
    """Jobs completed a second while the backlog falls: over the 5 s samples with more than
    one second of jobs queued at both ends (the worker was busy all along); if it never
    lasted a whole sample, over those it ended in (a lower bound). Also the peak backlog, and
    when it was gone."""
    falling: list[float] = []
    partial: list[float] = []
    for before, after in itertools.pairwise(samples):
        if before["depth"] > rate and after["depth"] < before["depth"]:
            busy = after["depth"] > rate
            (falling if busy else partial).append(after["completed_per_s"])
    lower_bound = not falling and bool(partial)
    falling = falling or partial
    peak = max(samples, key=lambda s: s["depth"]) if samples else None
    empty_at = None
    if peak is not None:
        for s in samples:
            if s["t"] > peak["t"] and s["depth"] <= rate * KEEP_UP_S:
                empty_at = s["t"]
                break
    return {
        "drain_per_s": sum(falling) / len(falling) if falling else None,
        "falling_samples": len(falling),
        "lower_bound": lower_bound,
        "peak_depth": peak["depth"] if peak else 0,
        "peak_t": peak["t"] if peak else None,
        "backlog_gone_t": empty_at,
    }


def summarize(result: Result) -> Result:
    """Per phase: counts, rates, the worst rolling windows, the database's state at its end,
    and its goals; the burst's drain; sizes at 10 min against the end."""
    samples: list[Result] = result["samples"]
    phases: list[Result] = result["phases"]
    rate = result["config"]["rate"]
    summaries = []
    previous_kind = None
    autovacuum_before = 0
    for index, phase in enumerate(phases):
        mine = _in_phase(samples, phase)
        seconds = phase["end_s"] - phase["start_s"]
        offered = phase["offered_end"] - phase["offered_start"]
        completed = phase["completed_end"] - phase["completed_start"]
        # Every window of the run after the first full one (30 s).
        judged = [s for s in mine if s["t"] > 30.0 + 0.5]
        goals = []
        extra: Result = {}
        kind = phase["kind"]
        if kind != "burst":
            keeps_up = completed >= offered - phase["rate"] * KEEP_UP_S
            goals.append(
                {
                    "goal": "completed = offered",
                    "value": f"{completed:,} / {offered:,}",
                    "pass": keeps_up,
                }
            )
        if kind == "clean":
            goals.append(_goal(f"p50 ≤ {CLEAN_P50_MS:g} ms", _worst(judged, "p50_ms"), 5.0))
            goals.append(_goal(f"p99 ≤ {CLEAN_P99_MS:g} ms", _worst(judged, "p99_ms"), 50.0))
        elif kind == "held":
            goals.append(_goal(f"p99 ≤ {HELD_P99_MS:g} ms", _worst(judged, "p99_ms"), 100.0))
        elif kind == "recovery":
            back = next(
                (
                    s["t"] - phase["start_s"]
                    for s in mine
                    if s["p99_ms"] is not None and s["p99_ms"] <= CLEAN_P99_MS
                ),
                None,
            )
            extra["p99_back_under_50ms_s"] = back
            if previous_kind == "held":
                within = _goal(f"p99 < {CLEAN_P99_MS:g} ms within", back, RECOVERY_S, "s")
                if back is None and mine:
                    within.update(value="never", **{"pass": False})
                goals.append(within)
                later = [s for s in judged if s["t"] >= phase["start_s"] + RECOVERY_S]
                if later:
                    worst = _worst(later, "p99_ms")
                    goals.append(_goal(f"then p99 ≤ {CLEAN_P99_MS:g} ms", worst, CLEAN_P99_MS))
                    worst = _worst(later, "p50_ms")
                    goals.append(_goal(f"then p50 ≤ {CLEAN_P50_MS:g} ms", worst, CLEAN_P50_MS))
        elif kind == "burst":
            following = [phase, *phases[index + 1 : index + 2]]
            window = [s for p in following for s in _in_phase(samples, p)]
            drain = _burst_drain(window, rate)
            extra["burst"] = drain
            verified = result["verification"]["every_job_completed"]
            goals.append({"goal": "nothing lost, no error", "value": "", "pass": verified})
            if drain["drain_per_s"] is None:
                goals.append(
                    {"goal": "drain (no backlog formed)", "value": "kept up", "pass": True}
                )
            else:
                d = drain["drain_per_s"]
                # The fresh tables' drain of the same job by the same worker, measured before
                # the phases beside the producer at the base rate (as the backlog drains);
                # runs from before that: alone; before either: the README's no-op drain_c16.
                beside = (result.get("fresh_drain_beside_producer") or {}).get("jobs_per_s")
                alone = (result.get("fresh_drain") or {}).get("jobs_per_s")
                fresh = beside or alone or FRESH_DRAIN_C16
                what = (
                    "fresh drain beside the producer"
                    if beside
                    else "fresh drain"
                    if alone
                    else "fresh drain_c16"
                )
                value = f"{'≥ ' if drain['lower_bound'] else ''}{d:,.0f}/s ({d / fresh:.0%})"
                if beside and alone:
                    value += f"; alone {alone:,.0f}/s ({d / alone:.0%})"
                goals.append(
                    {
                        "goal": f"drain ≥ {what} {fresh:,.0f}/s",
                        "value": value,
                        # a lower bound below the bar judges nothing
                        "pass": d >= fresh or (None if drain["lower_bound"] else False),
                    }
                )
        end = mine[-1] if mine else None
        autovacuum_end = end["autovacuum_total"] if end else autovacuum_before
        summaries.append(
            {
                "phase": phase["name"],
                "kind": kind,
                "seconds": seconds,
                "rate": phase["rate"],
                "offered": offered,
                "completed": completed,
                "offered_per_s": offered / seconds if seconds else None,
                "completed_per_s": completed / seconds if seconds else None,
                "worst_p50_ms": _worst(judged, "p50_ms"),
                "worst_p99_ms": _worst(judged, "p99_ms"),
                "max_ms": _worst(mine, "max_ms"),
                "xmin_age_max": _worst(mine, "xmin_age"),
                "dead_end": end["dead_total"] if end else None,
                "bytes_end": end["bytes_total"] if end else None,
                "autovacuum_runs": autovacuum_end - autovacuum_before,
                "goals": goals,
                "pass": _verdict(goals),
                **extra,
            }
        )
        autovacuum_before = autovacuum_end
        previous_kind = kind
    return {"phases": summaries, "sizes": _sizes(result)}


def _sizes(result: Result) -> Result | None:
    """Each relation's size at the end of the phases beside its size at 10 minutes."""
    phases = result["phases"]
    if not phases:
        return None
    end_s = phases[-1]["end_s"]
    running = [s for s in result["samples"] if s["t"] <= end_s + 0.5]
    early = next((s for s in running if s["t"] >= SIZES_EARLY_S), None)
    if early is None or not running or running[-1] is early:
        return None
    end = running[-1]

    def grouped(sample: Result) -> dict[str, float]:
        # The numbered partitions of one table (a ring: jobs_done_0 .. _7) are judged
        # together, as the table they make up; each alone fills and empties in turn.
        sizes: dict[str, float] = {}
        for name, rel in sample["relations"].items():
            key = re.sub(r"_\d+(?=_|$| )", "_*", name)
            sizes[key] = sizes.get(key, 0) + rel["bytes"]
        return sizes

    early_sizes, end_sizes = grouped(early), grouped(end)
    rows = {}
    for name, size in end_sizes.items():
        before = early_sizes.get(name)
        ratio = size / before if before else None
        rows[name] = {"early_bytes": before, "end_bytes": size, "ratio": ratio}
    total = end["bytes_total"] / early["bytes_total"] if early["bytes_total"] else None
    return {
        "early_t": early["t"],
        "end_t": end["t"],
        "relations": rows,
        "total": {
            "early_bytes": early["bytes_total"],
            "end_bytes": end["bytes_total"],
            "ratio": total,
        },
        "pass": all(r["ratio"] is None or r["ratio"] <= SIZE_RATIO for r in rows.values())
        and (total is None or total <= SIZE_RATIO),
    }


def _n(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.2f} MiB"


def markdown(result: Result, plots: list[str] | None) -> str:
    config, facts = result["config"], result["machine"]
    summary = result["summary"]
    verification = result["verification"]
    lines = [
        "# aqueue soak benchmark",
        "",
        f"{facts['date']}: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, "
        f"{facts['os']}; Python {facts['python']}, PostgreSQL {facts['postgres']}; "
        f"load average at start {_load(facts['loadavg_start'])}, "
        f"at end {_load(facts['loadavg_end'])}.",
        "",
        f"Offered {config['rate']:,.0f} jobs/s (burst {config['burst_factor']}x), worker "
        f"concurrency {config['concurrency']}, handler `{config['handler']}`, worker arguments "
        f"{config['worker_args'] or 'none'}; samples every {config['sample_s']:g} s, latency "
        f"percentiles over rolling {config['window_s']:g} s windows (pickup: handler start - "
        "the moment its enqueue call returned).",
        "",
    ]
    if config["server"] == "--dsn":
        lines.append(
            "Server: an existing one (--dsn); its autovacuum settings are whatever it has:"
        )
    else:
        lines.append(
            "Server: a throwaway cluster from the embedded binaries, autovacuum at PostgreSQL's "
            "defaults, fsync=off (a throwaway cluster: the disk is not what is measured). "
            "Settings:"
        )
    lines += ["", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in result["settings"].items()]
    lines += [
        "",
        "## Phases",
        "",
        "Worst rolling window of each phase (windows ending inside it; none of the first 30 s "
        "of the run); dead tuples, sizes at its last sample; autovacuum runs during it.",
        "",
        "| phase | s | offered/s | completed/s | p50 worst | p99 worst | max | xmin age max "
        "| dead tuples | size | autovacuums | goals | pass |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in summary["phases"]:
        goals = "; ".join(
            f"{g['goal']}: " + " ".join(x for x in (g["value"], _mark(g["pass"], neither="")) if x)
            for g in p["goals"]
        )
        lines.append(
            f"| {p['phase']} | {p['seconds']:.0f} | {_n(p['offered_per_s'])} | "
            f"{_n(p['completed_per_s'])} | {_n(p['worst_p50_ms'], 2)} ms | "
            f"{_n(p['worst_p99_ms'], 1)} ms | {_n(p['max_ms'], 1)} ms | {_n(p['xmin_age_max'])} "
            f"| {_n(p['dead_end'])} | {_mib(p['bytes_end'])} | {p['autovacuum_runs']} | "
            f"{goals} | {_mark(p['pass'], 'PASS', 'FAIL')} |"
        )
    lines.append("")
    for p in summary["phases"]:
        if "p99_back_under_50ms_s" in p:
            back = p["p99_back_under_50ms_s"]
            lines.append(
                f"- {p['phase']}: rolling p99 back under 50 ms "
                + ("never" if back is None else f"{back:.0f} s after the phase began")
            )
        if "burst" in p:
            b = p["burst"]
            lines.append(
                f"- burst: peak backlog {b['peak_depth']:,} jobs at t={_n(b['peak_t'])} s; "
                f"drain while it fell {'≥ ' if b['lower_bound'] else ''}"
                f"{_n(b['drain_per_s'])} jobs/s over "
                f"{b['falling_samples']} samples (README's fresh-table no-op drains: c16 8,309, "
                f"c64 18,541 jobs/s); backlog under 1 s of jobs "
                + (
                    "not within the phases"
                    if b["backlog_gone_t"] is None
                    else f"at t={b['backlog_gone_t']:,.0f} s"
                )
            )
    if result.get("fresh_drain"):
        f = result["fresh_drain"]
        beside = result.get("fresh_drain_beside_producer")
        lines.append(
            f"- fresh drain (before the phases: {f['jobs']:,} jobs enqueued at once, this job "
            f"and worker): alone {f['jobs_per_s']:,.0f} jobs/s"
            + (
                f"; beside the producer at {result['config']['rate']:,.0f}/s, as the burst's "
                f"backlog drains (completed a second until the last of them reported): "
                f"{beside['jobs_per_s']:,.0f} jobs/s, the burst's bar"
                if beside
                else ", the burst's bar"
            )
        )
    if result["reads_ms"]:
        reads = ", ".join(f"{ms:,.0f}" for ms in result["reads_ms"])
        lines.append(f"- readers' reads of background_jobs took {reads} ms")
    phases = result["phases"]
    backlog = phases[-1]["offered_end"] - phases[-1]["completed_end"] if phases else 0
    drained = verification["reports_received"] - (phases[-1]["completed_end"] if phases else 0)
    lines.append(
        f"- the final drain: {backlog:,} jobs left when the producer stopped"
        + (
            f", {drained:,} of them started in it ({drained / result['drain_s']:,.0f} jobs/s)"
            if backlog > 1000 and result["drain_s"] > 0
            else ""
        )
        + f"; it took {result['drain_s']:.1f} s"
        + ("" if result.get("drained", True) else " and timed out (--drain-timeout-s)")
        + "; worker peak RSS "
        f"{result['worker_peak_rss_mib']:.1f} MiB"
    )
    sizes = summary["sizes"]
    lines += ["", "## Relation sizes", ""]
    if sizes is None:
        lines.append("The run was shorter than 10 minutes: no size ratio.")
    else:
        lines += [
            f"Sizes at t={sizes['early_t']:.0f} s against the end of the phases "
            f"(t={sizes['end_t']:.0f} s); the 1-hour goal (`--hours 1`): end ≤ "
            f"{SIZE_RATIO}x the 10-minute size, every relation and the total: "
            f"{'PASS' if sizes['pass'] else 'FAIL'}.",
            "",
            "| relation | at 10 min | at the end | ratio |",
            "|---|---|---|---|",
        ]
        for name, r in sizes["relations"].items():
            lines.append(
                f"| {name} | {_mib(r['early_bytes'])} | {_mib(r['end_bytes'])} | "
                f"{_n(r['ratio'], 2)} |"
            )
        t = sizes["total"]
        lines.append(
            f"| **total** | {_mib(t['early_bytes'])} | {_mib(t['end_bytes'])} | "
            f"{_n(t['ratio'], 2)} |"
        )
    last = result["samples"][-1] if result["samples"] else None
    if last is not None:
        lines += [
            "",
            f"After the drain (t={last['t']:.0f} s):",
            "",
            "| relation | kind | size | live tuples | dead tuples | autovacuums | autoanalyzes |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in last["relations"].items():
            lines.append(
                f"| {name} | {r['kind']} | {_mib(r['bytes'])} | {_n(r['n_live_tup'])} | "
                f"{_n(r['n_dead_tup'])} | {_n(r['autovacuum_count'])} | "
                f"{_n(r['autoanalyze_count'])} |"
            )
    states = ", ".join(f"{k} {v:,}" for k, v in sorted(verification["states"].items()))
    lines += [
        "",
        "## Every job",
        "",
        f"Offered {verification['offered']:,}; in the view: {states} (removed by retention: "
        f"{verification.get('removed_by_retention', 0):,}); handler reports "
        f"{verification['reports_received']:,} (sequence numbers missing: "
        f"{verification['seqs_missing']}, duplicates: {verification['duplicate_reports']}). "
        + (
            "Every offered job completed."
            if verification["every_job_completed"]
            else f"NOT every offered job completed (first missing: "
            f"{verification['first_missing']})."
        ),
    ]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    elif plots is None:
        lines += ["", "(matplotlib is not installed: no plots.)"]
    return "\n".join(lines) + "\n"


def _load(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def plots(result: Result, out: Path) -> list[str] | None:
    """throughput.png, p99.png, dead_tuples.png and sizes.png in ``out`` (their names), or
    None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak: matplotlib is not installed: no plots", flush=True)
        return None
    samples = result["samples"]
    minutes = [s["t"] / 60 for s in samples]
    made = []

    def shade(ax: Any) -> None:
        for i, phase in enumerate(result["phases"]):
            ax.axvspan(
                phase["start_s"] / 60,
                phase["end_s"] / 60,
                color="tab:gray" if phase["kind"] != "clean" else "white",
                alpha=0.08 + 0.08 * (i % 2),
                lw=0,
            )
            ax.text(
                (phase["start_s"] + phase["end_s"]) / 120,
                1.01,
                phase["name"],
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=20,
            )
        ax.set_xlabel("minutes")
        ax.grid(alpha=0.3)

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(minutes, [s["offered_per_s"] for s in samples], label="offered/s", lw=1.2)
    ax.plot(minutes, [s["completed_per_s"] for s in samples], label="completed/s", lw=1.2)
    ax.set_ylabel("jobs/s (5 s samples)")
    depth_ax = ax.twinx()
    depth_ax.plot(minutes, [s["depth"] for s in samples], color="tab:red", lw=0.8, ls="--")
    depth_ax.set_ylabel("queue depth (dashed)", color="tab:red")
    shade(ax)
    ax.legend(loc="upper left", fontsize=8)
    save(fig, "throughput.png")

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        values = [s[key] if s[key] else math.nan for s in samples]
        ax.plot(minutes, values, label=f"{label} (rolling 30 s)", lw=1.2)
    ax.axhline(CLEAN_P99_MS, color="tab:green", ls=":", lw=1, label="p99 goal, clean")
    ax.axhline(HELD_P99_MS, color="tab:orange", ls=":", lw=1, label="p99 goal, held")
    ax.set_yscale("log")
    ax.set_ylabel("pickup latency, ms")
    shade(ax)
    ax.legend(loc="upper left", fontsize=8)
    save(fig, "p99.png")

    names = sorted(samples[-1]["relations"]) if samples else []
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name in names:
        if samples[-1]["relations"][name]["kind"] in ("table", "toast"):
            values = [s["relations"].get(name, {}).get("n_dead_tup") for s in samples]
            if not any(values):
                continue  # never a dead tuple: a flat line at 0 in the legend says nothing
            ax.plot(minutes, [math.nan if v is None else v for v in values], label=name, lw=1.2)
    ax.set_ylabel("n_dead_tup")
    age_ax = ax.twinx()
    age_ax.plot(minutes, [s["xmin_age"] for s in samples], color="tab:gray", lw=0.8, ls="--")
    age_ax.set_ylabel("oldest xmin age, xids (dashed)", color="tab:gray")
    previous = 0
    for s, m in zip(samples, minutes, strict=True):
        if s["autovacuum_total"] > previous:
            ax.axvline(m, color="tab:purple", lw=0.6, alpha=0.6)
        previous = s["autovacuum_total"]
    shade(ax)
    ax.legend(loc="upper left", fontsize=8, title="purple lines: autovacuum ran")
    save(fig, "dead_tuples.png")

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name in names:
        values = [s["relations"].get(name, {}).get("bytes") for s in samples]
        ax.plot(minutes, [math.nan if v is None else v / 2**20 for v in values], label=name, lw=1)
    ax.plot(minutes, [s["bytes_total"] / 2**20 for s in samples], label="total", lw=2, c="k")
    ax.set_ylabel("MiB (pg_relation_size)")
    shade(ax)
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    save(fig, "sizes.png")
    return made
