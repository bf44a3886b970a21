"""The report's rendering is pure (frames in, HTML and markdown out) and shows amounts at their
currency's precision; the cron check of the configuration, table-driven."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billrun.config import check_cron
from report.charts import wrap_label
from report.data import ReportData
from report.markdown import render_markdown
from report.render import render_html
from report.tables import TOP_ROWS, charts, top_rows

D = Decimal
_RUNS = {"run_id": pl.Utf8, "kind": pl.Utf8, "period": pl.Utf8, "as_of": pl.Date,
         "started_at": pl.Datetime, "status": pl.Utf8, "seconds": pl.Decimal(18, 3),
         "rows_in": pl.Int64, "rows_out": pl.Int64}


def _data() -> ReportData:
    money = pl.Decimal(18, 4)
    return ReportData(
        source="/books/billrun.analyst.duckdb",
        periods=["2026-01", "2026-02"],
        minor_units={"USD": 2, "JPY": 0},
        invoices=pl.DataFrame(
            {"period": ["2026-01", "2026-02", "2026-01"], "status": ["final", "draft", "final"],
             "currency": ["USD", "USD", "JPY"], "invoices": [1, 1, 2],
             "total": [D("37.32"), D("35"), D("3224")]},
            schema_overrides={"total": money},
        ),
        revenue=pl.DataFrame(
            {"period": ["2026-01", "2026-01"], "addon_id": ["ADD_VOICE100", "ADD_VOICE100"],
             "line_type": ["usage", "discount"], "currency": ["USD", "USD"],
             "amount": [D("12"), D("-10")], "lines": [1, 1]},
            schema_overrides={"amount": money},
        ),
        discounts=pl.DataFrame(
            {"period": ["2026-01"], "discount_plan_id": ["VDP_US100"], "currency": ["USD"],
             "discount_given": [D("10")], "lines": [1]},
            schema_overrides={"discount_given": money},
        ),
        rejected=pl.DataFrame({"source": ["usage.csv"], "reason": ["started_at"], "rows": [3],
                               "example": ["started_at: not a time"]}),
        stages=pl.DataFrame(
            {"run_id": ["nightly-1"], "kind": ["nightly"], "period": [None], "as_of": [None],
             "started_at": [datetime(2026, 2, 1, 2, 0, 3)], "status": ["success"],
             "seconds": [D("4.250")], "rows_in": [20], "rows_out": [7], "message": [None]},
            schema_overrides={**_RUNS, "message": pl.Utf8},
        ),
        recent_runs=pl.DataFrame(schema=_RUNS),
        facts=[("periods", "2026-01, 2026-02")],
    )


def test_every_chart_is_an_inline_svg_and_amounts_use_the_currency_precision() -> None:
    html = render_html(_data(), "2026-02-01 02:00:09 UTC")
    # Charts: 2 stage charts, 2 invoice currencies, 2 revenue charts (USD), 1 discount, 1 rejected.
    assert html.count("<svg ") == html.count('<figure class="chart"') == 8
    assert 'data-charts="8"' in html
    assert '<td data-col="total" class=num>3,224</td>' in html  # JPY has no minor unit
    assert '<td data-col="total" class=num>35.00</td>' in html  # USD has two
    assert 'data-value="-10.0000"' in html and "ADD_VOICE100 · discount: -10.00" in html
    assert "<script src" not in html and "<link" not in html


def test_the_markdown_artifact_carries_the_same_tables() -> None:
    markdown = render_markdown(_data(), None)
    assert "| 2026-01 | final | JPY | 2 | 3,224 |" in markdown
    assert "| 2026-01 | ADD_VOICE100 | discount | USD | -10.00 | 1 |" in markdown
    assert "| nightly 02:00:03 | nightly-1 | success | 4.250 | 20 | 7 |" in markdown
    assert "### Recent runs\n\nnothing to show" in markdown


def test_rendering_never_opens_duckdb() -> None:
    code = ("import sys, report.render, report.markdown; "
            "print('duckdb' in sys.modules, 'store' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("expr", "ok"),
    [
        ("0 2 * * *", True),
        ("*/5 * * * *", True),
        ("30 1 1,15 * mon-fri", True),
        ("@daily", True),
        ("* * * * *", True),
        ("60 * * * *", False),  # minute 0-59
        ("0 24 * * *", False),  # hour 0-23
        ("0 2 0 * *", False),  # day 1-31
        ("0 2 * 13 *", False),
        ("0 2 * * 8", False),
        ("*/0 * * * *", False),
        ("0 2 * *", False),  # four fields
        ("5-1 * * * *", False),  # backwards
        ("every night", False),
    ],
)
def test_cron_expressions(expr: str, ok: bool) -> None:
    if ok:
        assert check_cron(expr)
    else:
        with pytest.raises(ValueError):
            check_cron(expr)


# --- Long tables and long labels (issue 21) ------------------------------------------------

amounts = st.decimals(min_value=-10**6, max_value=10**6, places=2, allow_nan=False)


@settings(deadline=None, max_examples=60)  # Polars per example: slow on a loaded machine
@given(st.lists(st.tuples(st.sampled_from(["USD", "EUR", "JPY"]), amounts), max_size=80))
def test_top_rows_keep_every_amount_and_at_most_n_plus_one_rows_per_currency(
    rows: list[tuple[str, Decimal]],
) -> None:
    frame = pl.DataFrame(
        {"addon_id": [f"A{i}" for i in range(len(rows))], "currency": [c for c, _ in rows],
         "amount": [a for _, a in rows], "lines": [1] * len(rows)},
        schema={"addon_id": pl.Utf8, "currency": pl.Utf8, "amount": pl.Decimal(18, 4),
                "lines": pl.Int64},
    )
    folded, caption = top_rows(frame, "amount", ["amount", "lines"])
    for currency in ("USD", "EUR", "JPY"):
        given_ = [a for c, a in rows if c == currency]
        shown = folded.filter(pl.col("currency") == currency)
        assert sum(shown["amount"].to_list(), D(0)) == sum(given_, D(0))  # exact, nothing lost
        assert shown["lines"].sum() == len(given_)
        assert shown.height == min(len(given_), TOP_ROWS + 1)
        others = shown.filter(pl.col("addon_id").str.starts_with("others ("))
        if len(given_) > TOP_ROWS + 1:
            assert others["addon_id"].to_list() == [f"others ({len(given_) - TOP_ROWS})"]
            kept = shown.filter(~pl.col("addon_id").str.starts_with("others ("))
            # No row left out is larger than a row shown.
            assert min(abs(a) for a in kept["amount"]) >= max(
                abs(a) for a in sorted(given_, key=abs)[: len(given_) - TOP_ROWS])
        else:
            assert others.height == 0
    assert bool(caption) == any(
        sum(1 for c, _ in rows if c == cur) > TOP_ROWS + 1 for cur in ("USD", "EUR", "JPY"))


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/ ()", min_size=1, max_size=60),
       st.integers(min_value=20, max_value=400))
def test_a_wrapped_label_keeps_every_character_and_fits_its_width(text: str, width: int) -> None:
    lines = wrap_label(text, width)
    assert "".join(lines) == text
    per_line = max(4, int(width // 7.5))
    assert all(0 < len(line) <= per_line for line in lines)


def test_a_chart_of_many_series_folds_them_into_others_with_distinct_colours() -> None:
    data = _data()
    names = [f"VDP_US{n}_EXTENDED_NIGHT_AND_WEEKEND" for n in range(200, 212)]
    data.discounts = pl.DataFrame(
        {"period": ["2026-01"] * 12, "discount_plan_id": names, "currency": ["USD"] * 12,
         "discount_given": [D(n) for n in range(1, 13)], "lines": [1] * 12},
        schema_overrides={"discount_given": pl.Decimal(18, 4)},
    )
    chart = next(c for _, c in charts(data) if c.chart_id == "chart-discounts-USD")
    # The 7 largest plans (fees 6..12) by name, then the 5 smallest summed: 1+2+3+4+5 = 15.
    assert chart.series == sorted(names[5:]) + ["others"]
    assert chart.values[("2026-01", "others")] == D(15)
    assert chart.note == '5 smaller discount plans summed in "others"'
    html = render_html(data, "2026-02-01 02:00:09 UTC")
    legend = html[html.index('<ul class="legend" data-chart="chart-discounts-USD">'):]
    legend = legend[: legend.index("</ul>")]
    assert all(f'data-name="{n}">{n}</span>' in legend for n in names[5:])  # whole names
    fills = re.findall(r'background:(#[0-9A-Fa-f]{6})', legend)
    assert len(fills) == 8 == len(set(fills))
