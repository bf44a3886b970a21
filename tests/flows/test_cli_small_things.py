"""Small things people expect (issue 13 item 6), through the real `billrun` script:
`--version`, `nightly --dry-run`, and progress as plain lines when output is not a terminal."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import duckdb
import pytest

from store.snapshot import analyst_path

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def billrun(*args: str) -> subprocess.CompletedProcess[str]:
    # Pipes, not a terminal: what cron, CI or `| tee` see.
    return subprocess.run(
        [str(BIN / "billrun"), *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_version_comes_from_the_package_metadata() -> None:
    done = billrun("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"billrun {version('billrun')}"


def test_dry_run_plans_writes_nothing_and_matches_the_real_run(
    scenario: dict[str, Path],
) -> None:
    from flows.load import load_flow

    db = scenario["db"]
    # The load in this process (the flow `billrun load` calls): the test is about the nightly's
    # dry run, and a command's start costs a CPU-second or two on CI's busy cores.
    load_flow(str(scenario["drop"]), str(db))
    before, copy_before = digest(db), digest(analyst_path(db))  # the load published a copy
    planned = billrun("nightly", "--as-of", "2026-03-15", "--dry-run", "--db", str(db))
    assert planned.returncode == 0, planned.stderr
    # A1's first activity is AS_V100's start, 2026-01-01 (billing day 1): January and February
    # ended on or before March 15 and would be finalized; March is open and would be drafted.
    rows = [line.split("│")[1:4] for line in planned.stdout.splitlines() if "│ 2026-" in line]
    assert [[c.strip() for c in r] for r in rows] == [
        ["2026-01", "finalize", "1"],
        ["2026-02", "finalize", "1"],
        ["2026-03", "draft (open period)", "1"],
    ]
    assert "3 period(s), 3 account-period(s)" in planned.stdout
    assert digest(db) == before  # nothing written: no run, no lock taken, no new analyst copy
    assert digest(analyst_path(db)) == copy_before

    # The real run, its progress as plain lines on a pipe: one line per period, no escapes.
    ran = billrun("nightly", "--as-of", "2026-03-15", "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    for line in ("nightly: 1/3 periods (33%)", "nightly: 2/3 periods (67%)",
                 "nightly: 3/3 periods (100%)"):
        assert line in ran.stderr.splitlines()
    assert "\x1b" not in ran.stderr + ran.stdout
    with duckdb.connect(str(db), read_only=True) as con:
        billed = con.execute(
            "SELECT period, status, count(*) FROM invoices GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    assert billed == [("2026-01", "final", 1), ("2026-02", "final", 1), ("2026-03", "draft", 1)]

    # Once run, only the open period is left to redraft.
    again = billrun("nightly", "--as-of", "2026-03-15", "--dry-run", "--db", str(db))
    assert "1 period(s), 1 account-period(s)" in again.stdout


def test_dry_run_without_a_database_is_exit_2(tmp_path: Path) -> None:
    done = billrun("nightly", "--as-of", "2026-03-15", "--dry-run", "--db",
                   str(tmp_path / "none.duckdb"))
    assert done.returncode == 2 and "no database" in done.stderr
    assert not (tmp_path / "none.duckdb").exists()


def test_generate_progress_is_plain_lines_off_a_terminal(tmp_path: Path) -> None:
    done = billrun("generate", "--accounts", "30", "--out", str(tmp_path / "g"), "--months", "1")
    assert done.returncode == 0, done.stderr
    assert "generating 30 accounts: 30/30 (100%)" in done.stderr.splitlines()
    assert "\x1b" not in done.stderr
