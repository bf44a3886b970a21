"""The report's tables and charts, declared once from the frames (pure): the HTML page and the
Prefect markdown artifact both render these, so they always show the same numbers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from report.data import ReportData


@dataclass(frozen=True)
class Table:
    """A titled table of display strings; `columns` are the keys the cells are tagged with."""

    table_id: str
    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Chart:
    """A grouped bar chart: exact values per (category, series) and their display text."""

    chart_id: str
    title: str
    unit: str
    categories: list[str]
    series: list[str]
    values: dict[tuple[str, str], Decimal | int]
    shown: dict[tuple[str, str], str]


def money(amount: Decimal | None, currency: str, minor_units: dict[str, int]) -> str:
    """An amount at its currency's precision (amounts are stored already rounded to it)."""
    if amount is None:
        return ""
    units = minor_units.get(currency, 2)
    return f"{Decimal(amount).quantize(Decimal(1).scaleb(-units)):,.{units}f}"


def _text(value: object) -> str:
    return "" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _rows(frame: pl.DataFrame, columns: list[str], data: ReportData) -> list[list[str]]:
    """Display strings; any column named like an amount is money in the row's currency."""
    money_columns = {"total", "amount", "discount_given"}
    out = []
    for row in frame.select(columns).to_dicts() if frame.height else []:
        out.append([
            money(row[c], row["currency"], data.minor_units) if c in money_columns
            else _text(row[c])
            for c in columns
        ])
    return out


# A stage is named by its kind and start time, e.g. "load 02:00:03".
_STAGE = pl.concat_str(
    pl.col("kind"), pl.lit(" "), pl.col("started_at").dt.strftime("%H:%M:%S")
).alias("stage")


def summary_tables(data: ReportData) -> list[Table]:
    """Every table the report shows, in page order."""
    tables = []
    if data.facts:
        tables.append(Table("run-facts", "What the run did", ["measure", "value"],
                            [[k, v] for k, v in data.facts]))
    stages = data.stages.with_columns(_STAGE)
    tables += [
        Table("stages", "The run's stages (table runs)",
              ["stage", "run_id", "status", "seconds", "rows_in", "rows_out"],
              [[_text(v) for v in r] for r in stages.select(
                  "stage", "run_id", "status", "seconds", "rows_in", "rows_out").rows()]),
        Table("invoices", "Invoices by period, status and currency",
              ["period", "status", "currency", "invoices", "total"],
              _rows(data.invoices, ["period", "status", "currency", "invoices", "total"], data)),
        Table("revenue", "Revenue by add-on and line type",
              ["period", "addon_id", "line_type", "currency", "amount", "lines"],
              _rows(data.revenue,
                    ["period", "addon_id", "line_type", "currency", "amount", "lines"], data)),
        Table("discounts", "Discount given by plan",
              ["period", "discount_plan_id", "currency", "discount_given", "lines"],
              _rows(data.discounts,
                    ["period", "discount_plan_id", "currency", "discount_given", "lines"], data)),
        Table("rejected", "Rejected rows by file and reason",
              ["source", "reason", "rows", "example"],
              [[_text(v) for v in r] for r in data.rejected.select(
                  "source", "reason", "rows", "example").rows()]),
        Table("recent-runs", "Recent runs",
              ["run_id", "kind", "period", "as_of", "status", "seconds", "rows_in", "rows_out"],
              [[_text(v) for v in r] for r in data.recent_runs.select(
                  "run_id", "kind", "period", "as_of", "status", "seconds", "rows_in",
                  "rows_out").rows()]),
    ]
    return tables


def _chart(
    chart_id: str, title: str, unit: str, frame: pl.DataFrame, category: str, series: str,
    value: str, currency: str | None, data: ReportData,
) -> Chart:
    """Sum `value` per (category, series) of `frame`; amounts shown in `currency`."""
    summed = frame.group_by(category, series).agg(pl.col(value).sum()).sort(category, series)
    values = {(str(c), str(s)): v for c, s, v in summed.rows()}
    shown = {
        key: money(v, currency, data.minor_units) if currency else _text(v)
        for key, v in values.items()
    }
    return Chart(
        chart_id, title, unit,
        categories=sorted({c for c, _ in values}),
        series=sorted({s for _, s in values}),
        values=values, shown=shown,
    )


def _currencies(frame: pl.DataFrame) -> list[str]:
    return sorted(frame["currency"].unique().to_list()) if frame.height else []


def charts(data: ReportData) -> list[tuple[str, Chart]]:
    """Every chart, each with the id of the section it belongs to, in page order."""
    out: list[tuple[str, Chart]] = []
    if data.stages.height:
        stages = data.stages.with_columns(_STAGE, pl.lit("seconds").alias("measure"))
        out.append(("stages", _chart("chart-stage-seconds", "Time per stage", "seconds",
                                     stages, "stage", "measure", "seconds", None, data)))
        rows = data.stages.with_columns(_STAGE).unpivot(
            ["rows_in", "rows_out"], index="stage", variable_name="measure", value_name="rows"
        ).drop_nulls("rows")
        out.append(("stages", _chart("chart-stage-rows", "Rows per stage", "rows",
                                     rows, "stage", "measure", "rows", None, data)))
    for cur in _currencies(data.invoices):
        frame = data.invoices.filter(pl.col("currency") == cur)
        out.append(("invoices", _chart(f"chart-invoices-{cur}", f"Invoice totals, {cur}", cur,
                                       frame, "period", "status", "total", cur, data)))
    for cur in _currencies(data.revenue):
        frame = data.revenue.filter(pl.col("currency") == cur)
        span = f"{data.periods[0]} to {data.periods[-1]}" if data.periods else ""
        out.append(("revenue", _chart(
            f"chart-revenue-lines-{cur}", f"Revenue by add-on and line type, {span}, {cur}", cur,
            frame, "addon_id", "line_type", "amount", cur, data)))
        out.append(("revenue", _chart(
            f"chart-revenue-periods-{cur}", f"Net revenue by period and add-on, {cur}", cur,
            frame, "period", "addon_id", "amount", cur, data)))
    for cur in _currencies(data.discounts):
        frame = data.discounts.filter(pl.col("currency") == cur)
        out.append(("discounts", _chart(
            f"chart-discounts-{cur}", f"Discount given by plan, {cur}", cur,
            frame, "period", "discount_plan_id", "discount_given", cur, data)))
    if data.rejected.height:
        out.append(("rejected", _chart("chart-rejected", "Rejected rows by file and reason",
                                       "rows", data.rejected, "source", "reason", "rows", None,
                                       data)))
    return out
