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

# Coordinator groups that grow with the data, and those that do not (see the module doc).
SCALES = ("plan", "exports", "commit", "publication")
FIXED = ("start", "report")


def estimate(t: dict[str, Any], factor: float, workers: int, per_worker: int) -> dict[str, float]:
    """One step's estimate, every term in CPU seconds of one machine like the bench's."""
    cpu = t["cpu"]
    rounds = t["rounds"]
    units = [u for r in rounds for u in r["units"]]
    unit_cpu = sum(u["cpu_seconds"] for u in units)
    imbalance = max(1.0, sum(
        max(u["cpu_seconds"] for u in r["units"])
        / max(1e-9, sum(u["cpu_seconds"] for u in r["units"]) / len(r["units"]))
        for r in rounds) / len(rounds))
    orchestration = cpu.get("units", 0.0) / max(1, len(units))  # coordinator CPU per unit
    units_10m = len(rounds) * workers * per_worker
    scaled = {g: cpu.get(g, 0.0) * factor for g in SCALES}
    fixed = {g: cpu.get(g, 0.0) for g in FIXED}
    coordinator = sum(scaled.values()) + sum(fixed.values()) + orchestration * units_10m
    on_workers = unit_cpu * factor / workers * imbalance
    return {
        "unit_cpu": unit_cpu, "units": len(units), "rounds": len(rounds),
        "imbalance": imbalance, "orchestration_per_unit": orchestration,
        "units_10m": units_10m, **{f"scaled_{g}": v for g, v in scaled.items()},
        **{f"fixed_{g}": v for g, v in fixed.items()},
        "orchestration_10m": orchestration * units_10m,
        "coordinator": coordinator, "workers": on_workers,
        "share": coordinator / (coordinator + on_workers),
        "kept_commit": kept_commit(t) * factor,
        "moved_share": _moved(scaled, fixed, orchestration * units_10m, on_workers,
                              kept_commit(t) * factor, workers, imbalance),
    }


KEPT_COMMIT_STEPS = ("documents",)  # numbering is one sequence: it stays on the coordinator


def kept_commit(t: dict[str, Any]) -> float:
    """The commit's CPU that stays on the coordinator however the rows are written: the
    numbering's share of the commit's wall, applied to the commit's CPU."""
    steps = t["coordinator"].get("commit", {})
    wall = sum(steps.values())
    kept = sum(steps.get(s, 0.0) for s in KEPT_COMMIT_STEPS)
    return t["cpu"].get("commit", 0.0) * kept / wall if wall else 0.0


def _moved(scaled: dict[str, float], fixed: dict[str, float], orchestration: float,
           on_workers: float, kept: float, workers: int, imbalance: float) -> float:
    """The share if the exports, the commit's row writing and the Parquet set moved to the
    workers (the units read their shard's stored rows and write their results where the commit
    publishes them): the coordinator keeps the plan, the start, the report, the numbering of
    the documents (`kept`) and the orchestration."""
    kept_all = scaled["plan"] + sum(fixed.values()) + orchestration + kept
    moved = scaled["exports"] + scaled["commit"] - kept + scaled["publication"]
    workers_then = on_workers + moved / workers * imbalance
    return kept_all / (kept_all + workers_then)


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
        cpu = t["cpu"]
        say(f"{name}: measured CPU s, coordinator "
              + ", ".join(f"{g} {cpu.get(g, 0.0):.2f}" for g in (*FIXED, *SCALES, "units"))
              + f"; units {e['units']} in {e['rounds']} rounds, {e['unit_cpu']:.2f}")
        say(f"coordinator at {args.target:,}: "
              + " + ".join(f"{g} {cpu.get(g, 0.0):.2f} x {factor:,.0f}" for g in SCALES)
              + f" + start and report {e['fixed_start'] + e['fixed_report']:.1f}"
              f" + orchestration {e['orchestration_per_unit']:.3f} x {e['units_10m']} units"
              f" = {e['coordinator']:,.0f} CPU s", "  ")
        say(f"workers: {e['unit_cpu']:.2f} x {factor:,.0f} / {args.workers} x imbalance "
              f"{e['imbalance']:.2f} = {e['workers']:,.0f} CPU s a worker", "  ")
        say(f"coordinator share: {e['coordinator']:,.0f} / ({e['coordinator']:,.0f} + "
              f"{e['workers']:,.0f}) = {100 * e['share']:.0f} %; with the exports, the commit's "
              f"writes and the Parquet set on the workers: {100 * e['moved_share']:.0f} %", "  ")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
