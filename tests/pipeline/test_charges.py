"""The charges coordinator (pipeline/charges.py): one period end to end, drafts, invoices, and
the determinism properties (shuffled input rows, sharded accounts)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline.catalog import catalog_frames, parse_catalog
from pipeline.charges import ChargesResult, compute_charges
from pipeline.invoices import INVOICE_SCHEMA, LINE_ORDER, LINE_SCHEMA
from pipeline.usage import COUNTER_SCHEMA, DETAIL_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = catalog_frames(parse_catalog((ROOT / "data" / "sample" / "catalog.yaml").read_text()))
M = 1_000_000

ACCOUNT_SCHEMA = {
    "account_id": pl.Utf8, "currency": pl.Utf8, "main_product_id": pl.Utf8,
    "billing_day": pl.Int64, "status": pl.Utf8, "opened_on": pl.Date, "closed_on": pl.Date,
    "effective_from": pl.Date,
}
LIFECYCLE_SCHEMA = {
    "assignment_id": pl.Utf8, "account_id": pl.Utf8, "addon_id": pl.Utf8,
    "fee_plan_id": pl.Utf8, "quantity": pl.Int64, "assigned_at": pl.Datetime("us"),
    "start_date": pl.Date, "end_date": pl.Date, "eff_start": pl.Date, "eff_end": pl.Date,
    "billable": pl.Boolean, "end_reason": pl.Utf8,
}
USAGE_SCHEMA = {
    "event_id": pl.Utf8, "account_id": pl.Utf8, "service": pl.Utf8,
    "destination_group": pl.Utf8, "started_at": pl.Datetime("us"), "quantity_units": pl.Int64,
    "amount_units": pl.Int64,
}
COUNTERS_SCHEMA = {
    "account_id": pl.Utf8, "service": pl.Utf8, "destination_group": pl.Utf8,
    "threshold_type": pl.Utf8, "window_start": pl.Date, "value_units": pl.Int64,
}


def account_rows(rows: list[tuple]) -> pl.DataFrame:
    """(account_id, main_product_id, billing_day, currency, effective_from) rows."""
    return pl.DataFrame([
        {"account_id": a, "currency": c, "main_product_id": m, "billing_day": d,
         "status": "active", "opened_on": date(2020, 1, 1), "closed_on": None,
         "effective_from": f}
        for a, m, d, c, f in rows
    ], schema=ACCOUNT_SCHEMA)


def lifecycle_rows(rows: list[tuple]) -> pl.DataFrame:
    """(assignment_id, account_id, addon_id, fee_plan_id, quantity, eff_start, eff_end,
    assigned_at, billable) rows."""
    return pl.DataFrame([
        {"assignment_id": s, "account_id": a, "addon_id": addon, "fee_plan_id": plan,
         "quantity": q, "assigned_at": at, "start_date": start, "end_date": end,
         "eff_start": start, "eff_end": end, "billable": ok, "end_reason": None}
        for s, a, addon, plan, q, start, end, at, ok in rows
    ], schema=LIFECYCLE_SCHEMA)


def usage_rows(rows: list[tuple]) -> pl.DataFrame:
    """(event_id, account_id, service, group, started_at, quantity_units, amount_units)."""
    records = [dict(zip(USAGE_SCHEMA, r, strict=True)) for r in rows]
    return pl.DataFrame(records, schema=USAGE_SCHEMA)


NO_COUNTERS = pl.DataFrame(schema=COUNTERS_SCHEMA)


def test_one_invoice_end_to_end_with_the_sample_catalog() -> None:
    # TV pack (30.00 a month in advance, activation 10.00) from June 11: 20.00 + 10.00.
    # 100 free US minutes (V1, 5.00 a month) all June: 5.00; 110 minutes at 0.10 = 11.00 of
    # which 100 minutes (10.00) are free. A data event without any entry: 0.35.
    accounts = account_rows([("A1", "MP_BASIC", 1, "USD", date(2026, 1, 1)),
                             ("A2", "MP_BASIC", 1, "USD", date(2026, 1, 1))])
    lifecycles = lifecycle_rows([
        ("S1", "A1", "ADD_TV", "TV1", 1, date(2026, 6, 11), None, datetime(2026, 6, 1), True),
        ("S2", "A1", "ADD_VOICE100", "V1", 1, date(2026, 5, 1), None, datetime(2026, 5, 1),
         True),
    ])
    usage = usage_rows([
        ("e1", "A1", "voice", "US", datetime(2026, 6, 3), 110 * M, 11 * M),
        ("e2", "A1", "data", "ANY", datetime(2026, 6, 4), 7 * M, 350_000),
    ])
    result = compute_charges(SAMPLE, accounts, lifecycles, usage, NO_COUNTERS, "2026-06")
    # Sorted by the line key: account, period, line type, assignment (nulls last), ...
    assert result.charges.select(
        "line_type", "assignment_id", "addon_id", "service", "amount_minor", "line_date"
    ).rows() == [
        ("activation", "S1", "ADD_TV", None, 1000, date(2026, 6, 11)),
        ("discount", "S2", "ADD_VOICE100", "voice", -1000, date(2026, 6, 30)),
        ("recurring", "S1", "ADD_TV", None, 2000, date(2026, 6, 11)),
        ("recurring", "S2", "ADD_VOICE100", None, 500, date(2026, 6, 1)),
        ("usage", "S2", "ADD_VOICE100", "voice", 1100, date(2026, 6, 30)),
        ("usage", None, None, "data", 35, date(2026, 6, 30)),
    ]
    # A2 has no line, so no invoice.
    assert result.invoices.rows() == [("A1", "2026-06", "USD", 500 + 1000 + 2000 - 1000 + 35
                                       + 1100)]


def test_outputs_have_the_contract_schemas_even_when_empty() -> None:
    accounts = account_rows([("A1", "MP_BASIC", 1, "USD", date(2026, 1, 1))])
    result = compute_charges(SAMPLE, accounts, pl.DataFrame(), pl.DataFrame(), pl.DataFrame(),
                             "2026-06")
    assert result.charges.schema == pl.Schema(LINE_SCHEMA)
    assert result.invoices.schema == pl.Schema(INVOICE_SCHEMA)
    assert result.counters_after.schema == pl.Schema(COUNTER_SCHEMA)
    assert result.usage_detail.schema == pl.Schema(DETAIL_SCHEMA)
    assert result.charges.height == result.invoices.height == 0


def test_silent_lines_are_dropped_but_free_recurring_and_usage_lines_stay() -> None:
    catalog = catalog_frames(parse_catalog({
        "currencies": {"USD": 2},
        "main_products": [{"id": "MP", "name": "Main", "available_addons": ["FREE"]}],
        "addons": [{"id": "FREE", "name": "Free", "priority": 1, "discount_plan": "D",
                    "subscription": "SUB"}],
        "subscriptions": [{"id": "SUB", "fee_plans": [
            {"id": "F0", "term_months": 1, "fee": "0", "currency": "USD"}]}],
        "discount_plans": [{"id": "D", "entries": [
            {"service": "voice", "destination_group": "US", "threshold_type": "quantity",
             "tiers": [[0, 0], [1000, 10]]}]}],
    }))
    accounts = account_rows([("A1", "MP", 1, "USD", date(2026, 1, 1))])
    lifecycles = lifecycle_rows([
        ("S1", "A1", "FREE", "F0", 1, date(2026, 6, 11), date(2026, 6, 20),
         datetime(2026, 6, 1), True),
    ])
    usage = usage_rows([("e1", "A1", "voice", "US", datetime(2026, 6, 12), 5 * M, 0)])
    result = compute_charges(catalog, accounts, lifecycles, usage, NO_COUNTERS, "2026-06")
    # No activation fee, no credit of a free plan, no 0 % discount: recurring 0 and usage 0.
    assert result.charges.select("line_type", "amount_minor").rows() == [
        ("recurring", 0), ("usage", 0)
    ]
    assert result.invoices["total_minor"].to_list() == [0]


def test_a_draft_holds_lines_dated_up_to_the_cutoff_and_counters_at_it() -> None:
    accounts = account_rows([("A1", "MP_BASIC", 1, "USD", date(2026, 1, 1))])
    lifecycles = lifecycle_rows([
        ("S1", "A1", "ADD_TV", "TV1", 1, date(2026, 6, 11), None, datetime(2026, 6, 1), True),
        ("S2", "A1", "ADD_DATA5", "D5_1", 1, date(2026, 5, 1), None, datetime(2026, 5, 1),
         True),
    ])
    usage = usage_rows([
        ("e1", "A1", "data", "ANY", datetime(2026, 6, 9, 23, 59), 600 * M, 6 * M),
        ("e2", "A1", "data", "ANY", datetime(2026, 6, 10, 0, 0), 600 * M, 6 * M),
    ])
    draft = compute_charges(SAMPLE, accounts, lifecycles, usage, NO_COUNTERS, "2026-06",
                            cutoff=date(2026, 6, 9))
    # Only e1 (600 MB, below DDP_5's first 1024 MB tier: no discount); the TV line is dated
    # June 11 and the in-arrears data fee June 30: neither is in the draft yet.
    assert draft.charges.select("line_type", "amount_minor", "line_date").rows() == [
        ("usage", 600, date(2026, 6, 9))
    ]
    assert draft.counters_after["value_units"].to_list() == [600 * M]
    final = compute_charges(SAMPLE, accounts, lifecycles, usage, NO_COUNTERS, "2026-06")
    # Final: TV 20.00 + activation 10.00, data fee 7.50 on June 30, usage 12.00; the second
    # event crosses 1024 MB: 176 MB at 10 % of 0.01 a MB = 0.176 -> 0.18.
    assert sorted(final.charges.select("line_type", "amount_minor").rows()) == [
        ("activation", 1000), ("discount", -18), ("recurring", 750), ("recurring", 2000),
        ("usage", 1200),
    ]
    assert final.counters_after["value_units"].to_list() == [1200 * M]


def test_invoice_totals_are_the_sums_of_their_rounded_lines() -> None:
    # Three events of 0.005 each: each usage line rounds once, so 0.015 -> 0.02, not 3 x 0.01.
    accounts = account_rows([("A1", "MP_BASIC", 1, "USD", date(2026, 1, 1)),
                             ("A2", "MP_BASIC", 15, "USD", date(2026, 1, 1))])
    usage = usage_rows([
        (f"e{i}", "A1", "data", "ANY", datetime(2026, 6, 2 + i), M, 5_000) for i in range(3)
    ] + [("f1", "A2", "sms", "ANY", datetime(2026, 6, 20), M, 5_000)])
    result = compute_charges(SAMPLE, accounts, lifecycle_rows([]), usage, NO_COUNTERS,
                             "2026-06")
    assert result.invoices.rows() == [("A1", "2026-06", "USD", 2), ("A2", "2026-06", "USD", 1)]


def test_the_pipeline_never_imports_duckdb_nor_reads_the_clock() -> None:
    code = (
        "import sys, pipeline.charges, pipeline.usage, pipeline.recurring, pipeline.invoices,"
        " pipeline.periods, pipeline.money; assert 'duckdb' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    for module in ("charges", "usage", "recurring", "invoices", "periods", "money"):
        package = ROOT / "pipeline" / module  # pipeline/usage is a package of step modules
        files = sorted(package.glob("*.py")) if package.is_dir() else [package.with_suffix(".py")]
        for path in files:
            text = path.read_text()
            assert "today(" not in text and "now(" not in text and "duckdb" not in text


# --- Properties: shuffled rows and sharded accounts change nothing --------------------------

OFFERS = {
    "MP_BASIC": [("ADD_TV", "TV1"), ("ADD_VOICE100", "V1"), ("ADD_VOICE100", "V3"),
                 ("ADD_VOICE200", "V200_1"), ("ADD_DATA5", "D5_1"), ("ADD_SMS", "S1")],
    "MP_PLUS": [("ADD_DATA20", "D20_1"), ("ADD_INTL", None), ("ADD_SEATS", "SEAT6"),
                ("ADD_VOICE100", "V6"), ("ADD_DATA5", "D5_3")],
    "MP_BIZ": [("ADD_SPEND", "SP1"), ("ADD_ROAM", "R12"), ("ADD_INTL", None),
               ("ADD_VOICE200", "V200_12"), ("ADD_SEATS", "SEAT1")],
}
PAIRS = [("voice", "US"), ("voice", "INTL"), ("voice", "ROAM"), ("data", "ANY"),
         ("sms", "ANY"), ("video", "ANY")]


@st.composite
def billing_inputs(draw: st.DrawFn) -> tuple[pl.DataFrame, ...]:
    """A few accounts with random add-ons, usage and never-reset counters."""
    accounts, lifecycles, usage, counters = [], [], [], []
    day0 = date(2026, 1, 1)
    for a in range(draw(st.integers(1, 5))):
        account_id = f"A{a}"
        main = draw(st.sampled_from(sorted(OFFERS)))
        billing_day = draw(st.integers(1, 28))
        accounts.append((account_id, main, billing_day, "USD", date(2025, 1, 1)))
        if draw(st.booleans()):
            other = draw(st.sampled_from(sorted(OFFERS)))
            accounts.append((account_id, other, billing_day, "USD",
                             date(2026, 6, draw(st.integers(1, 28)))))
        for s in range(draw(st.integers(0, 4))):
            addon, plan = draw(st.sampled_from(OFFERS[main]))
            start = day0 + timedelta(days=draw(st.integers(0, 220)))
            end = draw(st.none() | st.integers(1, 150).map(lambda n, s=start: s
                                                              + timedelta(days=n)))
            lifecycles.append((
                f"{account_id}S{s}", account_id, addon, plan, draw(st.integers(1, 3)), start, end,
                datetime(2026, 1, 1) + timedelta(hours=draw(st.integers(0, 3))),
                draw(st.booleans() | st.just(True)),
            ))
        for e in range(draw(st.integers(0, 12))):
            service, group = draw(st.sampled_from(PAIRS))
            usage.append((
                f"{account_id}E{e:02d}", account_id, service, group,
                datetime(2026, 6, 1) + timedelta(minutes=draw(st.integers(0, 60 * 24 * 45))),
                draw(st.integers(0, 600)) * M, draw(st.integers(0, 3000)) * 10_000,
            ))
        if draw(st.booleans()):
            counters.append({"account_id": account_id, "service": "voice",
                             "destination_group": "ROAM", "threshold_type": "quantity",
                             "window_start": date(1970, 1, 1),
                             "value_units": draw(st.integers(0, 600)) * M})
    return (
        account_rows(accounts), lifecycle_rows(lifecycles), usage_rows(usage),
        pl.DataFrame(counters, schema=COUNTERS_SCHEMA),
    )


cutoffs = st.none() | st.dates(min_value=date(2026, 6, 1), max_value=date(2026, 7, 30))

KEYS = {
    "charges": LINE_ORDER,
    "invoices": ["account_id", "period", "currency"],
    "counters_after": ["account_id", "service", "destination_group", "threshold_type",
                       "window_start", "reset"],
    "usage_detail": ["account_id", "started_at", "event_id", "tier_no"],
}


def assert_same(left: ChargesResult, right: ChargesResult, resort: bool = False) -> None:
    for name, key in KEYS.items():
        a, b = getattr(left, name), getattr(right, name)
        if resort:
            a, b = a.sort(key, nulls_last=True), b.sort(key, nulls_last=True)
        assert_frame_equal(a, b)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=billing_inputs(), cutoff=cutoffs, seed=st.integers(0, 2**16))
def test_shuffling_input_rows_changes_no_output(inputs: tuple, cutoff: date | None,
                                               seed: int) -> None:
    accounts, lifecycles, usage, counters = inputs
    expected = compute_charges(SAMPLE, accounts, lifecycles, usage, counters, "2026-06", cutoff)
    shuffled = [f.sample(fraction=1.0, shuffle=True, seed=seed + i) for i, f in enumerate(inputs)]
    got = compute_charges(SAMPLE, *shuffled, "2026-06", cutoff)
    assert_same(expected, got)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=billing_inputs(), cutoff=cutoffs, shards=st.integers(1, 4), salt=st.integers(0, 99))
def test_sharding_accounts_and_concatenating_gives_the_same_tables(
    inputs: tuple, cutoff: date | None, shards: int, salt: int
) -> None:
    accounts, lifecycles, usage, counters = inputs
    expected = compute_charges(SAMPLE, accounts, lifecycles, usage, counters, "2026-06", cutoff)
    ids = accounts["account_id"].unique().sort().to_list()
    parts = []
    for shard in range(shards):
        mine = pl.DataFrame({"account_id": [a for i, a in enumerate(ids)
                                            if (i + salt) % shards == shard]},
                            schema={"account_id": pl.Utf8})
        pick = [f.join(mine, on="account_id", how="semi") for f in inputs]
        parts.append(compute_charges(SAMPLE, *pick, "2026-06", cutoff))
    joined = ChargesResult(*[
        pl.concat([getattr(p, name) for p in parts]) for name in KEYS
    ])
    assert_same(expected, joined, resort=True)
    assert_same(expected, joined.__class__(*[
        getattr(joined, n).sort(k, nulls_last=True) for n, k in KEYS.items()
    ]))


def test_outputs_are_sorted_by_their_keys() -> None:
    accounts = account_rows([("B", "MP_BASIC", 1, "USD", date(2026, 1, 1)),
                             ("A", "MP_BASIC", 1, "USD", date(2026, 1, 1))])
    lifecycles = lifecycle_rows([
        ("S1", "B", "ADD_TV", "TV1", 1, date(2026, 6, 11), None, datetime(2026, 6, 1), True),
        ("S2", "A", "ADD_SMS", "S1", 1, date(2026, 6, 2), None, datetime(2026, 6, 1), True),
    ])
    usage = usage_rows([("e1", "B", "sms", "ANY", datetime(2026, 6, 3), M, 50_000),
                        ("e2", "A", "sms", "ANY", datetime(2026, 6, 3), M, 50_000)])
    result = compute_charges(SAMPLE, accounts, lifecycles, usage, NO_COUNTERS, "2026-06")
    for name, key in KEYS.items():
        frame = getattr(result, name)
        assert_frame_equal(frame, frame.sort(key, nulls_last=True))
    assert result.charges["account_id"].to_list()[0] == "A"


@pytest.mark.parametrize("detail", [True, False])
def test_detail_can_be_skipped_without_changing_the_lines(detail: bool) -> None:
    accounts = account_rows([("A", "MP_BASIC", 1, "USD", date(2026, 1, 1))])
    lifecycles = lifecycle_rows([
        ("S1", "A", "ADD_SMS", "S1", 1, date(2026, 6, 2), None, datetime(2026, 6, 1), True),
    ])
    usage = usage_rows([("e1", "A", "sms", "ANY", datetime(2026, 6, 3), 60 * M, 3 * M)])
    full = compute_charges(SAMPLE, accounts, lifecycles, usage, NO_COUNTERS, "2026-06")
    lean = compute_charges(SAMPLE, accounts, lifecycles, usage, NO_COUNTERS, "2026-06",
                           detail=detail)
    assert_frame_equal(full.charges, lean.charges)
    assert lean.usage_detail.height == (1 if detail else 0) * full.usage_detail.height
