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


# --- SPEC §8: the catalog's §8 keys and the change rows ---------------------------------------


@pytest.fixture(scope="module")
def changed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    """Generated assignments read as text, split into base rows and change rows (bad rows, the
    spoiled copies of base rows, dropped), and the catalog."""
    folder = tmp_path_factory.mktemp("changes")
    generate(N, folder, seed=42, months=2, start="2026-01")
    rows = pl.read_csv(folder / "assignments.csv", infer_schema_length=0).with_columns(
        pl.col("effective_from").str.to_date(), pl.col("start_date").str.to_date(),
        pl.col("end_date").str.to_date(),
    )
    base = rows.filter(pl.col("effective_from").is_null())
    base = base.filter(pl.col("assignment_id").is_first_distinct())
    change = rows.filter(pl.col("effective_from").is_not_null())
    catalog = parse_catalog((folder / "catalog.yaml").read_text())
    plans = pl.DataFrame(
        [(s.id, fp.id, fp.currency) for s in catalog.subscriptions for fp in s.fee_plans],
        schema=["subscription_id", "fee_plan_id", "plan_currency"], orient="row",
    )
    return {"base": base, "change": change, "plans": plans, "catalog": catalog}


def test_the_catalog_has_section_8_keys_and_no_grace(changed: dict[str, object]) -> None:
    cat = changed["catalog"]
    modes = {s.id: s.plan_change for s in cat.subscriptions}
    assert {"immediate", "end_of_term", "upgrades_now"} <= set(modes.values())
    committed = [fp for s in cat.subscriptions for fp in s.fee_plans if fp.minimum_terms]
    assert len(committed) >= 3
    assert all(fp.early_termination_fee is not None for fp in committed)
    assert len({fp.currency for fp in committed}) >= 2
    assert cat.finalize_grace_days == 0


def test_about_5_percent_change_the_plan_and_5_percent_the_quantity(
    changed: dict[str, pl.DataFrame],
) -> None:
    base, change = changed["base"], changed["change"]
    first = change.sort("effective_from").filter(pl.col("assignment_id").is_first_distinct())
    joined = first.join(base, on="assignment_id", suffix="_base")
    plan = joined.filter(pl.col("fee_plan_id") != pl.col("fee_plan_id_base"))
    quantity = joined.filter(pl.col("fee_plan_id") == pl.col("fee_plan_id_base"))
    assert 0.04 < plan.height / base.height < 0.06, plan.height / base.height
    assert 0.04 < quantity.height / base.height < 0.06, quantity.height / base.height
    # A quantity change changes the quantity (a blank one is 1), and only that.
    old = pl.col("quantity_base").cast(pl.Int64).fill_null(1)
    assert quantity.filter(pl.col("quantity").cast(pl.Int64) == old).height == 0
    assert (plan["quantity"].fill_null("") == plan["quantity_base"].fill_null("")).all()
    # Most plan changes are to another plan of the same subscription in the same currency; a
    # few (refused by the rules) to another currency's or another subscription's.
    plans = changed["plans"]
    with_plans = plan.join(plans, on="fee_plan_id").join(
        plans, left_on="fee_plan_id_base", right_on="fee_plan_id", suffix="_base"
    )
    same = (pl.col("subscription_id") == pl.col("subscription_id_base")) & (
        pl.col("plan_currency") == pl.col("plan_currency_base")
    )
    refused = with_plans.filter(~same).height
    assert with_plans.height == plan.height
    assert 0 < refused < 0.2 * plan.height
    # A few assignments have two changes, the second a few days after the first.
    twice = change.group_by("assignment_id").agg(
        pl.len().alias("n"), (pl.col("effective_from").max() - pl.col("effective_from").min())
        .dt.total_days().alias("gap"),
    ).filter(pl.col("n") > 1)
    assert twice.height > 0 and (twice["n"] == 2).all()
    assert twice["gap"].is_between(1, 3).all()


def test_change_rows_repeat_their_base_and_fall_between_start_and_end(
    changed: dict[str, pl.DataFrame],
) -> None:
    base, change = changed["base"], changed["change"]
    joined = change.join(base, on="assignment_id", suffix="_base", how="left")
    assert joined.height == change.height and joined["account_id_base"].null_count() == 0
    for column in ("account_id", "addon_id", "start_date", "end_date", "assigned_at"):
        same = (pl.col(column) == pl.col(f"{column}_base")) | (
            pl.col(column).is_null() & pl.col(f"{column}_base").is_null()
        )
        assert joined.filter(~same).height == 0, column
    assert (joined["effective_from"] > joined["start_date"]).all()
    ended = joined.filter(pl.col("end_date").is_not_null())
    assert ended.height > 0 and (ended["effective_from"] < ended["end_date"]).all()
    # One change per (assignment_id, effective_from): none is a duplicate (SPEC §8.1).
    assert change.select("assignment_id", "effective_from").is_duplicated().sum() == 0
    # Each assignment's change rows come after its base row in the file.
    assert (change.group_by("assignment_id").len()["len"] <= 2).all()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_change_rows_are_reproducible_and_optional(tmp_path: Path, fmt: str) -> None:
    generate(200, tmp_path / "one", seed=4, months=2, fmt=fmt)
    generate(200, tmp_path / "two", seed=4, months=2, fmt=fmt)
    assert digests(tmp_path / "one") == digests(tmp_path / "two")
    report = generate(200, tmp_path / "other", seed=5, months=2, fmt=fmt)
    assert digests(tmp_path / "one") != digests(tmp_path / "other")
    assert report.changes > 0
    without = generate(200, tmp_path / "none", seed=5, months=2, fmt=fmt, changes=False)
    assert without.changes == 0
    def read(folder: str) -> pl.DataFrame:
        path = tmp_path / folder / f"assignments.{fmt}"
        return pl.read_csv(path, infer_schema_length=0) if fmt == "csv" else pl.read_parquet(path)

    rows, bare = read("other"), read("none")
    assert "effective_from" not in bare.columns
    if fmt == "parquet":
        assert rows.schema["effective_from"] == pl.Date  # a nullable DATE column
    # The base rows are the same with or without changes; the change rows come in addition.
    assert rows.filter(pl.col("effective_from").is_null()).drop("effective_from").equals(bare)
    assert rows.height == bare.height + report.changes
