"""`billing.bill.bill`: the rules, then the charges, of one period for a set of accounts.

Sample catalog (data/sample/catalog.yaml), USD, billing day 1, period 2026-01 = [01-01, 02-01):
- S_TV: ADD_TV on TV1 (30.00 a month, in advance) with a 10.00 activation fee, from 01-01;
- S_V: ADD_VOICE100 on V1 (5.00 a month, in advance), from 01-01; its plan VDP_US100 makes the
  first 100 voice/US minutes of each billing period free (tiers [0, 100) at 100 %, then 0 %);
- usage: 50 min (5.00) on 01-05 and 70 min (7.00) on 01-25, voice to the US.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl

from billing.bill import Bill, BillInputs, bill, settle
from pipeline.catalog import parse_catalog
from pipeline.contracts import COUNTER_INPUT_SCHEMA, LOCK_SCHEMA, USAGE_SCHEMA

SAMPLE = parse_catalog(
    (Path(__file__).resolve().parents[2] / "data" / "sample" / "catalog.yaml").read_text()
)
M = 1_000_000
PERIOD = "2026-01"
NO_COUNTERS = pl.DataFrame(schema=COUNTER_INPUT_SCHEMA)


def _usage(rows: list[tuple[str, str, datetime, int, int]]) -> pl.DataFrame:
    """(event_id, account_id, started_at, minutes, amount in cents) of voice/US events."""
    return pl.DataFrame(
        [
            {"event_id": e, "account_id": a, "service": "voice", "destination_group": "US",
             "started_at": at, "quantity_units": minutes * M, "amount_units": cents * M // 100}
            for e, a, at, minutes, cents in rows
        ],
        schema=USAGE_SCHEMA,
    )


def _inputs(*account_ids: str) -> BillInputs:
    accounts = pl.DataFrame(
        [
            {"account_id": a, "currency": "USD", "main_product_id": "MP_BASIC", "billing_day": 1,
             "status": "active", "opened_on": date(2026, 1, 1), "closed_on": None,
             "effective_from": date(2026, 1, 1)}
            for a in account_ids
        ],
        schema_overrides={"closed_on": pl.Date},
    )
    assignments = pl.DataFrame(
        [
            {"assignment_id": f"{a}_{tag}", "account_id": a, "addon_id": addon,
             "fee_plan_id": plan, "start_date": date(2026, 1, 1), "end_date": None,
             "assigned_at": datetime(2025, 12, 30, 9), "quantity": 1}
            for a in account_ids
            for tag, addon, plan in (("TV", "ADD_TV", "TV1"), ("V", "ADD_VOICE100", "V1"))
        ],
        schema_overrides={"end_date": pl.Date},
    )
    usage = _usage(
        [(f"{a}_E1", a, datetime(2026, 1, 5, 10), 50, 500) for a in account_ids]
        + [(f"{a}_E2", a, datetime(2026, 1, 25, 18), 70, 700) for a in account_ids]
    )
    return BillInputs(
        catalog=SAMPLE, policy="replace", accounts=accounts, assignments=assignments,
        usage=usage, locks=pl.DataFrame(schema=LOCK_SCHEMA),
    )


def _by_type(result: Bill) -> dict[str, int]:
    sums = result.charges.group_by("line_type").agg(pl.col("amount_minor").sum())
    return dict(sums.iter_rows())


def test_a_whole_period_is_decided_then_priced() -> None:
    result = bill(_inputs("A1"), PERIOD, None, NO_COUNTERS)
    active = result.decisions.filter(pl.col("outcome") == "active")
    assert sorted(active["assignment_id"]) == ["A1_TV", "A1_V"]
    assert result.lifecycles.height == 2 and result.lifecycles["billable"].all()
    # Fees: 30.00 + 5.00 (whole month, in advance) and the 10.00 activation fee.
    # Usage: 5.00 + 7.00 = 12.00; the first 100 of 120 minutes are free: 5.00 (all of E1's 50)
    # + 7.00 x 50/70 = 5.00 of E2, so the discount is -10.00. Total: 35 + 10 + 12 - 10 = 47.00.
    assert _by_type(result) == {
        "recurring": 3500, "activation": 1000, "usage": 1200, "discount": -1000,
    }
    assert result.invoices.rows() == [("A1", PERIOD, "USD", 4700)]
    # One billing-period window of the voice/US quantity counter: 120 minutes at the end.
    counters = result.counters_after.select(
        "service", "destination_group", "threshold_type", "reset", "window_start", "value_units"
    )
    assert counters.rows() == [
        ("voice", "US", "quantity", "billing_period", date(2026, 1, 1), 120 * M)
    ]
    assert result.usage_detail.height == 0  # detail only on request (explain)


def test_a_draft_counts_only_what_happened_by_its_cutoff() -> None:
    # As of 01-10: the fees are dated 01-01 (in advance) so all stand; only E1 (50 min, 5.00)
    # started before 01-11, all of it free: 35 + 10 + 5 - 5 = 45.00.
    result = bill(_inputs("A1"), PERIOD, date(2026, 1, 10), NO_COUNTERS)
    assert _by_type(result) == {
        "recurring": 3500, "activation": 1000, "usage": 500, "discount": -500,
    }
    assert result.invoices["total_minor"].to_list() == [4500]


def test_billing_accounts_apart_or_together_gives_the_same_bill() -> None:
    """The unit of work can be any shard of accounts: nothing leaks from one account to another."""
    together = bill(_inputs("A1", "A2"), PERIOD, None, NO_COUNTERS)
    inputs = _inputs("A1", "A2")
    apart = [
        bill(inputs.of_accounts(pl.DataFrame({"account_id": [a]})), PERIOD, None, NO_COUNTERS)
        for a in ("A1", "A2")
    ]
    assert together.invoices.rows() == [("A1", PERIOD, "USD", 4700), ("A2", PERIOD, "USD", 4700)]
    for name in ("charges", "invoices", "counters_after", "decisions"):
        joined = pl.concat([getattr(b, name) for b in apart])
        assert joined.sort(joined.columns, nulls_last=True).equals(
            getattr(together, name).sort(joined.columns, nulls_last=True)
        ), name


def test_restricting_the_inputs_keeps_only_those_accounts() -> None:
    one = _inputs("A1", "A2").of_accounts(pl.DataFrame({"account_id": ["A2"]}))
    assert one.accounts["account_id"].unique().to_list() == ["A2"]
    assert sorted(one.assignments["assignment_id"]) == ["A2_TV", "A2_V"]
    assert sorted(one.usage["event_id"]) == ["A2_E1", "A2_E2"]


def test_detail_gives_the_per_event_tier_parts() -> None:
    result = bill(_inputs("A1"), PERIOD, None, NO_COUNTERS, detail=True)
    # E1 lies wholly in the first tier (0 -> 50 min); E2 spans 50 -> 100 (first tier) and
    # 100 -> 120 (second). Tiers are numbered from 0.
    parts = result.usage_detail.sort("event_id", "tier_no").select(
        "event_id", "tier_no", "counter_from_units", "counter_to_units"
    )
    assert parts.rows() == [
        ("A1_E1", 0, 0, 50 * M), ("A1_E2", 0, 50 * M, 100 * M), ("A1_E2", 1, 100 * M, 120 * M),
    ]


def test_settle_gives_the_life_cycles_without_billing_a_period() -> None:
    lifecycles = settle(_inputs("A1")).sort("assignment_id")
    # Both assignments start on 01-01 and are open: billable from 01-01, no end.
    assert lifecycles.select("assignment_id", "eff_start", "eff_end", "billable").rows() == [
        ("A1_TV", date(2026, 1, 1), None, True), ("A1_V", date(2026, 1, 1), None, True),
    ]
