"""Priority conflicts (SPEC §3): same-priority add-ons that discount the same entry at once.

Catalog facts: `addon` (priority, discount plan), `entry` (discount plan, service,
destination_group, threshold_type) and the run's `policy` (replace or reject). From them the rule
`addons_discount_the_same_entry` derives one `shared_entry` fact per ordered add-on pair and
shared entry key, before any situation arrives.
Situation facts: `pair`, the distinct (earlier add-on, later add-on) of two eligible assignments on
one account whose life cycles overlap (earlier = assigned first, by assigned_at then
assignment_id). Each pair concludes `replaced` (the earlier one ends when the later one starts),
`rejected` (the later one is refused) or `no conflict`.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from durable.engine import Closure
from durable.lang import c, distinct, m, none, ruleset, when_all

from pipeline.catalog import Catalog
from rules import engine
from rules.engine import Fact, conclude
from rules.situations import distinct_situations

NAME = "billrun_conflicts"

SHARED_ENTRY = "add-ons that discount the same entry share it"
REPLACED = "a later same-priority add-on with a shared discount entry replaces the earlier one"
REJECTED = "a later same-priority add-on with a shared discount entry is refused"
NO_CONFLICT = "add-ons of different priority or without a shared discount entry do not conflict"
RULES = (SHARED_ENTRY, REPLACED, REJECTED, NO_CONFLICT)


def _pair() -> object:
    """A fresh pattern for one pair situation, named `sit`."""
    return c.sit << (m.kind == "pair")


def _first() -> object:
    """A fresh pattern for the add-on assigned first, named `first`."""
    return c.first << (m.kind == "addon") & (m.addon == c.sit.first_addon)


def _later_same_priority() -> object:
    """A fresh pattern for the later add-on with the first one's priority, named `later`."""
    return (c.later << (m.kind == "addon") & (m.addon == c.sit.later_addon)
            & (m.priority == c.first.priority))


def _shared() -> object:
    """A fresh pattern for an entry the pair's add-ons share, named `shared`."""
    return (c.shared << (m.kind == "shared_entry") & (m.first == c.sit.first_addon)
            & (m.later == c.sit.later_addon))


def _declare() -> None:
    """Declare the conflicts ruleset (called once per process by engine.declare)."""
    with ruleset(NAME):

        @when_all(distinct(False),
                  c.a << (m.kind == "addon") & (m.discount_plan != ""),
                  c.b << (m.kind == "addon") & (m.discount_plan != ""),
                  c.ea << (m.kind == "entry") & (m.discount_plan == c.a.discount_plan),
                  c.eb << (m.kind == "entry") & (m.discount_plan == c.b.discount_plan)
                  & (m.service == c.ea.service)
                  & (m.destination_group == c.ea.destination_group)
                  & (m.threshold_type == c.ea.threshold_type))
        def addons_discount_the_same_entry(c: Closure) -> None:
            """SPEC §3: plans share an entry with one service, destination_group, threshold_type."""
            key = f"{c.ea.service}/{c.ea.destination_group}/{c.ea.threshold_type}"
            c.assert_fact({"kind": "shared_entry", "id": f"shared:{c.a.addon}:{c.b.addon}:{key}",
                           "first": c.a.addon, "later": c.b.addon, "entry": key})

        @when_all(distinct(False), _pair(), _first(), _later_same_priority(), _shared(),
                  c.policy << (m.kind == "policy") & (m.policy == "replace"))
        def later_addon_replaces_earlier_one(c: Closure) -> None:
            """SPEC §3 policy replace: the later add-on replaces the earlier one when it starts."""
            conclude(c, REPLACED, "replaced", f"replaced by {{by}} ({c.sit.later_addon}), "
                     f"assigned later, from {{end}}: both have priority {c.first.priority} and "
                     "discount {detail}", detail=c.shared.entry)

        @when_all(distinct(False), _pair(), _first(), _later_same_priority(), _shared(),
                  c.policy << (m.kind == "policy") & (m.policy == "reject"))
        def later_addon_is_refused(c: Closure) -> None:
            """SPEC §3 policy reject: the add-on assigned later is refused."""
            conclude(c, REJECTED, "rejected", f"refused: {{by}} ({c.sit.first_addon}), assigned "
                     f"earlier, has the same priority {c.first.priority} and also discounts "
                     "{detail}", detail=c.shared.entry)

        @when_all(distinct(False), _pair(), _first(),
                  c.later << (m.kind == "addon") & (m.addon == c.sit.later_addon)
                  & (m.priority != c.first.priority))
        def addons_of_different_priority_coexist(c: Closure) -> None:
            """SPEC §3: add-ons conflict only when they have the same priority."""
            conclude(c, NO_CONFLICT, "no conflict", "")

        @when_all(distinct(False), _pair(), _first(), _later_same_priority(),
                  none((m.kind == "shared_entry") & (m.first == c.sit.first_addon)
                       & (m.later == c.sit.later_addon)))
        def addons_without_shared_entry_coexist(c: Closure) -> None:
            """SPEC §3: add-ons conflict only when their discount plans share an entry."""
            conclude(c, NO_CONFLICT, "no conflict", "")


engine.declare(NAME, _declare)


def catalog_facts(catalog: Catalog, policy: Literal["replace", "reject"]) -> list[Fact]:
    """The facts the conflict rules join: add-ons, discount entries and the run's policy."""
    out: list[Fact] = [{"kind": "policy", "id": "policy", "policy": policy}]
    out += [
        {
            "kind": "addon",
            "id": f"addon:{a.id}",
            "addon": a.id,
            "priority": a.priority,
            "discount_plan": a.discount_plan or "",
        }
        for a in catalog.addons
    ]
    out += [
        {
            "kind": "entry",
            "id": f"entry:{plan.id}:{n}",
            "discount_plan": plan.id,
            "service": e.service,
            "destination_group": e.destination_group,
            "threshold_type": e.threshold_type,
        }
        for plan in catalog.discount_plans
        for n, e in enumerate(plan.entries)
    ]
    return out


def judge_pairs(
    catalog: Catalog, pairs: pl.DataFrame, policy: Literal["replace", "reject"]
) -> pl.DataFrame:
    """The verdict of each overlapping pair: its columns (first_addon, later_addon, ...) plus
    rule, outcome, reason."""
    if policy not in ("replace", "reject"):
        raise ValueError(f"conflict policy {policy!r} is not replace or reject")
    tagged, distinct_rows = distinct_situations(pairs, ["first_addon", "later_addon"], "pair")
    verdicts = engine.judge(
        NAME, catalog_facts(catalog, policy), engine.facts(distinct_rows, "pair"), expect="one"
    )
    return tagged.join(verdicts, on="situation").drop("situation")


OFFER_VERDICT_SCHEMA: dict[str, pl.DataType] = {
    "first_addon": pl.Utf8(),
    "later_addon": pl.Utf8(),
    "rule": pl.Utf8(),
    "outcome": pl.Utf8(),
}


def offer_verdicts(catalog: Catalog, policy: Literal["replace", "reject"]) -> pl.DataFrame:
    """The ruleset's verdict on adding each catalog add-on (`later_addon`) to an account that
    holds another one (`first_addon`, held so assigned earlier), for every ordered pair of
    distinct add-ons: rule and outcome (`replaced`, `rejected` or `no conflict`).

    The `available_addons` view reads these verdicts, not a copy of the test (STYLE §6)."""
    ids = pl.DataFrame(
        {"first_addon": [a.id for a in catalog.addons]}, schema={"first_addon": pl.Utf8}
    )
    pairs = ids.join(ids.rename({"first_addon": "later_addon"}), how="cross").filter(
        pl.col("first_addon") != pl.col("later_addon")
    )
    if pairs.height == 0:
        return pl.DataFrame(schema=OFFER_VERDICT_SCHEMA)
    return judge_pairs(catalog, pairs, policy).select(list(OFFER_VERDICT_SCHEMA)).sort(
        "first_addon", "later_addon"
    )
