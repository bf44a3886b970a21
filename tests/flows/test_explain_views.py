"""`billrun explain` and the analyst views, on the hand-made scenario (SPEC §5-6)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from billrun.explain import explain_frames, explain_invoice
from flows.load import load_flow
from flows.nightly import nightly_flow
from store.snapshot import analyst_path


@pytest.fixture(scope="module")
def billed_once(module_scenario: dict[str, Path]) -> Path:
    db = module_scenario["tmp"] / "billed.duckdb"
    load_flow(str(module_scenario["drop"]), str(db))
    nightly_flow(as_of=date(2026, 2, 1), db=str(db))
    return db


@pytest.fixture()
def billed(billed_once: Path, scenario: dict[str, Path], copy_db) -> Path:
    """Billed once per module (loaded, then as of Feb 1); each test gets its own copy."""
    return copy_db(billed_once, scenario["db"])


def test_explain_shows_decisions_lines_and_counters(billed: Path) -> None:
    db = billed
    with duckdb.connect(str(db), read_only=True) as con:
        frames = explain_frames(con, "A1", "2026-01")
    assert frames["invoice"]["total"].to_list() == [Decimal("37.32")]
    assert set(frames["decisions"]["assignment_id"]) == {"AS_TV", "AS_V100"}
    assert "active" in frames["decisions"]["outcome"].to_list()
    assert frames["lines"]["amount"].sum() == Decimal("37.32")
    counters = frames["counters"].select("value_before", "value_after").rows()
    assert counters == [(Decimal("0"), Decimal("120"))]

    console = Console(record=True, width=200)
    explain_invoice(str(db), "A1", "2026-01", console)
    text = console.export_text()
    # Amounts as people read them, at USD's 2 decimals (issue 13 item 3; was 37.3200).
    assert "Invoice A1 2026-01: 37.32 USD (final" in text
    assert "Sum of lines: 37.32 = invoice total 37.32" in text
    assert "AS_TV" in text and "Discount counters" in text


def test_available_addons_warns_of_the_conflict_before_adding(billed: Path) -> None:
    db = billed
    with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
        rows = con.execute(
            "SELECT account_id, addon_id, priority, would_conflict_with, conflict_outcome "
            "FROM available_addons ORDER BY ALL"
        ).fetchall()
    # A1 holds the TV pack and the 100-minute add-on; the 200-minute one has the same priority
    # and the same (voice, US, quantity) entry, so under `replace` it would replace AS_V100.
    assert rows == [("A1", "ADD_VOICE200", 20, "AS_V100", "would replace")]


def test_analyst_views_answer(billed: Path) -> None:
    db = billed
    with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
        revenue = dict(
            con.execute(
                "SELECT addon_id, net FROM revenue_by_addon WHERE period = '2026-01'"
            ).fetchall()
        )
        discount = con.execute(
            "SELECT discount_plan_id, discount_given FROM discount_by_plan"
        ).fetchall()
        summary = con.execute("SELECT * FROM invoice_summary ORDER BY period").fetchall()
    # TV: 10.00 activation + 20.32; voice add-on: 5.00 fee + 12.00 usage - 10.00 discount.
    assert revenue == {"ADD_TV": Decimal("30.32"), "ADD_VOICE100": Decimal("7.00")}
    assert discount == [("VDP_US100", Decimal("10.00"))]
    assert summary == [
        ("2026-01", "final", "USD", 1, Decimal("37.32")),
        ("2026-02", "draft", "USD", 1, Decimal("35.00")),
    ]


def test_explain_splits_the_crossing_event_at_the_tier_boundary(billed: Path) -> None:
    from billrun.explain import event_detail

    db = billed
    with duckdb.connect(str(db), read_only=True) as con:
        events = event_detail(con, "A1", "2026-01")
    # E1: 50 min, all in the 100 % tier. E2: 70 min from counter 50: 50 min free, 20 min paid.
    assert events.select(
        "event_id", "tier_pct", "counter_from", "counter_to", "quantity", "amount", "discount"
    ).rows() == [
        ("E1", "100.00", "0.00", "50.00", "50.00", "5.0000", "5.0000"),
        ("E2", "100.00", "50.00", "100.00", "50.00", "5.0000", "5.0000"),
        ("E2", "0.00", "100.00", "120.00", "20.00", "2.0000", "0.0000"),
    ]


def test_explain_json_is_one_document_with_amounts_as_strings(billed: Path) -> None:
    import json

    from billrun.explain import explain_json

    doc = json.loads(json.dumps(explain_json(str(billed), "A1", "2026-01")))
    import jsonschema

    schema = Path(__file__).resolve().parents[2] / "docs" / "explain.schema.json"
    jsonschema.validate(doc, json.loads(schema.read_text()))  # the documented contract
    assert doc["currency"] == "USD" and doc["invoice"][0]["total"] == "37.32"
    assert sum(Decimal(line["amount"]) for line in doc["lines"]) == Decimal("37.32")
    assert {d["assignment_id"] for d in doc["decisions"]} == {"AS_TV", "AS_V100"}
