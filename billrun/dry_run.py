"""`billrun nightly --as-of D --dry-run`: what the nightly run would do, writing nothing.

The plan is `pipeline.schedule.nightly_plan`, the very function the nightly flow runs, over the
stored inputs read through a read-only connection; no Prefect flow, no lock, no analyst copy.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
from rich.console import Console
from rich.table import Table

from pipeline.schedule import nightly_plan

ACTIONS = {"draft": "draft (open period)", "final": "finalize"}


def plan_summary(plan: pl.DataFrame) -> pl.DataFrame:
    """`period, status, accounts`: how many accounts each period would be computed for."""
    return (
        plan.group_by("period", "status")
        .agg(pl.col("account_id").n_unique().alias("accounts"))
        .sort("period", "status")
    )


def read_plan(db: str | Path, as_of: date) -> pl.DataFrame:
    """The nightly plan as of `as_of` over the stored inputs of `db`, read-only."""
    from store import read_accounts
    from store.results import read_final_periods, read_first_activity

    con = duckdb.connect(str(db), read_only=True)
    try:
        return nightly_plan(
            read_accounts(con), read_first_activity(con), read_final_periods(con), as_of
        )
    finally:
        con.close()


def print_dry_run(
    db: str | Path, as_of: date, input_dir: str | None, console: Console
) -> None:
    """Print the plan: per period, draft or finalize, and how many accounts."""
    summary = plan_summary(read_plan(db, as_of))
    table = Table(
        title=f"billrun nightly --dry-run as of {as_of}: nothing is written",
        title_justify="left",
    )
    for name in ("period", "would", "accounts"):
        table.add_column(name, justify="right" if name == "accounts" else "left")
    for period, status, accounts in summary.iter_rows():
        table.add_row(period, ACTIONS[status], f"{accounts:,}")
    console.print(table)
    if summary.height == 0:
        console.print("nothing to bill: no account has activity up to that date")
    else:
        n = summary["accounts"].sum()
        console.print(f"{summary.height} period(s), {n:,} account-period(s) would be computed")
    if input_dir:
        console.print(
            f"note: {input_dir} is not loaded by a dry run; the plan covers the inputs already "
            "in the database"
        )


def dry_run_command(
    db: str | Path, as_of: date, input_dir: str | None, console: Console, err: Console
) -> int:
    """Run the dry run for the CLI; returns the exit code (2: no database, 1: unreadable)."""
    if not Path(db).exists():
        err.print(f"[red]billrun: error:[/red] no database at {db}: run `billrun load` first")
        return 2
    try:
        print_dry_run(db, as_of, input_dir, console)
    except duckdb.IOException as exc:  # a run holds the file: DuckDB allows no reader then
        err.print(f"[red]billrun: cannot read {db} now:[/red] {exc}")
        return 1
    except duckdb.Error as exc:
        err.print(f"[red]billrun: cannot plan from {db}:[/red] {type(exc).__name__}: {exc}")
        return 1
    return 0
