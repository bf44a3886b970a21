"""`BillInputs.with_settlement`: settling the assignments once for several periods changes no
result of `bill` (sample catalog; one account with an add-on that ends, one that is replaced
and one that is ineligible)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl

from billing.bill import BillInputs, bill
from pipeline.catalog import parse_catalog
from pipeline.contracts import COUNTER_INPUT_SCHEMA, USAGE_SCHEMA

SAMPLE = parse_catalog(
    (Path(__file__).resolve().parents[2] / "data" / "sample" / "catalog.yaml").read_text()
)
NAMES = ("decisions", "lifecycles", "charges", "invoices", "counters_after", "parcels")


def _inputs() -> BillInputs:
    accounts = pl.DataFrame(
        [{"account_id": "A1", "currency": "USD", "main_product_id": "MP_PLUS", "billing_day": 5,
          "status": "active", "opened_on": date(2025, 12, 1), "closed_on": None,
          "effective_from": date(2025, 12, 1)}],
        schema_overrides={"closed_on": pl.Date},
    )
    rows = [  # id, add-on, plan, start, end, assigned
        ("S_TV", "ADD_TV", "TV1", date(2026, 1, 5), date(2026, 2, 20), datetime(2026, 1, 1)),
        ("S_V1", "ADD_VOICE100", "V1", date(2026, 1, 10), None, datetime(2026, 1, 2)),
        ("S_V2", "ADD_VOICE100R", "VR1", date(2026, 2, 15), None, datetime(2026, 1, 3)),
        ("S_BAD", "ADD_DATA5", "D5_1E", date(2026, 1, 5), None, datetime(2026, 1, 4)),
    ]
    assignments = pl.DataFrame(
        [{"assignment_id": i, "account_id": "A1", "addon_id": a, "fee_plan_id": p,
          "start_date": s, "end_date": e, "assigned_at": at, "quantity": 1}
         for i, a, p, s, e, at in rows],
        schema_overrides={"end_date": pl.Date},
    )
    usage = pl.DataFrame(
        [{"event_id": f"E{d}", "account_id": "A1", "service": "voice",
          "destination_group": "US", "started_at": datetime(2026, 2, d, 12),
          "quantity_units": 40_000_000, "amount_units": 4_000_000} for d in (6, 16, 26)],
        schema=USAGE_SCHEMA,
    )
    return BillInputs(catalog=SAMPLE, policy="replace", accounts=accounts,
                      assignments=assignments, usage=usage)


def test_settling_once_bills_every_period_alike() -> None:
    inputs = _inputs()
    once = inputs.with_settlement()
    assert once.settlement is not None and inputs.settlement is None
    counters = pl.DataFrame(schema=COUNTER_INPUT_SCHEMA)
    for period in ("2026-01", "2026-02", "2026-03", "2026-04"):
        each, settled = bill(inputs, period, None, counters), bill(once, period, None, counters)
        for name in NAMES:
            assert getattr(settled, name).equals(getattr(each, name)), (period, name)
    # S_TV ends in February: expired (and stored) in March, not in April.
    assert bill(once, "2026-03", None, counters).decisions.filter(
        pl.col("assignment_id") == "S_TV")["outcome"].to_list() == ["eligible", "expired"]
    assert "S_TV" not in bill(once, "2026-04", None, counters).decisions["assignment_id"]


def test_a_subset_of_accounts_settles_again() -> None:
    once = _inputs().with_settlement()
    assert once.of_accounts(pl.DataFrame({"account_id": ["A1"]})).settlement is None
