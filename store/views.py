"""The catalog as tables, and the documented analyst views (docs/TABLES.md)."""

from __future__ import annotations

import duckdb
import polars as pl

from pipeline.catalog import CatalogFrames
from pipeline.contracts import REVENUE_BUCKETS, line_types_where
from pipeline.money import format_amount
from store.late_usage import LATE_USAGE_SQL

# Current catalog, flattened; rewritten by every billing run inside its transaction.
CATALOG_TABLES = {
    "catalog_currencies": "currencies",
    "catalog_main_products": "main_products",
    "catalog_offers": "offers",
    "catalog_addons": "addons",
    "catalog_subscriptions": "subscriptions",
    "catalog_discount_entries": "discount_entries",
}



def _types_in(bucket: str) -> str:
    """The quoted line types of a revenue bucket, for an SQL `IN (...)`."""
    return ", ".join(f"'{name}'" for name in line_types_where(revenue_bucket=bucket))


def _revenue_buckets() -> str:
    """One `sum(amount) FILTER (...) AS bucket` per revenue bucket of the line-type registry,
    of the invoice lines (the adjustment lines have their own column)."""
    parts = [
        f"sum(amount) FILTER (WHERE line_type IN ({_types_in(bucket)}) AND NOT is_adjustment) "
        f"AS {bucket}"
        for bucket in REVENUE_BUCKETS
    ]
    return ",\n               ".join(parts)


VIEWS: dict[str, str] = {
    # One row per account and add-on its current main product offers that it does not hold.
    "available_addons": """
        WITH as_of AS (
            SELECT coalesce((SELECT max(as_of) FROM runs WHERE kind = 'nightly'
                             AND status = 'success'), current_date) AS day),
        current_account AS (
            SELECT a.* FROM accounts a, as_of
            WHERE a.effective_from <= as_of.day OR a.effective_from = (
                SELECT min(effective_from) FROM accounts b WHERE b.account_id = a.account_id)
            QUALIFY row_number() OVER (PARTITION BY a.account_id
                                       ORDER BY a.effective_from DESC) = 1),
        held AS (  -- settled by the rules: replaced, refused or ineligible ones are not held
            SELECT s.assignment_id, s.account_id, s.addon_id FROM assignment_lifecycles s, as_of
            WHERE s.billable AND (s.eff_end IS NULL OR s.eff_end > as_of.day)),
        plans AS (
            SELECT addon_id, f.currency,
                   string_agg(f.fee_plan_id || ' (' || f.term_months || ' mo ' || f.fee_text
                              || coalesce('; ' || f.promotions, '') || ')', ', '
                              ORDER BY f.term_months) AS fee_plans
            FROM catalog_addons ad JOIN catalog_fee_plans f USING (subscription_id)
            GROUP BY ALL),
        conflicts AS (  -- the conflicts ruleset's verdicts (rules.conflicts.offer_verdicts)
            SELECT c.account_id, v.later_addon AS addon_id,
                   string_agg(DISTINCT h.assignment_id, ', ' ORDER BY h.assignment_id) AS ids,
                   max(v.outcome) AS outcome
            FROM current_account c
            JOIN held h ON h.account_id = c.account_id
            JOIN catalog_addon_conflicts v ON v.first_addon = h.addon_id
            WHERE v.outcome IN ('replaced', 'rejected')
            GROUP BY c.account_id, v.later_addon)
        SELECT c.account_id, c.main_product_id, o.addon_id, ad.name, ad.description,
               ad.priority, ad.discount_plan_id, ad.subscription_id, p.fee_plans,
               x.ids AS would_conflict_with,
               CASE x.outcome WHEN 'rejected' THEN 'would be refused'
                    WHEN 'replaced' THEN 'would replace' END AS conflict_outcome
        FROM current_account c
        JOIN catalog_offers o ON o.main_product_id = c.main_product_id
        JOIN catalog_addons ad ON ad.addon_id = o.addon_id
        LEFT JOIN plans p ON p.addon_id = o.addon_id AND p.currency = c.currency
        LEFT JOIN conflicts x ON x.account_id = c.account_id AND x.addon_id = o.addon_id
        WHERE NOT EXISTS (SELECT 1 FROM held h
                          WHERE h.account_id = c.account_id AND h.addon_id = o.addon_id)""",
    # One row per period, add-on and currency: what each add-on earned. The buckets hold the
    # invoice lines, `adjustments` the adjustment lines of finalized periods, and `net` all of
    # them: net = fees + usage + discounts + suspension_credits + adjustments (nulls as 0).
    "revenue_by_addon": f"""
        SELECT period, coalesce(addon_id, '(main product / none)') AS addon_id, currency,
               {_revenue_buckets()},
               sum(amount) FILTER (WHERE is_adjustment) AS adjustments,
               sum(amount) AS net
        FROM (SELECT period, addon_id, currency, line_type, amount, false AS is_adjustment
              FROM charges
              UNION ALL
              SELECT period, addon_id, currency, line_type, amount, true FROM adjustments)
        GROUP BY ALL ORDER BY period, addon_id, currency""",
    # One row per period, discount plan, service, destination group and currency.
    "discount_by_plan": f"""
        SELECT c.period, coalesce(ad.discount_plan_id, mp.discount_plan_id) AS discount_plan_id,
               c.service, c.destination_group, c.currency,
               -sum(c.amount) AS discount_given, count(*) AS lines
        FROM charges c
        LEFT JOIN catalog_addons ad ON ad.addon_id = c.addon_id
        LEFT JOIN catalog_main_products mp ON mp.main_product_id = c.addon_id
        WHERE c.line_type IN ({_types_in("discounts")})
        GROUP BY ALL ORDER BY ALL""",
    # One row per conflict decision: who replaced or refused whom, and why.
    "conflicts_and_replacements": """
        SELECT period, account_id, assignment_id, outcome, rule, reason,
               effective_start, effective_end, run_id
        FROM decisions WHERE outcome IN ('replaced', 'rejected')
        ORDER BY period, account_id, assignment_id""",
    # One row per source file and rejected field: how much bad input, and of which kind.
    "rejected_by_reason": """
        SELECT source, split_part(reason, ':', 1) AS field, count(*) AS rows,
               any_value(reason) AS example_reason
        FROM rejected_rows GROUP BY ALL ORDER BY rows DESC, source, field""",
    # One row per version of an assignment (SPEC §8.5): its base version (no effective_from,
    # taking effect on start_date), then each change, with the verdict of the latest run that
    # billed it (plan_change_verdicts). A change without a verdict for its current version
    # (loaded, or corrected, since the last run settled its account: billed or not, a run
    # gives each change a verdict, docs/RULES.md) is 'not in effect', reason 'not billed yet'.
    "assignment_history": """
        WITH versions AS (
            SELECT assignment_id, account_id, addon_id, CAST(NULL AS DATE) AS effective_from,
                   start_date AS takes_effect_on, fee_plan_id, quantity, 'base' AS status,
                   CAST(NULL AS VARCHAR) AS reason
            FROM assignments
            UNION ALL
            SELECT c.assignment_id, a.account_id, a.addon_id, c.effective_from,
                   v.takes_effect_on, c.fee_plan_id, c.quantity,
                   CASE WHEN v.assignment_id IS NULL THEN 'not in effect' ELSE v.status END,
                   CASE WHEN v.assignment_id IS NULL THEN 'not billed yet' ELSE v.reason END
            FROM assignment_changes c JOIN assignments a USING (assignment_id)
            LEFT JOIN plan_change_verdicts v  -- the verdict on this version of the change
              ON v.assignment_id = c.assignment_id AND v.effective_from = c.effective_from
             AND v.fee_plan_id IS NOT DISTINCT FROM c.fee_plan_id
             AND v.quantity = c.quantity)
        SELECT * FROM versions
        ORDER BY assignment_id, effective_from NULLS FIRST""",
    # One row per late event: dated in a period already final for its account, loaded after
    # that period was last computed; with the command that bills it (store/late_usage.py).
    "late_usage": LATE_USAGE_SQL,
    # One row per period, status and currency: the invoice run at a glance.
    "invoice_summary": """
        SELECT period, status, currency, count(*) AS invoices, sum(total) AS total
        FROM invoices GROUP BY ALL ORDER BY ALL""",
}


def write_catalog_tables(
    con: duckdb.DuckDBPyConnection,
    frames: CatalogFrames,
    conflict_policy: str,
    addon_conflicts: pl.DataFrame,
) -> None:
    """Replace the catalog tables with the current catalog, and the conflicts ruleset's verdict
    on each ordered pair of add-ons (`addon_conflicts`), inside the caller's transaction."""
    for table, attribute in CATALOG_TABLES.items():
        con.register("_catalog_frame", getattr(frames, attribute).to_arrow())
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _catalog_frame")
        con.unregister("_catalog_frame")
    fee_plans = frames.fee_plans.select(
        "fee_plan_id", "subscription_id", "term_months", "currency", "fee"
    ).with_columns(pl.Series("fee_text", fee_texts(frames), dtype=pl.Utf8)).join(
        promotion_texts(frames), on="fee_plan_id", how="left", maintain_order="left"
    )
    con.register("_catalog_frame", fee_plans.to_arrow())
    con.execute(
        "CREATE OR REPLACE TABLE catalog_fee_plans AS SELECT * REPLACE "
        "(CAST(fee AS DECIMAL(18,4)) AS fee) FROM _catalog_frame"
    )
    con.unregister("_catalog_frame")
    con.register("_catalog_frame", addon_conflicts.to_arrow())
    con.execute("CREATE OR REPLACE TABLE catalog_addon_conflicts AS SELECT * FROM _catalog_frame")
    con.unregister("_catalog_frame")
    settings = pl.DataFrame({"conflict_policy": [conflict_policy]})
    con.register("_catalog_frame", settings.to_arrow())
    con.execute("CREATE OR REPLACE TABLE catalog_settings AS SELECT * FROM _catalog_frame")
    con.unregister("_catalog_frame")


def fee_texts(frames: CatalogFrames) -> list[str]:
    """Each fee plan's fee as people read it (`30.00 USD`, `3,224 JPY`), for `fee_plans`.

    Formatted here, not in SQL, so that one function formats every amount (the catalog has a
    handful of fee plans: a loop over them is no loop over the data)."""
    units = dict(frames.currencies.select("currency", "minor_units").iter_rows())
    return [
        format_amount(minor, units[currency], currency, in_minor=True)
        for minor, currency in frames.fee_plans.select("fee_minor", "currency").iter_rows()
    ]


def promotion_texts(frames: CatalogFrames) -> pl.DataFrame:
    """Each fee plan's promotions as people read them (SPEC §7.1), for `fee_plans`, e.g.
    `promotions: 3 term(s) at 0.00 USD, 6 term(s) at 9.99 USD` (one row per plan that has any)."""
    units = dict(frames.currencies.select("currency", "minor_units").iter_rows())
    currency_of = dict(frames.fee_plans.select("fee_plan_id", "currency").iter_rows())
    texts: dict[str, list[str]] = {}
    promotions = frames.promotions.sort("fee_plan_id", "promotion_no")
    for plan, first, last, minor in promotions.select(
        "fee_plan_id", "first_term", "last_term", "fee_minor"
    ).iter_rows():
        currency = currency_of[plan]
        fee = format_amount(minor, units[currency], currency, in_minor=True)
        texts.setdefault(plan, []).append(f"{last - first + 1} term(s) at {fee}")
    return pl.DataFrame(
        {"fee_plan_id": list(texts), "promotions": [f"promotions: {', '.join(t)}" for t in
                                                    texts.values()]},
        schema={"fee_plan_id": pl.Utf8(), "promotions": pl.Utf8()},
    )


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create every analyst view; cheap, so every billing run does it."""
    for name, sql in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
