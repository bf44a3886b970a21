"""`billrun demo`: generate a small data set, bill two months of nights, reprocess a closed
period after late usage arrives, and show where everything is."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
from rich.console import Console
from rich.table import Table

from pipeline.money import format_amount, format_quantity
from store.parquet_set import parquet_pointer

DEMO_NIGHTS = [date(2026, 1, 15), date(2026, 2, 1), date(2026, 2, 15), date(2026, 3, 1)]
LATE_PERIOD = "2026-01"


def late_usage(accounts_csv: Path, count: int = 5) -> pl.DataFrame:
    """A handful of January calls that arrive after January was finalized."""
    accounts = pl.read_csv(accounts_csv, infer_schema=False)
    ids = (
        accounts.filter(pl.col("status") == "active")
        .select("account_id")
        .unique(maintain_order=True)
        .head(count)["account_id"]
    )
    return pl.DataFrame(
        {
            "event_id": [f"LATE-{i:03d}" for i in range(len(ids))],
            "account_id": ids,
            "service": "voice",
            "destination_group": "US",
            "started_at": "2026-01-28 09:30:00",
            "quantity": "130",
            "amount": "2.6000",
        }
    )


def _show(console: Console, title: str, rows: list[tuple], columns: list[str]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def bill_demo(inputs: Path, db: Path, console: Console) -> Path:
    """Load `inputs` into `db`, bill two months of nights, reprocess January after late usage
    arrives, and print the invoices, the adjustments and where to look. Returns the analyst copy.
    """
    from flows.load import load_flow
    from flows.nightly import nightly_flow
    from flows.reprocess import reprocess_flow

    for stale in db.parent.glob(f"{db.stem}*.duckdb*"):
        stale.unlink()
    load_flow(str(inputs), str(db))
    console.print(f"[bold]1.[/bold] loaded {inputs} into {db}")
    for night in DEMO_NIGHTS:
        summary = nightly_flow(as_of=night, db=str(db))
        console.print(
            f"[bold]2.[/bold] nightly as of {night}: {summary.drafts:,} draft and "
            f"{summary.finalized:,} finalized account-periods, {summary.charge_lines:,} lines"
        )
    late = db.parent / "late"
    late.mkdir(exist_ok=True)
    late_usage(inputs / "accounts.csv").write_csv(late / "usage.csv")
    load_flow(str(late), str(db))
    summary = reprocess_flow(period=LATE_PERIOD, db=str(db))
    console.print(
        f"[bold]3.[/bold] late January calls loaded; reprocess {LATE_PERIOD}: "
        f"{summary.adjustments} adjustment line(s) on finalized invoices"
    )
    with duckdb.connect(str(summary.analyst_copy), read_only=True) as con:
        units = dict(con.execute("SELECT currency, minor_units FROM catalog_currencies").fetchall())
        _show(
            console,
            "Invoices by period (analyst view invoice_summary)",
            [
                (period, status, currency, n, format_amount(total, units[currency], currency))
                for period, status, currency, n, total in con.execute(
                    "SELECT * FROM invoice_summary"
                ).fetchall()
            ],
            ["period", "status", "currency", "invoices", "total"],
        )
        _show(
            console,
            "Adjustments to finalized periods",
            [
                (account, period, line, format_quantity(quantity),
                 format_amount(amount, units[cur], cur), why)
                for account, period, line, quantity, amount, cur, why in con.execute(
                    "SELECT account_id, period, line_type, quantity, amount, currency, reason "
                    "FROM adjustments ORDER BY account_id, line_type"
                ).fetchall()
            ],
            ["account", "period", "line", "quantity", "amount", "reason"],
        )
    copy = Path(summary.analyst_copy)
    invoices = write_last_invoices(db)
    console.print(f"working database: {db.resolve()}")
    console.print(f"analysts open:    {copy}  (read-only, swapped after each run)")
    console.print(f"Parquet files:    {parquet_pointer(db.resolve())}/  (by table, and period)")
    console.print(f"analyst shell:    billrun sql --db {db}")
    console.print(f"try:  billrun explain --db {db} --account <id> --period {LATE_PERIOD}")
    if summary.report:
        console.print(f"run report:       {summary.report}  (open in a browser; works offline)")
    if invoices is not None:
        period, folder, count = invoices
        console.print(f"invoices:         {count:,} final invoice(s) of {period}, one HTML page "
                      f"each, in {folder.resolve()}/  (print them from a browser)")
        console.print(f"try:  billrun invoice --db {db} --account <id>   (its invoices and notes)")
    return Path(summary.analyst_copy)


def write_last_invoices(db: Path) -> tuple[str, Path, int] | None:
    """Write every final invoice of the last finalized period into `<demo>/invoices/<period>/`
    (SPEC §9); returns the period, the folder and how many, or None when nothing is final."""
    from billrun.invoice import open_copy, write_period

    con = open_copy(db)
    try:
        period = con.execute(
            "SELECT max(period) FROM invoices WHERE status = 'final'").fetchone()[0]
    finally:
        con.close()
    if period is None:
        return None
    folder = db.parent / "invoices" / period
    return period, folder, len(write_period(db, period, folder))
