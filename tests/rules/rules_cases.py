"""Small builders for hand-made rules cases: typed accounts, assignments and locks frames."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl

from pipeline.catalog import Catalog, parse_catalog

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "catalog.yaml"

ACCOUNT_SCHEMA = {
    "account_id": pl.Utf8, "currency": pl.Utf8, "main_product_id": pl.Utf8,
    "billing_day": pl.Int64, "status": pl.Utf8, "opened_on": pl.Date, "closed_on": pl.Date,
    "effective_from": pl.Date,
}
ASSIGNMENT_SCHEMA = {
    "assignment_id": pl.Utf8, "account_id": pl.Utf8, "addon_id": pl.Utf8,
    "fee_plan_id": pl.Utf8, "start_date": pl.Date, "end_date": pl.Date,
    "assigned_at": pl.Datetime("us"), "quantity": pl.Int64,
}


def sample_catalog() -> Catalog:
    """The sample catalog shipped in data/sample."""
    return parse_catalog(SAMPLE.read_text())


def d(text: str) -> date:
    """`'2026-03-05'` -> date."""
    return date.fromisoformat(text)


def account(
    account_id: str = "A1", product: str = "MP_PLUS", currency: str = "USD",
    opened: str = "2026-01-01", effective_from: str | None = None, status: str = "active",
    closed_on: str | None = None, billing_day: int = 1,
) -> dict:
    """One account row (one main-product version)."""
    return {
        "account_id": account_id, "currency": currency, "main_product_id": product,
        "billing_day": billing_day, "status": status, "opened_on": d(opened),
        "closed_on": d(closed_on) if closed_on else None,
        "effective_from": d(effective_from) if effective_from else d(opened),
    }


def assignment(
    assignment_id: str, addon: str, fee_plan: str | None, start: str, end: str | None = None,
    account_id: str = "A1", assigned_at: str = "2026-01-01T00:00:00", quantity: int = 1,
) -> dict:
    """One assignment row (current version)."""
    return {
        "assignment_id": assignment_id, "account_id": account_id, "addon_id": addon,
        "fee_plan_id": fee_plan, "start_date": d(start), "end_date": d(end) if end else None,
        "assigned_at": datetime.fromisoformat(assigned_at), "quantity": quantity,
    }


def accounts_frame(rows: list[dict]) -> pl.DataFrame:
    """Typed accounts frame."""
    return pl.DataFrame(rows, schema=ACCOUNT_SCHEMA)


def assignments_frame(rows: list[dict]) -> pl.DataFrame:
    """Typed assignments frame."""
    return pl.DataFrame(rows, schema=ASSIGNMENT_SCHEMA)


def locks_frame(rows: list[tuple[str, str]]) -> pl.DataFrame:
    """Typed locks frame from (assignment_id, locked_start) pairs."""
    return pl.DataFrame(
        [{"assignment_id": a, "locked_start": d(s)} for a, s in rows],
        schema={"assignment_id": pl.Utf8, "locked_start": pl.Date},
    )


def conflict_catalog() -> Catalog:
    """A small catalog made to exercise priority conflicts (add-ons without subscriptions)."""
    def entry(service: str, group: str, kind: str = "quantity") -> dict:
        return {"service": service, "destination_group": group, "threshold_type": kind,
                "tiers": [[0, 100], [100, 0]]}

    addons = [
        ("V1", 20, "US100"), ("V2", 20, "US200"), ("V3", 20, "US300"), ("HI", 30, "US100"),
        ("SMS", 20, "SMS50"), ("AMT", 20, "USAMT"), ("NODISC", 20, None), ("MULTI", 20, "MULTI"),
    ]
    return parse_catalog({
        "currencies": {"USD": 2},
        "main_products": [
            {"id": "MP", "name": "Main", "available_addons": [a for a, _, _ in addons]},
            {"id": "MP_SMALL", "name": "Small", "available_addons": ["V1"]},
        ],
        "addons": [{"id": a, "name": a, "priority": p, "discount_plan": plan}
                   for a, p, plan in addons],
        "discount_plans": [
            {"id": "US100", "entries": [entry("voice", "US")]},
            {"id": "US200", "entries": [entry("voice", "US")]},
            {"id": "US300", "entries": [entry("voice", "US")]},
            {"id": "SMS50", "entries": [entry("sms", "ANY")]},
            {"id": "USAMT", "entries": [entry("voice", "US", "amount")]},
            {"id": "MULTI", "entries": [entry("voice", "US"), entry("sms", "ANY")]},
        ],
    })
