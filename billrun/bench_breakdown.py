"""`billrun bench`'s breakdown of a billing step: what the coordinator did and what the units
did, from the run's own profile (`timings` in the command's `--json`, flows/timings.py).

The coordinator's groups are wall seconds in the flow's process; `units` is its wait on the
rounds. Each unit timed itself where it ran: per round, the units' wall and CPU summed (what
more workers share) and the longest unit (the round's critical path: what no number of
workers shortens). Plain text at 80 columns, and Markdown rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import textwrap
from typing import Any

GROUP_NAMES = {
    "start": "start (database, load, cluster)",
    "plan": "plan (inputs, plan, shard count)",
    "exports": "exports of the units' inputs",
    "units": "waits on the units' rounds",
    "commit": "commit (one transaction)",
    "publication": "publication (Parquet, analyst)",
    "report": "totals, artifacts, HTML report",
}
WIDTH = 80


def units_totals(timings: dict[str, Any]) -> dict[str, float]:
    """The units in all: how many, their wall and CPU summed, the rounds' critical paths
    summed and the coordinator's wait on the rounds."""
    rounds = timings["rounds"]
    units = [u for r in rounds for u in r["units"]]
    return {
        "rounds": len(rounds),
        "units": len(units),
        "wall": sum(u["seconds"] for u in units),
        "cpu": sum(u["cpu_seconds"] for u in units),
        "critical": sum(max((u["seconds"] for u in r["units"]), default=0.0) for r in rounds),
        "waited": sum(r["seconds"] for r in rounds),
    }


def coordinator_alone(timings: dict[str, Any]) -> float:
    """The flow's wall minus its wait on the units: what stays on the coordinator."""
    return max(0.0, timings["seconds"] - units_totals(timings)["waited"])


def group_seconds(timings: dict[str, Any], group: str) -> float:
    """One coordinator group's wall seconds."""
    return sum(timings["coordinator"].get(group, {}).values())


def breakdown_lines(timings: dict[str, Any]) -> list[str]:
    """The step's breakdown as lines of at most 80 columns (indented under the step's row)."""
    flow = timings["seconds"]
    cpu = timings.get("cpu", {})
    lines = [f"    where the flow's {flow:.1f} s went: the coordinator's process, then the units",
             f"      {'coordinator':<36} {'wall s':>9} {'CPU s':>9} {'of flow':>8}"]
    for group, steps in timings["coordinator"].items():
        seconds = sum(steps.values())
        name = GROUP_NAMES.get(group, group)
        lines.append(f"      {name:<36} {seconds:9.2f} {cpu.get(group, 0.0):9.2f} "
                     f"{_share(seconds, flow):>8}")
        if len(steps) > 1 or group in ("commit", "publication"):
            detail = ", ".join(f"{step} {s:.1f}" for step, s in steps.items())
            lines += textwrap.wrap(detail, WIDTH, initial_indent=" " * 8,
                                   subsequent_indent=" " * 8)
    lines.append(f"      {'other (run lock, staging clean-up)':<36} {timings['other']:9.2f} "
                 f"{'':>9} {_share(timings['other'], flow):>8}")
    alone = coordinator_alone(timings)
    alone_cpu = sum(v for g, v in cpu.items() if g != "units")
    lines.append(f"      {'coordinator alone (flow - waits)':<36} {alone:9.2f} {alone_cpu:9.2f} "
                 f"{_share(alone, flow):>8}")
    t = units_totals(timings)
    lines.append(f"    units: {t['units']} in {t['rounds']} round(s); wall {t['wall']:.2f} s, "
                 f"CPU {t['cpu']:.2f} s in all")
    lines.append(f"      critical path (each round's longest unit, summed) {t['critical']:.2f} s")
    lines.append(f"      the coordinator's waits on the rounds {t['waited']:.2f} s")
    lines.append(f"      {'round':<24} {'units':>5} {'wall s':>8} {'CPU s':>8} "
                 f"{'longest s':>10} {'round s':>8}")
    for r in timings["rounds"]:
        walls = [u["seconds"] for u in r["units"]]
        cpu = sum(u["cpu_seconds"] for u in r["units"])
        lines.append(f"      {r['label'][:24]:<24} {len(walls):>5} {sum(walls):8.2f} {cpu:8.2f} "
                     f"{max(walls, default=0.0):10.2f} {r['seconds']:8.2f}")
    return lines


def _share(seconds: float, total: float) -> str:
    return f"{100 * seconds / total:.0f} %" if total > 0 else "– %"


MARKDOWN_GROUPS = ("start", "plan", "exports", "units", "commit", "publication", "report")


def markdown_rows(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Markdown: one row per billing step (coordinator groups, units), then each step's
    commit and publication steps."""
    out = ["Coordinator: wall s / its own CPU s, by group. Units: as each timed itself.",
           "",
           "| step | flow | start | plan | exports | waits on units | commit | publication "
           "| report | other | coordinator alone | units: n, wall Σ, CPU Σ | critical paths Σ |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
           "| ---: |"]
    for name, t in rows:
        u = units_totals(t)
        cpu = t.get("cpu", {})
        groups = " | ".join(f"{group_seconds(t, g):.1f} / {cpu.get(g, 0.0):.1f}"
                            for g in MARKDOWN_GROUPS)
        alone = coordinator_alone(t)
        alone_cpu = sum(v for g, v in cpu.items() if g != "units")
        out.append(f"| {name} | {t['seconds']:.1f} s | {groups} | {t['other']:.1f} "
                   f"| {alone:.1f} / {alone_cpu:.1f} ({_share(alone, t['seconds'])}) "
                   f"| {u['units']}, {u['wall']:.1f} s, {u['cpu']:.1f} s | {u['critical']:.1f} s |")
    out += ["", "| step | coordinator steps (wall s) |", "| --- | --- |"]
    for name, t in rows:
        detail = "; ".join(
            f"{g}: " + ", ".join(f"{s} {v:.1f}" for s, v in steps.items())
            for g, steps in t["coordinator"].items() if g != "units"
        )
        out.append(f"| {name} | {detail} |")
    return out
