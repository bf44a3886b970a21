"""`billrun bench` through the CLI: every step and floor measured, no process left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from billrun.bench_floor import split_by_day

NUMBER = r"[0-9][0-9,]*\.[0-9]+"
# Summary rows: each billrun step with its wall time and the tree's peak RSS ...
STEPS = [
    "generate",
    "load",
    r"first nightly \(catch-up\)",
    "one-day increment",
    r"reprocess 2025-12 \(finalized\)",
]
# ... and each DuckDB floor with its own time and the step's ratio to it.
FLOORS = [
    "read_csv of the same files",
    "GROUP BY of the stored usage",
    "read_csv of the day's file",
    "GROUP BY of the day's usage",
    "GROUP BY of 2025-12's usage window",
]


@pytest.mark.slow
def test_bench_prints_every_step_and_floor_and_leaves_no_process(tmp_path: Path) -> None:
    work = tmp_path / "bench"
    env = {**os.environ, "BILLRUN_PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run(
        [sys.executable, "-m", "billrun.cli", "bench", "--accounts", "300", "--out", str(work)],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    summary = out[out.index("summary:"):out.index("Markdown")]
    for step in STEPS:
        assert re.search(rf"^  {step} +{NUMBER} s +{NUMBER} GiB$", summary, re.M), step
    for floor in FLOORS:
        assert re.search(rf"^    floor: {floor} +{NUMBER} s +x{NUMBER}$", summary, re.M), floor
    assert re.search(rf"one-day increment / first nightly: {NUMBER}", summary)
    # The fixed start-up cost (issue 21): `billrun --version`, then each flow step from its
    # process start to its flow's first step (its runs.started_at), and their median.
    assert re.search(rf"^    billrun --version \(median of 3\) +{NUMBER} s$", summary, re.M)
    for step in STEPS[1:]:
        assert re.search(rf"^    {step} +{NUMBER} s$", summary, re.M), step
    assert re.search(rf"^    flow commands, median +{NUMBER} s$", summary, re.M)
    block = summary[summary.index("  fixed start-up cost"):]
    assert max(len(line) for line in block.splitlines()) <= 80
    # The Markdown block: one row per step, one more per extra floor, the ratio row and the
    # two start-up rows.
    blocks = out[out.index("Markdown"):].split("\n\n")
    tables = [[line for line in b.splitlines() if line.startswith("| ")] for b in blocks]
    table, per_process, startup = [t for t in tables if t][:3]
    assert len(table) == 1 + 1 + 5 + 1 + 1 + 2  # header, rule, 5 steps, 1 floor, ratio, start-up
    assert re.search(rf"^\| fixed start-up: `billrun --version` \(median of 3\) \| {NUMBER} s "
                     r"\|", "\n".join(table), re.M)
    assert re.search(rf"^\| fixed start-up: flow command, process start to the flow's first "
                     rf"step \(median\) \| {NUMBER} s \|", "\n".join(table), re.M)
    # Then each step's peak RSS per process (coordinator, Dask workers): header, rule, 5 steps.
    assert len(per_process) == 1 + 1 + 5
    # And the start-up of each flow step: header, rule, --version, 4 flow steps.
    assert len(startup) == 1 + 1 + 1 + 4
    assert "2 cores" in out or f"{os.cpu_count()} cores" in out
    assert "processes left behind by the steps: 0" in out

    # No process survives: neither a child of this test nor any process the steps started
    # (Prefect's server included), matched by pid and create time against PID reuse.
    assert psutil.Process().children(recursive=True) == []
    seen = json.loads((work / "pids.json").read_text())
    # 5 billrun commands + split + 5 floors + 3 --version + the runs reader, plus the servers.
    assert len(seen) >= 15
    for pid, created in seen.items():
        try:
            proc = psutil.Process(int(pid))
        except psutil.NoSuchProcess:
            continue
        assert proc.create_time() != created, f"process {pid} is still running"


def test_split_by_day_moves_only_that_days_usage_byte_for_byte(tmp_path: Path) -> None:
    src = tmp_path / "gen"
    src.mkdir()
    header = "event_id,account_id,service,destination_group,started_at,quantity,amount"
    lines = [
        "E1,A1,voice,US,2026-01-30 23:59:59,1.0,0.1000",
        "E2,A1,voice,US,2026-01-31 00:00:00,2.0,0.2000",  # the day: to the second drop
        "E3,A2,sms,ANY,2026-01-31T12:00:00Z,1,0.0500",  # the day, ISO form: second drop
        "E4,A2,sms,ANY,31/01/2026,1,0.0500",  # a bad date: stays with the first drop
        "E5,A2,sms,ANY,2026-01-31 01:00:00,1,0.0500,extra",  # bad (extra field), that day
        "E6,A3",  # too few fields: no date, first drop
    ]
    (src / "usage.csv").write_text("\n".join([header, *lines]) + "\n")
    (src / "accounts.csv").write_text("account_id\nA1\n")
    counts = split_by_day(src, tmp_path / "d1", tmp_path / "d2", "2026-01-31")
    assert counts == {"first": 3, "second": 3}
    first = (tmp_path / "d1" / "usage.csv").read_text().splitlines()
    second = (tmp_path / "d2" / "usage.csv").read_text().splitlines()
    assert first == [header, lines[0], lines[3], lines[5]]
    assert second == [header, lines[1], lines[2], lines[4]]
    # Everything but usage goes, unchanged, to the first drop only.
    assert (tmp_path / "d1" / "accounts.csv").read_text() == "account_id\nA1\n"
    assert sorted(p.name for p in (tmp_path / "d2").iterdir()) == ["usage.csv"]
