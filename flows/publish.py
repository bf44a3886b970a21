"""What a run reports: its summary, the Prefect artifacts, the refreshed catalog and views."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from prefect import get_run_logger
from prefect.artifacts import create_table_artifact

from flows.coordinator import StoredInputs
from flows.run_report import publish_report
from flows.timings import RunTimings
from pipeline.catalog import CatalogFrames
from pipeline.documents import DocumentTerms
from pipeline.money import format_amount
from rules.conflicts import offer_verdicts
from store.clock import utc_now
from store.late_usage import LateAdjusted, late_usage_by_period
from store.parquet_set import UnitFiles
from store.results import (
    TOUCHED,
    ResultsBatch,
    StagedTotals,
    read_staged_totals,
    write_results,
)
from store.snapshot import publish_snapshot
from store.unit_rows import ROWS_TABLES, staged_rows_files
from store.views import create_views, write_catalog_tables


@dataclass
class RunSummary:
    """What a billing run did, for the CLI summary and Prefect artifacts."""

    run_id: str
    kind: str
    periods: list[str] = field(default_factory=list)
    account_periods: int = 0
    drafts: int = 0
    finalized: int = 0
    charge_lines: int = 0
    adjustments: int = 0
    # per currency: `currency, invoices, total_minor` of the invoices the run wrote
    invoices: pl.DataFrame = field(default_factory=pl.DataFrame)
    adjustment_lines: pl.DataFrame = field(default_factory=pl.DataFrame)
    changes: dict[str, int] = field(default_factory=dict)
    analyst_copy: str = ""
    seconds: float = 0.0
    minor_units: dict[str, int] = field(default_factory=dict)  # currency -> minor units
    report: str = ""  # the HTML run report, once written (flows/run_report.py)
    # kind, issued, first, last: the invoice and note numbers the run issued (SPEC §9)
    documents: pl.DataFrame = field(default_factory=pl.DataFrame)
    late_usage: dict[str, int] = field(default_factory=dict)  # period -> late events waiting
    # the periods whose late usage a nightly with `late_usage = "adjust"` reprocessed
    late_adjusted: list[LateAdjusted] = field(default_factory=list)
    # where the run's time went: the coordinator's phases, the units' rounds (flows/timings.py)
    timings: RunTimings | None = None

    @classmethod
    def of(
        cls,
        run_id: str,
        kind: str,
        plan: pl.DataFrame,
        totals: StagedTotals,
        changes: dict[str, int],
        analyst: Path,
        started: datetime,
        currencies: pl.DataFrame,
    ) -> RunSummary:
        """Summarize a committed run from its plan and the aggregates of its staged outputs."""
        return cls(
            run_id=run_id,
            kind=kind,
            periods=sorted(plan["period"].unique().to_list()) if plan.height else [],
            account_periods=plan.height,
            drafts=plan.filter(pl.col("status") == "draft").height if plan.height else 0,
            finalized=plan.filter(pl.col("status") == "final").height if plan.height else 0,
            charge_lines=totals.charge_lines,
            adjustments=totals.adjustments.height,
            invoices=totals.invoices,
            adjustment_lines=totals.adjustments,
            changes=changes,
            analyst_copy=str(Path(analyst).absolute()),  # the link, not the set it shows now
            seconds=(utc_now() - started).total_seconds(),
            minor_units=dict(currencies.select("currency", "minor_units").iter_rows()),
            documents=totals.documents,
            late_usage=totals.late_usage,
        )


def finish_run(
    con: Any, db: str, batch: ResultsBatch, stored: StoredInputs, memory_limit: str | None = None,
    timings: RunTimings | None = None,
) -> tuple[dict[str, int], Path, StagedTotals]:
    """Write the run's staged batch in one transaction (catalog tables and views included),
    aggregate what the summary shows, close the connection and publish the Parquet set and its
    analyst file (only the partitions of the periods that changed are written again);
    returns what changed, the analyst file's path and the aggregates. `memory_limit`: DuckDB's cap
    while it commits. `timings` receives each step's wall time: the commit's, the totals read
    for the summary, the publication's."""
    timings = timings if timings is not None else RunTimings()
    try:
        if memory_limit:
            con.execute(f"SET memory_limit = '{memory_limit}'")
        refresh = catalog_and_views(
            stored.frames, stored.policy, offer_verdicts(stored.catalog, stored.policy)  # type: ignore[arg-type]
        )
        seconds: dict[str, float] = {}
        batch = replace(batch, terms=DocumentTerms.of(stored.catalog))
        with timings.cpu_of("commit"):
            changes = write_results(con, batch, stored.frames.currencies, also=refresh,
                                    seconds=seconds)
        timings.add("commit", seconds)
        with timings.phase("report", "totals"):
            totals = replace(read_staged_totals(con, batch.stage, stored.frames.currencies),
                             late_usage=late_usage_by_period(con))
            touched = periods_touched(con)
    finally:
        con.close()
    # The run's staged files are still there (its staging folder goes when the run ends): the
    # set takes the charges and decisions of the periods it wrote whole from them.
    units = UnitFiles(batch.run.run_id,
                      {name: staged_rows_files(batch.stage, name) for name in ROWS_TABLES})
    published: dict[str, float] = {}
    with timings.cpu_of("publication"):
        analyst = publish_snapshot(db, batch.run.run_id, published, touched, units)
    timings.add("publication", published)
    get_run_logger().info(
        "commit steps: %s",
        ", ".join(f"{step} {s:.1f} s" for step, s in {**seconds, **published}.items()),
    )
    return changes, analyst, totals


def periods_touched(con: Any) -> frozenset[str] | None:
    """Every period the run wrote in a period-split table (its recomputed ones, and those its
    counters, parcels and documents reached: store/results.py `TOUCHED`, left in the connection
    by the commit): the publication reads and writes again only their partitions
    (store/parquet_set.py checks the others by row counts). None if the commit left no list:
    the publication then counts every partition."""
    try:
        return frozenset(p for (p,) in con.execute(f"SELECT DISTINCT period FROM {TOUCHED}")
                         .fetchall())
    except duckdb.CatalogException:
        return None


def catalog_and_views(
    frames: CatalogFrames, policy: str, addon_conflicts: pl.DataFrame
) -> Callable[[Any], None]:
    """Catalog tables (with the conflicts ruleset's verdicts on add-on pairs) and analyst views,
    refreshed inside the run's transaction."""

    def refresh(con: Any) -> None:
        write_catalog_tables(con, frames, policy, addon_conflicts)
        create_views(con)

    return refresh


def invoice_totals(summary: RunSummary) -> dict[str, str]:
    """Per currency, the number of invoices the run wrote and their total, as people read it."""
    if summary.invoices.height == 0:
        return {}
    return {
        currency: f"{n:,} totalling "
        + format_amount(total, summary.minor_units[currency], currency, in_minor=True)
        for currency, n, total in summary.invoices.select(
            "currency", "invoices", "total_minor"
        ).iter_rows()
    }


def documents_issued(summary: RunSummary) -> dict[str, str]:
    """Per kind, how many numbers the run issued, with the first and the last: `invoices` ->
    `2 (INV-00000001 to INV-00000002)`; every kind is listed, `0` when it issued none."""
    issued = {kind: (n, first, last) for kind, n, first, last in (
        summary.documents.iter_rows() if summary.documents.height else [])}
    shown = {}
    for kind, label in (("invoice", "invoices"), ("credit_note", "credit notes"),
                        ("debit_note", "debit notes")):
        n, first, last = issued.get(kind, (0, None, None))
        shown[f"{label} issued"] = (
            "0" if not n else f"{n:,} ({first})" if n == 1 else f"{n:,} ({first} to {last})")
    return shown


def publish_artifacts(summary: RunSummary, revenue: pl.DataFrame) -> None:
    """Attach the run's summary and revenue by add-on (`period, addon_id, currency, net_minor,
    lines`, aggregated in DuckDB over the staged lines) to the flow run in Prefect."""
    rows = [
        {"measure": "run_id", "value": summary.run_id},
        {"measure": "periods", "value": ", ".join(summary.periods)},
        {"measure": "account-periods", "value": str(summary.account_periods)},
        {"measure": "drafts", "value": str(summary.drafts)},
        {"measure": "finalized", "value": str(summary.finalized)},
        {"measure": "charge lines", "value": str(summary.charge_lines)},
        {"measure": "adjustments", "value": str(summary.adjustments)},
        *({"measure": k, "value": str(v)} for k, v in summary.changes.items()
          if not k.endswith("_issued")),
        *({"measure": k, "value": v} for k, v in documents_issued(summary).items()),
        *(
            {"measure": f"invoices {currency}", "value": total}
            for currency, total in invoice_totals(summary).items()
        ),
    ]
    create_table_artifact(
        key=f"{summary.kind}-summary", table=rows, description=f"billrun {summary.kind} run"
    )
    if revenue.height:
        create_table_artifact(
            key=f"{summary.kind}-revenue-by-addon",
            table=[
                {**row, "net_minor": str(row["net_minor"]), "net": format_amount(
                    row["net_minor"], summary.minor_units[row["currency"]], row["currency"],
                    in_minor=True,
                )}
                for row in revenue.to_dicts()
            ],
            description="Net amount per period, add-on and currency (net_minor: in minor units)",
        )
    publish_report(summary)
