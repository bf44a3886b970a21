"""Issue 12: the stated bounds (pipeline/bounds.py, docs/INPUTS.md "Bounds") are enforced where
values enter: the catalog (a CatalogError naming the key) and the assignment rows (a reason)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from pipeline.bounds import MAX_ASSIGNMENT_QUANTITY, MAX_FEE
from pipeline.catalog import CatalogError, parse_catalog
from pipeline.validate import validate_assignments
from store.checks import check_usage_frame
from store.sources import COLUMNS, EXTRA

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "catalog.yaml"


def _catalog_with(sub_id: str, **money: str) -> dict[str, Any]:
    data = yaml.safe_load(SAMPLE.read_text())
    sub = next(s for s in data["subscriptions"] if s["id"] == sub_id)
    if "fee" in money:
        sub["fee_plans"][0]["fee"] = money["fee"]
    if "activation_fee" in money:
        sub["activation_fee"] = money["activation_fee"]
    return data


@pytest.mark.parametrize(
    ("money", "expected"),
    [
        ({"fee": "100000000000000000000.00"},
         "subscriptions[SUB_TV].fee_plans[TV1].fee: 100000000000000000000.00 is more than the "
         "largest fee billrun accepts (999999999.9999)"),
        ({"activation_fee": "1000000000"},
         "subscriptions[SUB_TV].fee_plans[TV1].activation_fee: 1000000000 is more than"),
    ],
)
def test_a_fee_beyond_the_bound_is_a_catalog_error(money: dict[str, str], expected: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(_catalog_with("SUB_TV", **money))
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_the_largest_fee_is_accepted() -> None:
    # USD has 2 minor units: 999999999.99 is its largest fee within MAX_FEE.
    assert MAX_FEE >= Decimal("999999999.99")
    parse_catalog(_catalog_with("SUB_TV", fee="999999999.99"))


def _assignment(quantity: str) -> pl.DataFrame:
    row = {"assignment_id": "S1", "account_id": "A1", "addon_id": "ADD_TV", "fee_plan_id": "TV1",
           "start_date": "2025-02-01", "assigned_at": "2025-01-30 10:00:00",
           "quantity": quantity}
    data: dict[str, list[Any]] = {"line": [2]}
    for col in [*COLUMNS["assignments"], EXTRA]:
        data[col] = [row.get(col)]
    schema = {"line": pl.Int64, **{c: pl.String for c in data if c != "line"}}
    return pl.DataFrame(data, schema=schema)


@pytest.mark.parametrize(
    ("quantity", "reason"),
    [
        (str(MAX_ASSIGNMENT_QUANTITY), None),
        (str(MAX_ASSIGNMENT_QUANTITY + 1), "quantity: '100001' is more than 100000"),
        ("999999999", "quantity: '999999999' is more than 100000"),
    ],
)
def test_assignment_quantity_bound(quantity: str, reason: str | None) -> None:
    out = validate_assignments(
        _assignment(quantity), parse_catalog(SAMPLE.read_text()), source="assignments.csv",
        account_ids=pl.Series("account_id", ["A1"]),
    )
    assert out.rejected["reason"].to_list() == ([] if reason is None else [reason])


@pytest.mark.parametrize(
    ("field", "text", "reason"),
    [
        ("amount", "999999999.999999", None),
        ("quantity", "999999999.999999", None),
        # The issue's repros: valid for DECIMAL(18,6), too large for the charges' arithmetic.
        ("amount", "999999999999.999999", "amount: '999999999999.999999' is more than "
         "999999999.999999"),
        ("quantity", "999999999999", "quantity: '999999999999' is more than 999999999.999999"),
    ],
)
def test_usage_value_bound(field: str, text: str, reason: str | None) -> None:
    row = {"event_id": "E1", "account_id": "A1", "service": "voice", "destination_group": "US",
           "started_at": "2026-01-05 10:00:00", "quantity": "1", "amount": "1", field: text}
    data: dict[str, list[Any]] = {"line": [2]}
    for col in [*COLUMNS["usage"], EXTRA]:
        data[col] = [row.get(col)]
    schema = {"line": pl.Int64, **{c: pl.String for c in data if c != "line"}}
    _, rejected = check_usage_frame(pl.DataFrame(data, schema=schema), source="usage.csv",
                                    account_ids=pl.Series("account_id", ["A1"]))
    assert rejected["reason"].to_list() == ([] if reason is None else [reason])
