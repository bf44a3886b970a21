"""SPEC §8.3 through the real `billrun` script on a real DuckDB file: a grace period before a
period is finalized, the flag overriding the catalog's `finalize_grace_days`, the dry run
saying until when a period waits, and a late event landing in the draft, not in adjustments."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tests.flows.conftest import ACCOUNTS, ASSIGNMENTS, CATALOG, USAGE, write_drop

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent

# 30 more US minutes on Jan 28, delivered late (after the first night of February).
LATE_USAGE = """event_id,account_id,service,destination_group,started_at,quantity,amount
E3,A1,voice,US,2026-01-28 12:00:00,30,3.00
"""


def billrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "billrun"), *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )


def q(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_period_waits_for_its_grace_and_late_events_land_in_its_draft(tmp_path: Path) -> None:
    # The catalog's grace is 5 days; the flag's 3 overrides it (with 5, Feb 4 would not do).
    drop = write_drop(tmp_path / "drop1", catalog=CATALOG + "finalize_grace_days: 5\n",
                      accounts=ACCOUNTS, assignments=ASSIGNMENTS, usage=USAGE)
    late = write_drop(tmp_path / "drop2", usage=LATE_USAGE)
    db = tmp_path / "billrun.duckdb"

    bad = billrun("nightly", "--as-of", "2026-02-03", "--grace-days", "32", "--db", str(db))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "--grace-days" in bad.stderr and "0 to 31" in bad.stderr and not db.exists()

    first = billrun("nightly", "--as-of", "2026-02-03", "--input", str(drop), "--grace-days", "3",
                    "--db", str(db))
    assert first.returncode == 0, first.stderr
    assert q(db, "SELECT period, status FROM invoices ORDER BY period") == [
        ("2026-01", "draft"), ("2026-02", "draft"),
    ]
    # A draft in its grace is billed whole: the total a final January has (test_cli_runs.py).
    assert q(db, "SELECT total FROM invoices WHERE period = '2026-01'") == [(Decimal("37.32"),)]

    planned = billrun("nightly", "--as-of", "2026-02-03", "--dry-run", "--grace-days", "3",
                      "--db", str(db))
    assert planned.returncode == 0, planned.stderr
    assert "2026-01: draft until 2026-02-04 (grace 3 days)" in planned.stdout.splitlines()

    # The late event is loaded by the night that finalizes January: it is in January's bill.
    second = billrun("nightly", "--as-of", "2026-02-04", "--input", str(late), "--grace-days",
                     "3", "--db", str(db))
    assert second.returncode == 0, second.stderr
    assert q(db, "SELECT period, status FROM invoices ORDER BY period") == [
        ("2026-01", "final"), ("2026-02", "draft"),
    ]
    # 50 + 70 + 30 minutes at $0.10, the first 100 free: usage 15.00, discount -10.00.
    assert q(db, """SELECT sum(quantity), sum(amount) FROM charges
                    WHERE period = '2026-01' AND line_type = 'usage'""") == [
        (Decimal(150), Decimal("15.00")),
    ]
    assert q(db, "SELECT count(*) FROM adjustments") == [(0,)]
    assert q(db, "SELECT total FROM invoices WHERE period = '2026-01'") == [(Decimal("40.32"),)]
