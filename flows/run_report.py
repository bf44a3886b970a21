"""After a billing run: write the HTML run report beside the analyst copy and link it from the
run's Prefect artifacts, with the same summary tables as markdown."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from pipeline.contracts import RUN_CHANGE_LABELS
from report.gather import ReportError, gather
from report.markdown import render_markdown
from report.write import write_html

if TYPE_CHECKING:
    from flows.publish import RunSummary


def report_beside(analyst_copy: str | Path) -> Path:
    """`billrun.analyst.duckdb` -> `billrun.report.html` (the same name as `billrun report`)."""
    copy = Path(analyst_copy)
    base = copy.name.removesuffix(copy.suffix).removesuffix(".analyst")
    return copy.with_name(f"{base}.report.html")


def run_facts(summary: RunSummary) -> list[tuple[str, str]]:
    """What the flow itself reports about the run, as (measure, value) rows."""
    from flows.publish import documents_issued  # flows.publish imports this module

    facts = [
        ("run", f"{summary.kind} {summary.run_id}"),
        ("periods", ", ".join(summary.periods) or "none"),
        ("invoices computed", f"{summary.account_periods:,}"),
        ("drafts / final", f"{summary.drafts:,} / {summary.finalized:,}"),
        ("charge lines", f"{summary.charge_lines:,}"),
        ("adjustment lines", f"{summary.adjustments:,}"),
        # In the business's words, as the CLI summary prints them.
        *((RUN_CHANGE_LABELS.get(key, key.replace("_", " ")), f"{value:,}")
          for key, value in summary.changes.items()
          if not key.endswith("_issued") and key != "adjustments"),
        *documents_issued(summary).items(),  # SPEC §9: with the first and last numbers
        ("time", f"{summary.seconds:.1f} s"),
    ]
    # `summary.invoices` holds one row per currency: how many invoices, and their total.
    for currency, count, total_minor in summary.invoices.select(
        "currency", "invoices", "total_minor"
    ).iter_rows() if summary.invoices.height else []:
        units = summary.minor_units.get(currency, 2)
        total = Decimal(int(total_minor)).scaleb(-units)
        facts.append(
            (f"invoices {currency} (this run)", f"{count:,} totalling {total:,.{units}f}")
        )
    return facts


def publish_report(summary: RunSummary) -> Path | None:
    """Write the report and its artifacts; a report that cannot be written is a warning only:
    the run's results are committed by then."""
    logger = get_run_logger()
    target = report_beside(summary.analyst_copy)
    try:
        data = gather(summary.analyst_copy)
        data.facts = run_facts(summary)
        write_html(data, target)
    except ReportError as exc:
        logger.warning("run report not written: %s", exc)
        return None
    except Exception as exc:  # noqa: BLE001  (the run is committed: a report bug must not fail it)
        logger.warning("run report not written: %s: %s", type(exc).__name__, exc)
        return None
    summary.report = str(target.resolve())
    create_link_artifact(
        key=f"{summary.kind}-report-link", link=target.resolve().as_uri(),
        link_text=f"run report {summary.run_id}", description="billrun run report (HTML)",
    )
    create_markdown_artifact(
        key=f"{summary.kind}-report", markdown=render_markdown(data, target),
        description=f"billrun {summary.kind} run report: summary tables",
    )
    logger.info("run report: %s", target)
    return target
