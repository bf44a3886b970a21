"""The catalog (SPEC §1): the sample parses; each reference problem names its field and id."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.catalog import UNIT, CatalogError, catalog_frames, parse_catalog

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "catalog.yaml"


def sample() -> dict[str, Any]:
    return yaml.safe_load(SAMPLE.read_text())


def _find(items: list[dict[str, Any]], ident: str) -> dict[str, Any]:
    return next(i for i in items if i["id"] == ident)


def test_the_sample_catalog_parses_with_defaults() -> None:
    cat = parse_catalog(SAMPLE.read_text())
    assert cat.currencies == {"USD": 2, "EUR": 2, "JPY": 0}
    assert cat.conflict_policy == "replace"
    voice = next(s for s in cat.subscriptions if s.id == "SUB_VOICE")
    assert (voice.charge_mode, voice.prorate_first, voice.once_per_account) == (
        "in_advance", True, True,
    )
    assert voice.fee_plans[1].fee == Decimal("9.00")


def test_catalog_frames_use_minor_units_and_scaled_tiers() -> None:
    frames = catalog_frames(parse_catalog(SAMPLE.read_text()))
    fees = dict(frames.fee_plans.select("fee_plan_id", "fee_minor").iter_rows())
    assert fees["V3"] == 900 and fees["TV1J"] == 3000
    tiers = frames.discount_tiers.filter(discount_plan_id="VDP_US100").sort("tier_no")
    assert tiers["from_units"].to_list() == [0, 100 * UNIT]
    assert tiers["to_units"].to_list() == [100 * UNIT, None]
    assert tiers["pct"].to_list() == [10000, 0]


def _break(change: str) -> dict[str, Any]:
    raw = copy.deepcopy(sample())
    subs, addons, plans = raw["subscriptions"], raw["addons"], raw["discount_plans"]
    if change == "fee plan currency":
        _find(subs, "SUB_VOICE")["fee_plans"][0]["currency"] = "GBP"
    elif change == "unknown discount plan":
        _find(addons, "ADD_DATA5")["discount_plan"] = "DDP_NOPE"
    elif change == "duplicate id":
        addons.append(copy.deepcopy(_find(addons, "ADD_TV")))
    elif change == "duplicate fee plan id":
        _find(subs, "SUB_TV")["fee_plans"][1]["id"] = "TV1"
    elif change == "tiers not ascending":
        _find(plans, "VDP_INTL")["entries"][0]["tiers"] = [[0, 0], [1100, 10], [400, 20]]
    elif change == "undeclared currency code":
        raw["currencies"]["usd"] = 2
    elif change == "unknown subscription":
        _find(addons, "ADD_SMS")["subscription"] = "SUB_NOPE"
    elif change == "unknown add-on offered":
        _find(raw["main_products"], "MP_BASIC")["available_addons"].append("ADD_NOPE")
    elif change == "main product discount plan":
        _find(raw["main_products"], "MP_PLUS")["discount_plan"] = "MDP_NOPE"
    elif change == "bad term":
        _find(subs, "SUB_SEATS")["fee_plans"][0]["term_months"] = 2
    return raw


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "fee plan currency",
            "subscriptions[SUB_VOICE].fee_plans[V1].currency: 'GBP' is not declared",
        ),
        (
            "unknown discount plan",
            "addons[ADD_DATA5].discount_plan: unknown discount plan 'DDP_NOPE'",
        ),
        ("duplicate id", "addons[ADD_TV].id: duplicate id 'ADD_TV'"),
        ("duplicate fee plan id", "fee_plans[TV1].id: duplicate id 'TV1'"),
        ("tiers not ascending", "discount_plans[VDP_INTL].entries[0].tiers"),
        ("undeclared currency code", "currencies: Value error, 'usd' is not an ISO 4217 code"),
        ("unknown subscription", "addons[ADD_SMS].subscription: unknown subscription 'SUB_NOPE'"),
        ("unknown add-on offered", "main_products[MP_BASIC].available_addons: unknown add-on"),
        ("main product discount plan", "main_products[MP_PLUS].discount_plan: unknown discount"),
        ("bad term", "subscriptions[SUB_SEATS].fee_plans[SEAT1].term_months"),
    ],
)
def test_each_reference_problem_names_its_field_and_id(change: str, expected: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(_break(change))
    assert any(expected in p for p in caught.value.problems), caught.value.problems
    assert expected in str(caught.value)


def test_tiers_not_ascending_says_which_tier() -> None:
    with pytest.raises(CatalogError, match="strictly ascending: 400 follows 1100"):
        parse_catalog(_break("tiers not ascending"))


def test_every_problem_is_reported_at_once() -> None:
    raw = _break("unknown discount plan")
    _find(raw["subscriptions"], "SUB_VOICE")["fee_plans"][0]["currency"] = "GBP"
    _find(raw["addons"], "ADD_SMS")["subscription"] = "SUB_NOPE"
    with pytest.raises(CatalogError) as caught:
        parse_catalog(raw)
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("currencies: [", "<yaml>"),
        ("- just a list", "<root>: the catalog must be a mapping"),
        ("currencies: {USD: 2}\nmain_products: []\n", "main_products"),
        ("currencies: {USD: 2}\nmain_products: [{id: M, name: M}]\nsurprise: 1\n", "surprise"),
    ],
)
def test_malformed_catalog_text(text: str, expected: str) -> None:
    with pytest.raises(CatalogError, match=expected.replace("[", r"\[")):
        parse_catalog(text)


# --- SPEC §8 keys: each mistake is a CatalogError naming the field (exit 2 at load) ----------


def _tv1(raw: dict[str, Any]) -> dict[str, Any]:
    return _find(_find(raw["subscriptions"], "SUB_TV")["fee_plans"], "TV1")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"minimum_terms": 12},
         "subscriptions[SUB_TV].fee_plans[TV1].early_termination_fee: required with "
         "minimum_terms"),
        ({"early_termination_fee": "100.00"},
         "subscriptions[SUB_TV].fee_plans[TV1].minimum_terms: required with "
         "early_termination_fee"),
        ({"minimum_terms": 0, "early_termination_fee": "100.00"},
         "subscriptions[SUB_TV].fee_plans[TV1].minimum_terms"),
        ({"minimum_terms": 1.5, "early_termination_fee": "100.00"},
         "subscriptions[SUB_TV].fee_plans[TV1].minimum_terms"),
        ({"minimum_terms": True, "early_termination_fee": "100.00"},
         "subscriptions[SUB_TV].fee_plans[TV1].minimum_terms"),
        ({"minimum_terms": 12, "early_termination_fee": "-1.00"},
         "subscriptions[SUB_TV].fee_plans[TV1].early_termination_fee"),
        ({"minimum_terms": 12, "early_termination_fee": "100.001"},
         "subscriptions[SUB_TV].fee_plans[TV1].early_termination_fee: 100.001 has more "
         "decimals than USD allows (2)"),
    ],
)
def test_a_commitment_mistake_names_its_field(change: dict[str, Any], expected: str) -> None:
    raw = sample()
    _tv1(raw).update(change)


# SPEC §9: the document keys. Each bad value names its field.
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("invoice_prefix", "", "invoice_prefix: String should have at least 1 character"),
        ("credit_note_prefix", "X" * 17, "credit_note_prefix: String should have at most 16"),
        ("debit_note_prefix", "", "debit_note_prefix: String should have at least 1"),
        ("payment_terms_days", -1, "payment_terms_days: Input should be greater than or equal"),
        ("payment_terms_days", 366, "payment_terms_days: Input should be less than or equal"),
        ("seller", {"name": "A", "vat": "1"}, "seller.vat: Extra inputs are not permitted"),
    ],
)
def test_document_keys_out_of_range_name_their_field(key: str, value: Any, expected: str) -> None:
    raw = sample()
    raw[key] = value
    with pytest.raises(CatalogError) as caught:
        parse_catalog(raw)
    assert any(expected in p for p in caught.value.problems), caught.value.problems


def test_a_commitment_in_yen_takes_no_decimals() -> None:
    raw = sample()
    plan = _find(_find(raw["subscriptions"], "SUB_TV")["fee_plans"], "TV1J")
    plan.update({"minimum_terms": 6, "early_termination_fee": "500.5"})
    with pytest.raises(CatalogError, match=r"fee_plans\[TV1J\]\.early_termination_fee"):
        parse_catalog(raw)
    plan["early_termination_fee"] = "500"
    fp = catalog_frames(parse_catalog(raw)).fee_plans.filter(fee_plan_id="TV1J")
    assert fp.select("minimum_terms", "early_termination_fee_minor").row(0) == (6, 500)


@pytest.mark.parametrize("value", ["sometimes", "", None, 1])
def test_an_unknown_plan_change_names_the_field(value: object) -> None:
    raw = sample()
    _find(raw["subscriptions"], "SUB_TV")["plan_change"] = value
    with pytest.raises(CatalogError) as caught:
        parse_catalog(raw)
    assert any("subscriptions[SUB_TV].plan_change" in p for p in caught.value.problems), (
        caught.value.problems
    )


@pytest.mark.parametrize("value", [32, -1, 1.5, "soon", True])
def test_a_grace_outside_0_to_31_days_names_the_field(value: object) -> None:
    raw = sample()
    raw["finalize_grace_days"] = value
    with pytest.raises(CatalogError) as caught:
        parse_catalog(raw)
    assert any(p.startswith("finalize_grace_days") for p in caught.value.problems), (
        caught.value.problems
    )


def test_the_section_8_keys_parse_with_their_defaults_and_values() -> None:
    assert parse_catalog(sample()).finalize_grace_days == 0
    raw = sample()
    raw["finalize_grace_days"] = 31
    _find(raw["subscriptions"], "SUB_TV")["plan_change"] = "upgrades_now"
    _tv1(raw).update({"minimum_terms": 12, "early_termination_fee": "100.00"})
    cat = parse_catalog(raw)
    frames = catalog_frames(cat)
    assert cat.finalize_grace_days == 31
    assert frames.subscriptions.filter(subscription_id="SUB_TV")["plan_change"].item() == (
        "upgrades_now"
    )
    assert frames.fee_plans.filter(fee_plan_id="TV1").select(
        "minimum_terms", "early_termination_fee_minor"
    ).row(0) == (12, 10000)


def test_document_keys_default_and_accept_their_bounds() -> None:
    cat = parse_catalog(SAMPLE.read_text())
    assert (cat.invoice_prefix, cat.credit_note_prefix, cat.debit_note_prefix) == (
        "INV-", "CN-", "DN-")
    assert cat.payment_terms_days == 30 and cat.seller is None
    raw = sample()
    raw.update(invoice_prefix="X" * 16, credit_note_prefix="C", payment_terms_days=365,
               seller={"name": "Acme", "address": "1 Main St", "tax_id": "T1"})
    cat = parse_catalog(raw)
    assert cat.invoice_prefix == "X" * 16 and cat.payment_terms_days == 365
    assert cat.seller is not None and cat.seller.tax_id == "T1"
    raw["payment_terms_days"] = 0
    assert parse_catalog(raw).payment_terms_days == 0
