"""Where a run's time goes (flows/timings.py): a nightly and a reprocess give, in their `--json`
summary, the coordinator's phases and every round of units as the units timed themselves, on
threads and on a real LocalCluster; the parts add up; `billrun bench` prints them at 80
columns. No timing thresholds: only that every part is there and that the sums agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from billrun.bench_breakdown import breakdown_lines, coordinator_alone, units_totals
from data.generator import generate
from flows.load import load_flow

CODE = "import sys; from billrun.cli import main; sys.exit(main(sys.argv[1:]))"
AS_OF = "2026-01-31"
REPROCESS = "2025-12"  # ended for every billing day by AS_OF: finalized for every account
GROUPS = {"start", "plan", "exports", "units", "commit", "publication", "report"}
# The profile's seconds are rounded to the millisecond: a sum of a few dozen agrees within this.
CENT = 0.05


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A month of 300 generated accounts, loaded, not billed yet."""
    tmp = tmp_path_factory.mktemp("run-timings")
    generate(300, tmp / "in", seed=11, months=1, start="2026-01")
    db = tmp / "loaded.duckdb"
    load_flow(str(tmp / "in"), str(db))
    return db


def billrun_json(*args: str) -> dict[str, Any]:
    """`billrun ARGS --json` in a subprocess (the session's Prefect API is inherited)."""
    done = subprocess.run([sys.executable, "-c", CODE, *args, "--json"], env=os.environ.copy(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def copy(db: Path, name: str) -> Path:
    target = db.with_name(name)
    target.write_bytes(db.read_bytes())
    return target


def check_profile(doc: dict[str, Any], periods: list[str]) -> dict[str, Any]:
    """Every coordinator group and every round is there, and the parts add up."""
    t = doc["timings"]
    assert set(t["coordinator"]) == GROUPS
    assert {"database"} <= set(t["coordinator"]["start"])
    assert {"stored inputs", "plan"} <= set(t["coordinator"]["plan"])
    assert {"run inputs", "period inputs"} == set(t["coordinator"]["exports"])
    assert {"charges", "invoices", "decisions", "counters", "commit"} <= set(
        t["coordinator"]["commit"])
    assert set(t["coordinator"]["publication"]) == {"parquet set", "analyst file"}
    # The settle round first, then one round per period billed, in order, each of every shard.
    rounds = t["rounds"]
    assert [r["label"] for r in rounds] == ["settle", *periods]
    shards = {len(r["units"]) for r in rounds}
    assert len(shards) == 1 and shards.pop() >= 2
    for r in rounds:
        for unit in r["units"]:
            assert unit["seconds"] > 0 and unit["cpu_seconds"] > 0  # timed where it ran
        # A unit runs inside its round: the coordinator waited at least as long as its longest.
        assert max(u["seconds"] for u in r["units"]) <= r["seconds"] + CENT
    # The coordinator's wait on the units is the rounds' walls; every timed step and the
    # untimed rest make the flow's wall.
    waited = sum(r["seconds"] for r in rounds)
    assert t["coordinator"]["units"] == pytest.approx({"waiting on the rounds": waited},
                                                      abs=CENT)
    timed = sum(sum(steps.values()) for steps in t["coordinator"].values())
    assert timed + t["other"] == pytest.approx(t["seconds"], abs=CENT)
    assert t["other"] >= 0 and timed <= t["seconds"] + CENT
    totals = units_totals(t)
    assert totals["units"] == len(rounds) * len(rounds[0]["units"])
    assert totals["critical"] <= totals["wall"] + CENT
    assert coordinator_alone(t) == pytest.approx(t["seconds"] - waited, abs=CENT)
    shown = breakdown_lines(t)
    assert max(len(line) for line in shown) <= 80
    assert sum(line.startswith("      settle") for line in shown) == 1
    return t


@pytest.mark.slow
def test_threads_nightly_and_reprocess_profile_their_coordinator_and_units(
    loaded: Path,
) -> None:
    db = copy(loaded, "threads.duckdb")
    night = billrun_json("nightly", "--as-of", AS_OF, "--db", str(db))
    assert len(night["periods"]) > 1  # a catch-up: several periods, one round each
    check_profile(night, night["periods"])
    again = billrun_json("reprocess", "--period", REPROCESS, "--db", str(db))
    check_profile(again, [REPROCESS])


@pytest.mark.slow
def test_local_cluster_units_are_timed_on_the_workers(loaded: Path) -> None:
    db = copy(loaded, "cluster.duckdb")
    night = billrun_json("nightly", "--as-of", AS_OF, "--db", str(db), "--cluster", "local:2")
    t = check_profile(night, night["periods"])
    assert "cluster" in t["coordinator"]["start"]  # the LocalCluster's start, on the coordinator
    # On local:2 the shards fill whole rounds of the 2 slots.
    assert len(t["rounds"][0]["units"]) % 2 == 0


def test_the_breakdown_adds_up_a_profile_worked_by_hand() -> None:
    profile = {
        "seconds": 20.0,
        "coordinator": {"start": {"database": 0.5}, "plan": {"plan": 1.5},
                        "units": {"waiting on the rounds": 9.0},
                        "commit": {"charges": 3.0, "commit": 2.0}},
        "cpu": {"start": 0.4, "units": 1.0, "commit": 4.0},
        "other": 4.0,
        "rounds": [
            {"label": "settle", "seconds": 2.0,
             "units": [{"seconds": 1.0, "cpu_seconds": 0.5},
                       {"seconds": 1.5, "cpu_seconds": 1.0}]},
            {"label": "2026-01", "seconds": 7.0,
             "units": [{"seconds": 6.0, "cpu_seconds": 5.0},
                       {"seconds": 4.0, "cpu_seconds": 3.5}]},
        ],
    }
    # units: 1.0 + 1.5 + 6.0 + 4.0 = 12.5 s wall, 0.5 + 1.0 + 5.0 + 3.5 = 10 s CPU; the longest
    # of each round, 1.5 + 6.0 = 7.5 s; waited 2 + 7 = 9 s; the coordinator alone 20 - 9 = 11 s.
    assert units_totals(profile) == {"rounds": 2, "units": 4, "wall": 12.5, "cpu": 10.0,
                                     "critical": 7.5, "waited": 9.0}
    assert coordinator_alone(profile) == 11.0
    shown = breakdown_lines(profile)
    assert max(len(line) for line in shown) <= 80
    rows = {line.split("  ")[3]: line.split()[-4:] for line in shown[2:9]
            if not line.startswith(" " * 8)}
    assert rows["commit (one transaction)"] == ["5.00", "4.00", "25", "%"]  # 5 s of 20 s
    # Alone: 20 - 9 = 11 s wall, 55 %; CPU 0.4 + 4.0, not the 1.0 during the rounds.
    assert rows["coordinator alone (flow - waits)"] == ["11.00", "4.40", "55", "%"]
