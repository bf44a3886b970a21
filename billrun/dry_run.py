"""`billrun nightly --as-of D --dry-run`: what the nightly run would do, writing nothing.

The plan is `pipeline.schedule.nightly_plan`, the very function the nightly flow runs, over the
stored inputs read through a read-only connection; no Prefect flow, no lock, no analyst copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
from rich.console import Console
from rich.table import Table

from billrun.summary import error
from pipeline.schedule import nightly_plan, with_finalize_dates

ACTIONS = {"draft": "draft (open period)", "final": "finalize"}


def plan_summary(plan: pl.DataFrame, as_of: date, grace_days: int = 0) -> pl.DataFrame:
    """`period, status, until, accounts`: how many accounts each period would be computed for.
    `until` is set on the drafts of a period that has ended but waits for its grace to end
    (SPEC §8.3): the as-of date from which a nightly finalizes it."""
    waiting = (pl.col("status") == "draft") & (pl.col("period_end") <= as_of)
    return (
        with_finalize_dates(plan, grace_days)
        .with_columns(
            pl.when(waiting).then(pl.col("finalizes_on")).otherwise(None).alias("until")
        )
        .group_by("period", "status", "until")
        .agg(pl.col("account_id").n_unique().alias("accounts"))
        .sort("period", "status", "until", nulls_last=False)
        .select("period", "status", "until", "accounts")
    )


@dataclass(frozen=True)
class DryPlan:
    """The plan a nightly would run, and the grace it was made with."""

    plan: pl.DataFrame
    grace_days: int


def read_plan(db: str | Path, as_of: date, grace_days: int | None = None) -> DryPlan:
    """The nightly plan as of `as_of` over the stored inputs of `db`, read-only; the grace is
    `grace_days`, else the stored catalog's `finalize_grace_days` (as the nightly flow has it)."""
    from pipeline.catalog import parse_catalog
    from store import read_accounts, read_catalog_text
    from store.results import read_final_periods, read_first_activity

    con = duckdb.connect(str(db), read_only=True)
    try:
        if grace_days is None:  # no catalog loaded yet: nothing can be final early anyway
            text = read_catalog_text(con)
            grace_days = parse_catalog(text).finalize_grace_days if text else 0
        plan = nightly_plan(
            read_accounts(con), read_first_activity(con), read_final_periods(con), as_of,
            grace_days,
        )
        return DryPlan(plan, grace_days)
    finally:
        con.close()


def _action(status: str, until: date | None, grace_days: int) -> str:
    if until is None:
        return ACTIONS[status]
    return f"draft until {until} (grace {grace_days} day{'s' if grace_days != 1 else ''})"


def read_late_usage(db: str | Path) -> dict[str, int]:
    """`period -> events` of the late usage waiting in `db` (read-only)."""
    from store.late_usage import late_usage_by_period

    con = duckdb.connect(str(db), read_only=True)
    try:
        return late_usage_by_period(con)
    finally:
        con.close()


def print_dry_run(
    db: str | Path, as_of: date, input_dir: str | None, console: Console,
    grace_days: int | None = None, late_usage: str = "report",
) -> None:
    """Print the plan: per period, draft or finalize, and how many accounts. A period that
    ended but waits for its grace says until when (`2026-01: draft until 2026-02-04 (grace 3
    days)`). The final periods with late usage are listed after it: with `late_usage` "adjust"
    as periods the night would reprocess, else with the command that bills them."""
    dry = read_plan(db, as_of, grace_days)
    summary = plan_summary(dry.plan, as_of, dry.grace_days)
    table = Table(
        title=f"billrun nightly --dry-run as of {as_of}: nothing is written",
        title_justify="left",
    )
    for name in ("period", "would", "accounts"):
        table.add_column(name, justify="right" if name == "accounts" else "left", overflow="fold")
    for period, status, until, accounts in summary.iter_rows():
        table.add_row(period, _action(status, until, dry.grace_days), f"{accounts:,}")
    console.print(table)
    if summary.height == 0:
        console.print("nothing to bill: no account has activity up to that date")
    else:
        n = summary["accounts"].sum()
        periods = summary["period"].n_unique()
        console.print(f"{periods} period(s), {n:,} account-period(s) would be computed")
    for period, _, until, _ in summary.filter(pl.col("until").is_not_null()).iter_rows():
        console.print(f"{period}: {_action('draft', until, dry.grace_days)}")
    late = read_late_usage(db)
    if late_usage == "adjust":
        for period, events in late.items():
            console.print(f"{period}: reprocess its final accounts for {events:,} late "
                          "event(s), with adjustment lines (late_usage = adjust)")
    else:
        from store.late_usage import late_usage_lines

        for label, text in late_usage_lines(late):
            console.print(f"{label}: {text}")
    if input_dir:
        console.print(
            f"note: {input_dir} is not loaded by a dry run; the plan covers the inputs already "
            "in the database"
        )


def dry_run_command(
    db: str | Path, as_of: date, input_dir: str | None, console: Console, err: Console,
    grace_days: int | None = None, late_usage: str = "report",
) -> int:
    """Run the dry run for the CLI; returns the exit code (2: no database, 1: unreadable)."""
    if not Path(db).exists():
        error(f"no database at {db}: run `billrun load` first", err)
        return 2
    try:
        print_dry_run(db, as_of, input_dir, console, grace_days, late_usage)
    except duckdb.IOException as exc:  # a run holds the file: DuckDB allows no reader then
        error(f"cannot read {db} now: {exc}", err)
        return 1
    except duckdb.Error as exc:
        error(f"cannot plan from {db}: {type(exc).__name__}: {exc}", err)
        return 1
    return 0
