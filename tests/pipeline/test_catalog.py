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
