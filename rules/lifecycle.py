"""Life cycle (SPEC §3): the activation-date lock, what ends an add-on, and its state per period.

Catalog facts: `offer` (main product -> add-on) and `addon`.
Situation facts:
- `lock`: distinct (requested_start, locked_start) as day numbers since 1970-01-01, for the
  assignments whose activation date was active in a billed period.
- `product_change`: distinct (add-on, new main product) of the account rows that take effect
  during an eligible add-on's life.
- `closure`: the add-ons of eligible assignments whose account closes during their life.
- `period_position`: distinct (start, end, period_end): the settled life cycle in days from the
  period's first day (0), clipped to one day outside the period; an open end lies beyond it.
Verdicts whose outcome is not in the decisions vocabulary (`unchanged`, `continues`) only say
that nothing happened; they keep every situation answered.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from durable.engine import Closure
from durable.lang import c, m, none, ruleset, when_all

from pipeline.catalog import Catalog
from pipeline.contracts import EPOCH
from rules import engine
from rules.engine import Fact, conclude
from rules.situations import distinct_situations

NAME = "billrun_lifecycle"

LOCKED = "activation date cannot move once billed"
LOCK_UNCHANGED = "an unchanged activation date stands"
PRODUCT_CHANGE = "main product change ends add-ons it does not offer"
PRODUCT_KEEPS = "main product change keeps add-ons it offers"
ACCOUNT_CLOSED = "account closure ends every add-on"
PENDING = "add-on is pending before its start date"
ACTIVE = "add-on is active from its start date until its end date"
EXPIRED = "add-on is expired from its end date"
RULES = (LOCKED, LOCK_UNCHANGED, PRODUCT_CHANGE, PRODUCT_KEEPS, ACCOUNT_CLOSED, PENDING, ACTIVE,
         EXPIRED)

def day_text(day: int) -> str:
    """ISO text of a day number since 1970-01-01."""
    return (EPOCH + timedelta(days=int(day))).isoformat()


def _position() -> object:
    """A fresh pattern for one period-position situation, named `sit`."""
    return c.sit << (m.kind == "period_position")


def _declare() -> None:
    """Declare the life-cycle ruleset (called once per process by engine.declare)."""
    with ruleset(NAME):

        @when_all(c.sit << (m.kind == "lock") & (m.requested_start != m.locked_start))
        def moved_activation_date_is_refused(c: Closure) -> None:
            """SPEC §3: an update that moves an activation date already billed is refused."""
            locked, requested = day_text(c.sit.locked_start), day_text(c.sit.requested_start)
            conclude(c, LOCKED, "locked", f"the activation date {locked} was active in a billed "
                     f"period: the update to {requested} is refused and {locked} is kept")

        @when_all(c.sit << (m.kind == "lock") & (m.requested_start == m.locked_start))
        def unchanged_activation_date_stands(c: Closure) -> None:
            """SPEC §3: an update that keeps the billed activation date changes nothing."""
            conclude(c, LOCK_UNCHANGED, "unchanged", "")

        @when_all(c.sit << (m.kind == "product_change"),
                  none((m.kind == "offer") & (m.product == c.sit.product)
                       & (m.addon == c.sit.addon)))
        def main_product_change_ends_addon(c: Closure) -> None:
            """SPEC §3: an add-on the new main product does not offer ends on the day of change."""
            conclude(c, PRODUCT_CHANGE, "ends", f"the main product changes to {c.sit.product} "
                     f"on {{end}} and it does not offer {c.sit.addon}: the add-on ends that day")

        @when_all(c.sit << (m.kind == "product_change"),
                  c.offer << (m.kind == "offer") & (m.product == c.sit.product)
                  & (m.addon == c.sit.addon))
        def main_product_change_keeps_offered_addon(c: Closure) -> None:
            """SPEC §3: a new main product that offers the add-on leaves it running."""
            conclude(c, PRODUCT_KEEPS, "continues", "")

        @when_all(c.sit << (m.kind == "closure"),
                  c.addon << (m.kind == "addon") & (m.addon == c.sit.addon))
        def account_closure_ends_addon(c: Closure) -> None:
            """SPEC §3: every add-on ends on the day its account closes."""
            conclude(c, ACCOUNT_CLOSED, "ends", "the account closes on {end}: every add-on, "
                     f"{c.sit.addon} included, ends that day")

        @when_all(_position() & (m.start >= m.period_end))
        def addon_pending_before_start(c: Closure) -> None:
            """SPEC §3: before its start date an add-on is pending."""
            conclude(c, PENDING, "pending", "pending: it starts on {start}, after this period")

        @when_all(_position() & (m.start < m.period_end) & (m.end > 0) & (m.end > m.start))
        def addon_active_in_period(c: Closure) -> None:
            """SPEC §3: an add-on is active on the days in [start_date, end_date)."""
            conclude(c, ACTIVE, "active", "active in this period from {from} until {until} "
                     "(exclusive)")

        @when_all(_position() & (m.end <= 0))
        def addon_expired_before_period(c: Closure) -> None:
            """SPEC §3: from its end date on an add-on is expired."""
            conclude(c, EXPIRED, "expired", "expired: it ended on {end}, before this period")

        @when_all(_position() & (m.start < m.period_end) & (m.end > 0) & (m.end <= m.start))
        def addon_never_active(c: Closure) -> None:
            """SPEC §3: an add-on that ends the day it starts is never active: it is expired."""
            conclude(c, EXPIRED, "expired", "expired: it ends on {end}, the day it starts, so "
                     "it is never active")


engine.declare(NAME, _declare)


def catalog_facts(catalog: Catalog) -> list[Fact]:
    """The catalog facts the life-cycle rules join: offers and add-ons."""
    out: list[Fact] = [
        {"kind": "offer", "id": f"offer:{p.id}:{a}", "product": p.id, "addon": a}
        for p in catalog.main_products
        for a in p.available_addons
    ]
    return out + [{"kind": "addon", "id": f"addon:{a.id}", "addon": a.id} for a in catalog.addons]


def _judge(catalog: Catalog, frame: pl.DataFrame, keys: list[str], kind: str) -> pl.DataFrame:
    """Reduce `frame` to distinct `keys`, judge them, and join the verdicts back on every row."""
    tagged, distinct_rows = distinct_situations(frame, keys, kind)
    verdicts = engine.judge(NAME, catalog_facts(catalog), engine.facts(distinct_rows, kind))
    return tagged.join(verdicts, on="situation").drop("situation")


def judge_locks(catalog: Catalog, frame: pl.DataFrame) -> pl.DataFrame:
    """Lock verdict of each row of `frame` (a row key, requested_start, locked_start)."""
    days = frame.with_columns(
        pl.col("requested_start").cast(pl.Int32), pl.col("locked_start").cast(pl.Int32)
    )
    return _judge(catalog, days, ["requested_start", "locked_start"], "lock")


def judge_product_changes(catalog: Catalog, changes: pl.DataFrame) -> pl.DataFrame:
    """Verdict per account row that takes effect during an add-on's life (addon, product)."""
    return _judge(catalog, changes, ["addon", "product"], "product_change")


def judge_closures(catalog: Catalog, frame: pl.DataFrame) -> pl.DataFrame:
    """Verdict of each row of `frame` (a row key, addon): its account closes during its life."""
    return _judge(catalog, frame, ["addon"], "closure")


def judge_periods(catalog: Catalog, frame: pl.DataFrame) -> pl.DataFrame:
    """State of each assignment in its period: `frame` (seq and the columns of
    `rules.situations.period_positions`) plus rule, outcome, reason."""
    positions = frame.select(
        "seq",
        pl.col("pos_start").cast(pl.Int64).alias("start"),
        pl.col("pos_end").cast(pl.Int64).alias("end"),
        pl.col("pos_period_end").cast(pl.Int64).alias("period_end"),
    )
    verdicts = _judge(catalog, positions, ["start", "end", "period_end"], "period_position")
    return frame.join(verdicts.select("seq", "rule", "outcome", "reason"), on="seq")
