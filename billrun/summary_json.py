"""`--json` of the summaries (`load`, `nightly`, `reprocess`) and of `config`: one JSON document
on stdout, the contract for scripts (the tables people read may change; these keys do not).
Amounts are strings at the currency's precision, counts are numbers, paths are absolute."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.money import format_amount

if TYPE_CHECKING:
    from billrun.config import Resolved
    from flows.publish import RunSummary
    from store import LoadReport


def load_json(report: LoadReport, db: str | Path, seconds: float) -> dict[str, Any]:
    """The load's summary: each file's rows in / loaded / unchanged / rejected, the totals."""
    return {
        "command": "load",
        "run_id": report.run_id,
        "files": [
            {"file": f.source, "kind": f.kind, "rows_in": f.rows_in, "loaded": f.loaded,
             "unchanged": f.unchanged, "rejected": f.rejected}
            for f in report.files
        ],
        "rows_in": report.rows_in,
        "loaded": report.rows_out,
        "unchanged": sum(f.unchanged for f in report.files),
        "rejected": report.rejected,
        "catalog": report.catalog,
        "late_usage": _late(getattr(report, "late_usage", {})),
        "analyst_copy": getattr(report, "analyst_copy", "") or None,
        "database": str(Path(db).resolve()),
        "seconds": round(seconds, 3),
    }


def run_json(summary: RunSummary) -> dict[str, Any]:
    """A billing run's summary (nightly or reprocess)."""
    invoices = []
    if summary.invoices.height:
        for currency, n, total in summary.invoices.select(
            "currency", "invoices", "total_minor"
        ).iter_rows():
            units = summary.minor_units[currency]
            invoices.append({"currency": currency, "invoices": n,
                             "total": format_amount(total, units, in_minor=True)
                             .replace(",", "")})
    documents = []
    if summary.documents.height:
        documents = [{"kind": kind, "issued": n, "first": first, "last": last}
                     for kind, n, first, last in summary.documents.iter_rows()]
    return {
        "command": summary.kind,
        "run_id": summary.run_id,
        "periods": list(summary.periods),
        "account_periods": summary.account_periods,
        "drafts": summary.drafts,
        "finalized": summary.finalized,
        "charge_lines": summary.charge_lines,
        "adjustment_lines": summary.adjustments,
        "invoices": invoices,
        "documents": documents,
        "changes": dict(summary.changes),
        "late_usage": _late(getattr(summary, "late_usage", {})),
        "late_usage_adjusted": _adjusted(summary),
        "analyst_copy": summary.analyst_copy,
        "report": getattr(summary, "report", "") or None,
        "seconds": round(summary.seconds, 3),
        # where the time went (flows/timings.py): for `billrun bench`; not a stable contract
        "timings": summary.timings.as_json() if getattr(summary, "timings", None) else None,
    }


def config_json(resolved: Resolved, keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Each setting's effective value (null when unset) and where it came from."""
    return {
        "file": str(resolved.file) if resolved.file else None,
        "settings": {key: {"value": getattr(resolved.settings, key),
                           "source": resolved.sources[key]} for key in keys},
    }


def _adjusted(summary: RunSummary) -> list[dict[str, Any]]:
    """Per period a nightly with `late_usage = "adjust"` reprocessed: its late events, the
    adjustment lines written and their net per currency (a signed decimal string)."""
    return [
        {"period": done.period, "events": done.events, "adjustment_lines": done.lines,
         "net": [{"currency": currency,
                  "amount": format_amount(net, summary.minor_units.get(currency, 2),
                                          in_minor=True).replace(",", "")}
                 for currency, net in sorted(done.net_minor.items())]}
        for done in getattr(summary, "late_adjusted", [])
    ]


def _late(late: dict[str, int]) -> list[dict[str, Any]]:
    return [{"period": period, "events": n, "bill_with": f"billrun reprocess --period {period}"}
            for period, n in late.items()]
