"""The 10M-accounts, 16-worker estimate of a bill run, from a `billrun bench --cluster local:N`
profile (DIR/breakdown.json): per billing step, what scales with the workers (the units) and
what stays on the coordinator (exports, commit, publication), with the arithmetic printed.

    .venv/bin/python benchmarks/cluster_estimate.py DIR/breakdown.json --accounts 20000 \
        [--target 10000000] [--workers 16] [--units-per-worker 2]

The model (benchmarks/RESULTS.md, "Coordinator and workers, step by step", states it):
- CPU seconds, not wall: the bench machine is shared. The coordinator and each worker are
  machines like the bench's, so a CPU second costs the same wall on either side and the
  coordinator's share is a ratio of CPU seconds.
- What grows with the data grows linearly with the accounts (events and lines are per
  account): the units, the exports, the commit, the publication, the plan. What does not: the
  start (database, cluster), the report's artifacts, and the orchestration of each unit, which
  grows with the units' count (shards x rounds), not the accounts.
- Shards at 10M: `--units-per-worker` units per worker slot and round (the memory budget's
  shards, rounded up to whole rounds of slots, flows/cluster.py); each round's units run in
  parallel, so a round takes its units' CPU / workers, times the imbalance measured (the
  round's longest unit over its mean, CPU), on top of the per-unit orchestration.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

# The coordinator's steps that do not grow with the data: opening the database and starting
# the cluster. Everything else it does reads or writes the run's rows (a night's load, the plan,
# the exports, the commit, the publication, the report's SQL over the analyst file).
FIXED_STEPS = ("database", "cluster")
# What could move to the workers, in two moves (benchmarks/RESULTS.md says what each means).
MOVE_ROWS = ("exports", "commit", "publication")  # units read and write the rows themselves
# Each unit plans its shard, reads a night's new files and sums its own totals for the report.
MOVE_PLAN = ("plan", "start", "report")
KEPT_STEPS = ("documents",)  # one sequence of numbers: stays on the coordinator whatever moves


def step_cpu(t: dict[str, Any]) -> dict[tuple[str, str], float]:
    """Each coordinator step's CPU seconds: its group's CPU, shared by the steps' walls (the
    process's CPU is taken by group)."""
    out = {}
    for group, steps in t["coordinator"].items():
        wall = sum(steps.values())
        for step, seconds in steps.items():
            share = seconds / wall if wall else 1 / len(steps)
            out[(group, step)] = t["cpu"].get(group, 0.0) * share
    return out


def estimate(t: dict[str, Any], factor: float, workers: int, per_worker: int) -> dict[str, Any]:
    """One step's estimate, every term in CPU seconds of one machine like the bench's."""
    rounds = t["rounds"]
    units = [u for r in rounds for u in r["units"]]
    unit_cpu = sum(u["cpu_seconds"] for u in units)
    imbalance = max(1.0, sum(
        max(u["cpu_seconds"] for u in r["units"])
        / max(1e-9, sum(u["cpu_seconds"] for u in r["units"]) / len(r["units"]))
        for r in rounds) / len(rounds))
    steps = step_cpu(t)
    orchestration = sum(v for (g, _), v in steps.items() if g == "units") / max(1, len(units))
    units_target = len(rounds) * workers * per_worker
    fixed = sum(v for (g, s), v in steps.items() if s in FIXED_STEPS)
    by_group: dict[str, float] = {}
    for (group, step), v in steps.items():
        if group != "units" and step not in FIXED_STEPS:
            by_group[group] = by_group.get(group, 0.0) + v * factor
    kept = sum(v for (g, s), v in steps.items() if s in KEPT_STEPS) * factor
    on_workers = unit_cpu * factor / workers * imbalance

    def share(moved_groups: tuple[str, ...]) -> tuple[float, float, float]:
        moved = sum(v for g, v in by_group.items() if g in moved_groups)
        moved -= kept if "commit" in moved_groups else 0.0
        coordinator = sum(by_group.values()) - moved + fixed + orchestration * units_target
        working = on_workers + moved / workers * imbalance
        return coordinator, working, coordinator / (coordinator + working)

    return {
        "unit_cpu": unit_cpu, "units": len(units), "rounds": len(rounds),
        "imbalance": imbalance, "orchestration_per_unit": orchestration,
        "units_target": units_target, "fixed": fixed, "scaled": by_group, "kept": kept,
        "workers": on_workers, "today": share(()), "rows_moved": share(MOVE_ROWS),
        "rows_and_plan_moved": share(MOVE_ROWS + MOVE_PLAN),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("breakdown", type=Path)
    parser.add_argument("--accounts", type=int, required=True, help="the bench's accounts")
    parser.add_argument("--target", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--units-per-worker", type=int, default=2,
                        help="units per worker slot and round at the target size")
    args = parser.parse_args()
    doc = json.loads(args.breakdown.read_text())
    factor = args.target / args.accounts
    print(f"{doc['command']}\nscale x{factor:,.0f} ({args.accounts:,} -> {args.target:,} "
          f"accounts), {args.workers} workers, {args.units_per_worker} unit(s) per worker and "
          "round\n")
    def say(text: str, indent: str = "") -> None:
        print(textwrap.fill(text, 80, initial_indent=indent, subsequent_indent=indent + "    "))

    for name, t in doc["steps"].items():
        e = estimate(t, factor, args.workers, args.units_per_worker)
        say(f"{name}: measured CPU s, coordinator "
            + ", ".join(f"{g} {v:.2f}" for g, v in t["cpu"].items())
            + f"; units {e['units']} in {e['rounds']} rounds, {e['unit_cpu']:.2f}")
        say(f"coordinator at {args.target:,}: "
            + " + ".join(f"{g} {v / factor:.2f} x {factor:,.0f}" for g, v in e["scaled"].items())
            + f" + database and cluster {e['fixed']:.1f} + orchestration "
            f"{e['orchestration_per_unit']:.3f} x {e['units_target']} units = "
            f"{e['today'][0]:,.0f} CPU s", "  ")
        say(f"workers: {e['unit_cpu']:.2f} x {factor:,.0f} / {args.workers} x imbalance "
            f"{e['imbalance']:.2f} = {e['workers']:,.0f} CPU s a worker", "  ")
        for label, key in (("today", "today"),
                           ("exports, commit writes, Parquet set on the workers", "rows_moved"),
                           ("and the plan, a night's load, the report's totals too",
                            "rows_and_plan_moved")):
            c, w, sh = e[key]
            say(f"coordinator share, {label}: {c:,.0f} / ({c:,.0f} + {w:,.0f}) = "
                f"{100 * sh:.0f} %", "  ")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
