"""Real bill runs on a real LocalCluster of 2 worker processes, through the CLI (issue 10,
phase 2): `--cluster local:2` gives the same tables, row for row, as a run on threads, for a
nightly catch-up and a reprocess of a finalized period; a worker SIGKILLed in the middle of a
unit is rescheduled by Dask and the run still gives the same tables; no process is left.

The runs on a cluster are `billrun` processes, as a user runs them; the runs on threads (the
reference, and the killed test's nights after its killed one) call the same CLI in this process:
a process start-up each (about 3 CPU-s) bought nothing there."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from billrun.cli import main
from data.generator import generate
from flows.load import load_flow
from tests.flows.test_kills import results

pytestmark = pytest.mark.slow

AS_OF = "2026-03-15"
REPROCESS = "2026-01"  # ended for every billing day by AS_OF: finalized for every account
NEXT_NIGHT = "2026-03-16"  # the day after: its drafts continue, on the cluster too
CODE = "import sys; from billrun.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated data set (3 months of 60 accounts), loaded, not billed yet; beside it, a
    late drop of January calls (copies of real ones, new ids) that the reprocess bills."""
    tmp = tmp_path_factory.mktemp("cluster-runs")
    generate(60, tmp / "in", seed=7, months=3)
    db = tmp / "loaded.duckdb"
    load_flow(str(tmp / "in"), str(db))
    usage = pl.read_csv(tmp / "in" / "usage.csv", infer_schema=False)
    late = usage.filter(pl.col("started_at").str.starts_with("2026-01-2")).head(20)
    late = late.with_columns(("LATE-" + pl.col("event_id")).alias("event_id"))
    (tmp / "late").mkdir()
    late.write_csv(tmp / "late" / "usage.csv")
    return db


def late_drop(db: Path) -> Path:
    return db.parent / "late"


def billrun(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, list[int]]:
    """Run `billrun ARGS` in a subprocess (the session's Prefect API is inherited); return its
    exit code, its output and every pid its process tree had while it ran."""
    proc = subprocess.Popen([sys.executable, "-c", CODE, *args], env=env or os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[int] = set()
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            seen |= {c.pid for c in parent.children(recursive=True)}
        except psutil.Error:
            pass
        time.sleep(0.1)
    return proc.returncode, proc.stdout.read(), sorted(seen)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def copy(db: Path, name: str) -> Path:
    target = db.with_name(name)
    target.write_bytes(db.read_bytes())
    return target


def in_process(*args: str) -> tuple[int, str]:
    """Run `billrun ARGS` in this process (threads, the session's Prefect API): its exit code
    and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


def bill(db: Path, cluster: str | None = None, *, cluster_steps: int = 3,
         env: dict[str, str] | None = None) -> list[int]:
    """Nightly, a late drop loaded, the reprocess of the finalized period the drop falls in,
    then the next night, whose drafts continue from the first night's (docs/RUNS.md,
    "Incremental nightly"). The first `cluster_steps` runs (the load aside) run on `cluster`
    in a `billrun` process; the others on threads. Returns the pids the processes' trees had."""
    pids = []
    runs = 0
    for command in (["nightly", "--as-of", AS_OF], ["load", str(late_drop(db))],
                    ["reprocess", "--period", REPROCESS], ["nightly", "--as-of", NEXT_NIGHT]):
        is_run = command[0] != "load"
        if cluster and is_run and runs < cluster_steps:
            code, out, seen = billrun(*command, "--db", str(db), "--cluster", cluster, env=env)
            assert code == 0, out
            assert f"units run on {cluster}" in out
            pids += seen
        else:
            code, out = in_process(*command, "--db", str(db))
            assert code == 0, out
        runs += is_run
        if command[-1] == NEXT_NIGHT:
            continued = re.search(r"drafts continued from the last night\W+([\d,]+)", out)
            assert continued and int(continued.group(1).replace(",", "")) > 0, out
    return pids


@pytest.fixture(scope="module")
def on_threads(loaded: Path) -> dict[str, list[tuple]]:
    """The tables of the same runs on threads (no --cluster)."""
    db = copy(loaded, "threads.duckdb")
    bill(db)
    return results(db)


def test_local_2_gives_the_tables_of_a_run_on_threads_row_for_row(
    loaded: Path, on_threads: dict[str, list[tuple]]
) -> None:
    db = copy(loaded, "cluster.duckdb")
    pids = bill(db, "local:2")
    tables = results(db)
    assert tables == on_threads  # every table, every column but run ids and clocks
    assert len(tables["adjustments"]) > 0  # the reprocess of a final period adjusted something
    # SPEC §9: numbers, dates and notes too (the coordinator numbers in its commit)
    assert {row[1] for row in tables["documents"]} >= {"invoice"}
    assert all(row[-1] is not None for row in tables["adjustments"])  # document_number
    assert len(tables["charges"]) > 0
    assert [p for p in pids if running(p)] == []  # workers and servers ended with the runs
    assert not Path(f"{db}.staging").exists()


def test_a_worker_killed_mid_unit_is_rescheduled_and_the_tables_are_the_same(
    loaded: Path, on_threads: dict[str, list[tuple]], tmp_path: Path
) -> None:
    """The first unit to reach the point SIGKILLs its own worker process (store/faults.py
    die_once); Dask's scheduler runs the unit again on a worker and the Nanny restarts the dead
    one. The run succeeds, and it and the nights after it (on threads: the previous test runs
    them all on the cluster) give the same tables as the runs on threads."""
    db = copy(loaded, "killed.duckdb")
    marker = tmp_path / "killed-worker"
    env = {**os.environ, "BILLRUN_DIE_AT": "mid-unit", "BILLRUN_DIE_MARKER": str(marker)}
    pids = bill(db, "local:2", cluster_steps=1, env=env)
    killed = int(marker.read_text())
    assert killed in pids  # a worker of the nightly's LocalCluster, a child of the coordinator
    assert not running(killed)
    assert results(db) == on_threads
    assert [p for p in pids if running(p)] == []
