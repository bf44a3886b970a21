"""The generator: reproducible, and holding every scenario the later stages must handle."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from data.generator import generate
from pipeline.catalog import parse_catalog
from pipeline.validate import Validated, validate_accounts, validate_assignments
from store import sources
from store.checks import check_usage_frame

N = 1500


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_arguments_give_identical_files(tmp_path: Path, fmt: str) -> None:
    one = generate(120, tmp_path / "one", seed=9, months=2, fmt=fmt)
    generate(120, tmp_path / "two", seed=9, months=2, fmt=fmt)
    assert digests(tmp_path / "one") == digests(tmp_path / "two")
    assert set(digests(tmp_path / "one")) == {
        "catalog.yaml", f"accounts.{fmt}", f"assignments.{fmt}", f"usage.{fmt}",
    }
    generate(120, tmp_path / "three", seed=10, months=2, fmt=fmt)
    assert digests(tmp_path / "one") != digests(tmp_path / "three")
    assert one.rows[f"accounts.{fmt}"] >= 120


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    folder = tmp_path_factory.mktemp("gen")
    generate(N, folder, seed=42, months=2, start="2026-01")
    inputs = sources.find_inputs(folder)
    frames = {k: sources.read_all(f) for k, f in inputs.files.items()}
    catalog = parse_catalog(sources.read_catalog_text(folder / "catalog.yaml"))
    accounts = validate_accounts(frames["accounts"], catalog, source="accounts.csv")
    known = accounts.valid["account_id"].unique()
    assignments = validate_assignments(
        frames["assignments"], catalog, source="assignments.csv", account_ids=known
    )
    usage = Validated(*check_usage_frame(frames["usage"], source="usage.csv", account_ids=known))
    offers = pl.DataFrame(
        [(m.id, a) for m in catalog.main_products for a in m.available_addons],
        schema=["main_product_id", "addon_id"], orient="row",
    )
    plans = pl.DataFrame(
        [(fp.id, fp.currency) for s in catalog.subscriptions for fp in s.fee_plans],
        schema=["fee_plan_id", "plan_currency"], orient="row",
    )
    return {
        "accounts": accounts.valid, "assignments": assignments.valid, "usage": usage.valid,
        "rejected": pl.concat([accounts.rejected, assignments.rejected, usage.rejected]),
        "offers": offers, "plans": plans,
    }


def test_volumes_are_realistic(data: dict[str, pl.DataFrame]) -> None:
    accounts = data["accounts"]["account_id"].n_unique()
    assert accounts >= N * 0.99
    per_account = data["assignments"].height / accounts
    assert 2.2 < per_account < 3.2
    per_month = data["usage"].height / accounts / 2
    assert 40 < per_month < 55
    products = set(data["accounts"]["main_product_id"])
    assert products == {"MP_BASIC", "MP_PLUS", "MP_BIZ"}
    usage_keys = set(data["usage"].select("service", "destination_group").unique().iter_rows())
    assert usage_keys == {
        ("voice", "US"), ("voice", "INTL"), ("voice", "ROAM"), ("data", "ANY"), ("sms", "ANY"),
    }
    assert data["usage"]["amount_units"].min() >= 0
    assert (data["usage"]["amount_units"] % 100 == 0).all()  # at most 4 decimals


def test_it_holds_account_scenarios(data: dict[str, pl.DataFrame]) -> None:
    acc = data["accounts"]
    changes = acc.group_by("account_id").agg(pl.col("main_product_id").n_unique().alias("n"))
    assert changes.filter(pl.col("n") > 1).height > 0.01 * N
    assert acc.filter(pl.col("status") == "closed").height > 0.01 * N
    assert acc.filter(pl.col("status") == "suspended").height > 0.01 * N
    assert acc["billing_day"].n_unique() > 20


def test_it_holds_assignment_scenarios(data: dict[str, pl.DataFrame]) -> None:
    asg = data["assignments"]
    assert asg.filter(pl.col("end_date").is_not_null()).height > 0.05 * asg.height  # removals
    both_voice = asg.group_by("account_id").agg(
        pl.col("addon_id").is_in(["ADD_VOICE100"]).any().alias("v100"),
        pl.col("addon_id").is_in(["ADD_VOICE200"]).any().alias("v200"),
    )
    assert both_voice.filter("v100", "v200").height > 0.01 * N  # same-priority conflicts
    first_product = data["accounts"].sort("effective_from").group_by("account_id").first()
    joined = asg.join(first_product, on="account_id")
    not_offered = joined.join(data["offers"], on=["main_product_id", "addon_id"], how="anti")
    assert not_offered.height > 0.003 * N
    wrong_currency = joined.join(data["plans"], on="fee_plan_id").filter(
        pl.col("plan_currency") != pl.col("currency")
    )
    assert wrong_currency.height > 0.003 * N
    twice = asg.group_by("account_id", "addon_id").len().filter(pl.col("len") > 1)
    assert twice.height > 0.003 * N  # a second once-per-account subscription
    assert (asg["quantity"] > 1).any()


@pytest.mark.parametrize(
    "reason",
    [
        "is not a decimal number",  # malformed number
        "unknown account",
        "unknown add-on",
        "wrong currency",
        "duplicate account_id",
        "duplicate assignment_id",
        "duplicate event_id",
        "end before start",
        "is not a whole number",
        "is not a timestamp",
        "unknown fee plan",
        "unknown main product",
        "is not a date",
    ],
)
def test_it_holds_every_kind_of_bad_row(data: dict[str, pl.DataFrame], reason: str) -> None:
    assert data["rejected"]["reason"].str.contains(reason, literal=True).any()


def test_bad_rows_are_about_half_a_percent(data: dict[str, pl.DataFrame]) -> None:
    total = data["usage"].height + data["rejected"].height
    assert 0.003 < data["rejected"].height / total < 0.01
