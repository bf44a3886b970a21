"""The report's tables and charts, declared once from the frames (pure): the HTML page and the
Prefect markdown artifact both render these, so they always show the same numbers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from report.data import ReportData

# A long table shows its TOP_ROWS largest rows, then "others" rows that sum the rest (one per
# currency: amounts are never summed across currencies), so the page stays short (issue 21: a
# 282-row table made it 12,400 px tall). A chart shows at most CHART_SERIES series (one colour
# each, never repeated) and CHART_CATEGORIES groups, the smallest folded into "others".
TOP_ROWS = 10
CHART_SERIES = 8
CHART_CATEGORIES = 12
OTHERS = "others"


@dataclass(frozen=True)
class Table:
    """A titled table of display strings; `columns` are the keys the cells are tagged with,
    `headers` what the reader sees above them (default: the keys), `caption` a note on what is
    shown (e.g. that only the top rows are)."""

    table_id: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    headers: list[str] | None = None


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
    note: str = ""  # what was folded into "others", if anything


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
    money_columns = {"total", "amount", "discount_given", "net"}
    out = []
    for row in frame.select(columns).to_dicts() if frame.height else []:
        out.append([
            money(row[c], row["currency"], data.minor_units) if c in money_columns
            else _text(row[c])
            for c in columns
        ])
    return out


def top_rows(frame: pl.DataFrame, rank_by: str, summed: list[str]) -> tuple[pl.DataFrame, str]:
    """Per currency (amounts of two currencies are never compared or summed), the TOP_ROWS rows
    largest by |`rank_by`|, in the frame's order, then one "others" row whose `summed` columns
    add up the rest and whose first column says how many rows it holds; and the caption that
    says so. A currency with at most TOP_ROWS + 1 rows is shown whole (an "others" row would
    not make it shorter), and a table where every currency is keeps its order."""
    by = ["currency"] if "currency" in frame.columns else []
    ranked = frame.with_row_index("_order").with_columns(
        pl.col(rank_by).abs().rank("ordinal", descending=True).over(by or pl.lit(1))
        .alias("_rank"),
        pl.len().over(by or pl.lit(1)).alias("_count"),
    )
    long = ranked.filter(pl.col("_count") > TOP_ROWS + 1)
    if not long.height:
        return frame, ""
    kept = ranked.filter((pl.col("_count") <= TOP_ROWS + 1) | (pl.col("_rank") <= TOP_ROWS))
    rest = long.filter(pl.col("_rank") > TOP_ROWS)
    first = frame.columns[0]
    others = (rest.group_by(by) if by else rest.group_by(pl.lit(1))).agg(
        *(pl.col(c).sum() for c in summed), pl.len().alias("_rows"),
        pl.lit(1 << 62).alias("_order"),  # after every row of its currency
    ).with_columns(
        pl.concat_str(pl.lit(f"{OTHERS} ("), pl.col("_rows").cast(pl.Utf8), pl.lit(")"))
        .alias(first)
    ).select(first, *by, *summed, "_order")
    folded = pl.concat(
        [kept.select(*frame.columns, "_order"),
         others.cast({c: t for c, t in frame.schema.items() if c in others.columns})],
        how="diagonal_relaxed",
    ).sort(*by, "_order").drop("_order")
    per = ", per currency" if by else ""
    caption = (f"The top {TOP_ROWS} rows by {rank_by.replace('_', ' ')}{per}; the other "
               f"{rest.height:,} of the {frame.height:,} rows are summed in the "
               f"\"{OTHERS}\" row{'s' if by and others.height > 1 else ''}.")
    return folded, caption


# A stage is named by its kind and start time, e.g. "load 02:00:03".
_STAGE = pl.concat_str(
    pl.col("kind"), pl.lit(" "), pl.col("started_at").dt.strftime("%H:%M:%S")
).alias("stage")


def summary_tables(data: ReportData) -> list[Table]:
    """Every table the report shows, in page order."""
    tables = headline_tables(data)
    if data.facts:
        tables.append(Table("run-facts", "What the run did", ["measure", "value"],
                            [[k, v] for k, v in data.facts]))
    stages = data.stages.with_columns(_STAGE)
    invoices, invoices_note = top_rows(data.invoices, "total", ["invoices", "total"])
    revenue, revenue_note = top_rows(data.revenue, "amount", ["amount", "lines"])
    discounts, discounts_note = top_rows(data.discounts, "discount_given",
                                         ["discount_given", "lines"])
    rejected, rejected_note = top_rows(data.rejected, "rows", ["rows"])
    tables += [
        Table("stages", "The run's stages (table runs)",
              ["stage", "run_id", "status", "seconds", "rows_in", "rows_out"],
              [[_text(v) for v in r] for r in stages.select(
                  "stage", "run_id", "status", "seconds", "rows_in", "rows_out").rows()]),
        Table("invoices", "Invoices by period, status and currency",
              ["period", "status", "currency", "invoices", "total"],
              _rows(invoices, ["period", "status", "currency", "invoices", "total"], data),
              invoices_note),
        Table("revenue", "Revenue by add-on and line type",
              ["period", "addon_id", "line_type", "currency", "amount", "lines"],
              _rows(revenue, ["period", "addon_id", "line_type", "currency", "amount", "lines"],
                    data),
              revenue_note),
        Table("discounts", "Discount given by plan",
              ["period", "discount_plan_id", "currency", "discount_given", "lines"],
              _rows(discounts, ["period", "discount_plan_id", "currency", "discount_given",
                                "lines"], data),
              discounts_note),
        Table("rejected", "Rejected rows by file and reason",
              ["source", "reason", "rows", "example"],
              [[_text(v) for v in r] for r in rejected.select(
                  "source", "reason", "rows", "example").rows()],
              rejected_note),
        Table("recent-runs", "Recent runs",
              ["run_id", "kind", "period", "as_of", "status", "seconds", "rows_in", "rows_out"],
              [[_text(v) for v in r] for r in data.recent_runs.select(
                  "run_id", "kind", "period", "as_of", "status", "seconds", "rows_in",
                  "rows_out").rows()]),
    ]
    return tables


def headline_tables(data: ReportData) -> list[Table]:
    """The headline (docs/REPORT.md): billed this period against the last, per currency; then
    adjustments, rejected rows and late usage, one row each (late usage: one per period)."""
    head = data.headline
    if head is None:
        return []
    billed = head.billed
    rows = []
    for currency in sorted(set(billed["currency"].to_list())) if billed.height else []:
        of = billed.filter(pl.col("currency") == currency)
        this = of.filter(pl.col("period") == head.period)
        last = of.filter(pl.col("period") == head.last_period)

        def cell(one: pl.DataFrame, currency: str = currency) -> str:
            if not one.height:
                return "nothing billed"
            count = one["invoices"][0]
            return (f"{money(one['total'][0], currency, data.minor_units)} "
                    f"({count:,} invoice{'' if count == 1 else 's'}, {one['status'][0]})")

        difference = (money(this["total"][0] - last["total"][0], currency, data.minor_units)
                      if this.height and last.height else "")
        if difference and not difference.startswith("-"):
            difference = f"+{difference}"
        rows.append([currency, cell(last), cell(this), difference])
    return [
        Table("headline-billed", f"Billed in {head.period} against {head.last_period}",
              ["currency", "last", "this", "difference"], rows,
              "Invoice totals per currency, at the currency's precision; adjustments to final "
              "periods are counted below.",
              headers=["currency", f"{head.last_period} (last period)",
                       f"{head.period} (this period)", "difference"]),
        Table("headline-facts", "Adjusted, rejected and waiting", ["measure", "value"],
              [["adjustments", adjustments_text(data)],
               ["rejected rows", rejected_text(head.rejected_rows)],
               *late_usage_rows(head.late_usage)]),
    ]


def adjustments_text(data: ReportData) -> str:
    """`2 lines, net 3.00 USD (to 2026-01)`, per currency; or that there are none."""
    head = data.headline
    assert head is not None
    first, last = data.periods[0], data.periods[-1]
    frame = head.adjustments
    if not frame.height:
        return f"none to the periods {first} to {last}" if first != last else f"none to {last}"
    parts = []
    for currency, lines, net, periods in frame.group_by("currency").agg(
        pl.col("lines").sum(), pl.col("net").sum(), pl.col("period").unique().sort()
    ).sort("currency").rows():
        shown = money(net, currency, data.minor_units)
        parts.append(f"{lines:,} line{'' if lines == 1 else 's'}, net "
                     f"{'' if shown.startswith('-') else '+'}{shown} {currency} "
                     f"(to {', '.join(periods)})")
    return "; ".join(parts)


def rejected_text(count: int) -> str:
    if not count:
        return "none"
    return (f"{count:,} row{'' if count == 1 else 's'} in all loads: see \"Rejected rows\" "
            "below, or billrun sql \"SELECT * FROM rejected_rows\"")


def late_usage_rows(late: dict[str, int]) -> list[list[str]]:
    """One row per period with late usage waiting, with the command that bills it."""
    if not late:
        return [["late usage waiting", "none"]]
    return [[f"late usage waiting, {period}",
             f"{events:,} event{'' if events == 1 else 's'} in a final period, not billed yet: "
             f"billrun reprocess --period {period}"]
            for period, events in late.items()]


def _fold(frame: pl.DataFrame, column: str, value: str, keep: int) -> tuple[pl.DataFrame, int]:
    """Keep the `keep` - 1 names of `column` largest by the sum of |`value`| when there are
    more than `keep`, and rename the others "others"; returns the frame and how many were
    folded."""
    weights = frame.group_by(column).agg(pl.col(value).abs().sum().alias("_weight")).sort(
        ["_weight", column], descending=[True, False])
    if weights.height <= keep:
        return frame, 0
    kept = weights[column].head(keep - 1)
    folded = frame.with_columns(
        pl.when(pl.col(column).is_in(kept.implode())).then(pl.col(column))
        .otherwise(pl.lit(OTHERS)).alias(column))
    return folded, weights.height - kept.len()


_PLURAL = {"addon_id": "add-ons", "discount_plan_id": "discount plans", "line_type": "line types",
           "reason": "reasons", "source": "files", "period": "periods", "status": "statuses",
           "stage": "stages", "measure": "measures"}


def _ordered(names: set[str]) -> list[str]:
    """Sorted, with "others" last."""
    return sorted(names - {OTHERS}) + ([OTHERS] if OTHERS in names else [])


def _chart(
    chart_id: str, title: str, unit: str, frame: pl.DataFrame, category: str, series: str,
    value: str, currency: str | None, data: ReportData,
) -> Chart:
    """Sum `value` per (category, series) of `frame`; amounts shown in `currency`. At most
    CHART_SERIES series and CHART_CATEGORIES categories: the smallest fold into "others"."""
    summed = frame.group_by(category, series).agg(pl.col(value).sum())
    summed = summed.with_columns(pl.col(category).cast(pl.Utf8), pl.col(series).cast(pl.Utf8))
    summed, folded_series = _fold(summed, series, value, CHART_SERIES)
    summed, folded_categories = _fold(summed, category, value, CHART_CATEGORIES)
    summed = summed.group_by(category, series).agg(pl.col(value).sum())
    values = {(str(c), str(s)): v for c, s, v in summed.rows()}
    shown = {
        key: money(v, currency, data.minor_units) if currency else _text(v)
        for key, v in values.items()
    }
    notes = [f"{count:,} smaller {_PLURAL.get(name, name)} summed in \"{OTHERS}\""
             for count, name in ((folded_categories, category), (folded_series, series))
             if count]
    return Chart(
        chart_id, title, unit,
        categories=_ordered({c for c, _ in values}),
        series=_ordered({s for _, s in values}),
        values=values, shown=shown, note="; ".join(notes),
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
