"""Eligibility (SPEC §3): may this add-on apply to this account at its activation date?

Catalog facts: `offer` (main product -> add-on), `addon` (with its subscription), `fee_plan`
(with its subscription and currency), `subscription` (with `once_per_account`).
Situation facts:
- `activation`: the distinct (main product at activation, add-on, fee plan, account currency,
  closed at activation) of the assignments. Each failed check concludes `ineligible` with its
  reason; when every check holds, `addon meets every eligibility condition` concludes `eligible`.
- `competition`: the distinct (earlier add-on, later add-on) of two assignments on one account
  whose life cycles overlap. The later one loses when both bring one `once_per_account`
  subscription; any other pair does not compete.
Strings that are absent are "" in facts (an add-on without subscription, no fee plan, no product).
"""

from __future__ import annotations

import polars as pl
from durable.engine import Closure
from durable.lang import c, distinct, m, none, ruleset, when_all

from pipeline.catalog import Catalog
from rules import engine
from rules.engine import Fact, conclude
from rules.situations import distinct_situations

NAME = "billrun_eligibility"

AVAILABLE = "add-on is available with the main product at activation"
NOT_CLOSED = "account is not closed at activation"
FEE_PLAN = "fee plan belongs to the add-on's subscription"
CURRENCY = "fee plan currency is the account currency"
ONCE_PER_ACCOUNT = "once-per-account subscription is not already active on the account"
ELIGIBLE = "add-on meets every eligibility condition"
NO_COMPETITION = "add-ons that share no once-per-account subscription do not compete"
RULES = (AVAILABLE, NOT_CLOSED, FEE_PLAN, CURRENCY, ONCE_PER_ACCOUNT, ELIGIBLE, NO_COMPETITION)

ACTIVATION_KEYS = ["product", "addon", "fee_plan", "currency", "closed_at_activation"]


def _competition() -> object:
    """A fresh pattern for one competition situation, named `sit`."""
    return c.sit << (m.kind == "competition")


def _first() -> object:
    """A fresh pattern for the add-on of the assignment made first, named `first`."""
    return c.first << (m.kind == "addon") & (m.addon == c.sit.first_addon)


def _declare() -> None:
    """Declare the eligibility ruleset (called once per process by engine.declare)."""
    with ruleset(NAME):

        @when_all(c.sit << (m.kind == "activation") & (m.product != ""),
                  none((m.kind == "offer") & (m.product == c.sit.product)
                       & (m.addon == c.sit.addon)))
        def addon_not_offered_by_main_product(c: Closure) -> None:
            """SPEC §3: the add-on must be in available_addons of the main product at activation."""
            conclude(c, AVAILABLE, "ineligible", f"add-on {c.sit.addon} is not in the available "
                     f"add-ons of main product {c.sit.product} at activation")

        @when_all(c.sit << (m.kind == "activation") & (m.product == ""))
        def account_without_main_product_at_activation(c: Closure) -> None:
            """SPEC §3: an account with no main product yet at activation offers no add-on."""
            conclude(c, AVAILABLE, "ineligible", f"add-on {c.sit.addon} starts before the account "
                     "has a main product (the account was not open yet)")

        @when_all(c.sit << (m.kind == "activation") & (m.closed_at_activation == True))
        def account_closed_at_activation(c: Closure) -> None:
            """SPEC §3: the account must not be closed at the add-on's activation date."""
            conclude(c, NOT_CLOSED, "ineligible", "the account is closed at the activation date")

        @when_all(c.sit << (m.kind == "activation") & (m.fee_plan != ""),
                  c.addon << (m.kind == "addon") & (m.addon == c.sit.addon)
                  & (m.subscription != ""),
                  none((m.kind == "fee_plan") & (m.fee_plan == c.sit.fee_plan)
                       & (m.subscription == c.addon.subscription)))
        def fee_plan_outside_subscription(c: Closure) -> None:
            """SPEC §3: the fee plan must belong to the add-on's subscription."""
            conclude(c, FEE_PLAN, "ineligible", f"fee plan {c.sit.fee_plan} is not a plan of "
                     f"subscription {c.addon.subscription} of add-on {c.sit.addon}")

        @when_all(c.sit << (m.kind == "activation") & (m.fee_plan == ""),
                  c.addon << (m.kind == "addon") & (m.addon == c.sit.addon)
                  & (m.subscription != ""))
        def fee_plan_missing_for_subscription(c: Closure) -> None:
            """SPEC §3: an add-on with a subscription is taken on one of its fee plans."""
            conclude(c, FEE_PLAN, "ineligible", f"add-on {c.sit.addon} brings subscription "
                     f"{c.addon.subscription} but the assignment has no fee plan")

        @when_all(c.sit << (m.kind == "activation") & (m.fee_plan != ""),
                  c.addon << (m.kind == "addon") & (m.addon == c.sit.addon)
                  & (m.subscription == ""))
        def fee_plan_on_addon_without_subscription(c: Closure) -> None:
            """SPEC §2-3: an add-on without a subscription takes no fee plan."""
            conclude(c, FEE_PLAN, "ineligible", f"add-on {c.sit.addon} has no subscription, so "
                     f"fee plan {c.sit.fee_plan} cannot belong to it")

        @when_all(c.sit << (m.kind == "activation") & (m.fee_plan != ""),
                  c.plan << (m.kind == "fee_plan") & (m.fee_plan == c.sit.fee_plan)
                  & (m.currency != c.sit.currency))
        def fee_plan_in_another_currency(c: Closure) -> None:
            """SPEC §3: the fee plan's currency must be the account's currency."""
            conclude(c, CURRENCY, "ineligible", f"fee plan {c.sit.fee_plan} is in "
                     f"{c.plan.currency} but the account bills in {c.sit.currency}")

        @when_all(c.sit << (m.kind == "activation") & (m.closed_at_activation == False),
                  c.offer << (m.kind == "offer") & (m.product == c.sit.product)
                  & (m.addon == c.sit.addon),
                  c.addon << (m.kind == "addon") & (m.addon == c.sit.addon)
                  & (m.subscription != ""),
                  c.plan << (m.kind == "fee_plan") & (m.fee_plan == c.sit.fee_plan)
                  & (m.subscription == c.addon.subscription) & (m.currency == c.sit.currency))
        def addon_with_subscription_is_eligible(c: Closure) -> None:
            """SPEC §3: offered, account open, fee plan of its subscription, in its currency."""
            conclude(c, ELIGIBLE, "eligible", f"main product {c.sit.product} offers "
                     f"{c.sit.addon}, the account is open and fee plan {c.sit.fee_plan} of "
                     f"{c.addon.subscription} is in {c.sit.currency}")

        @when_all(c.sit << (m.kind == "activation") & (m.closed_at_activation == False)
                  & (m.fee_plan == ""),
                  c.offer << (m.kind == "offer") & (m.product == c.sit.product)
                  & (m.addon == c.sit.addon),
                  c.addon << (m.kind == "addon") & (m.addon == c.sit.addon)
                  & (m.subscription == ""))
        def addon_without_subscription_is_eligible(c: Closure) -> None:
            """SPEC §3: offered, account open, no fee plan for an add-on without subscription."""
            conclude(c, ELIGIBLE, "eligible", f"main product {c.sit.product} offers "
                     f"{c.sit.addon} and the account is open")

        @when_all(distinct(False), _competition(), _first(),
                  c.later << (m.kind == "addon") & (m.addon == c.sit.later_addon)
                  & (m.subscription == c.first.subscription) & (m.subscription != ""),
                  c.sub << (m.kind == "subscription") & (m.subscription == c.first.subscription)
                  & (m.once_per_account == True))
        def later_addon_finds_subscription_already_active(c: Closure) -> None:
            """SPEC §3: a once_per_account subscription is kept by the add-on assigned first."""
            conclude(c, ONCE_PER_ACCOUNT, "ineligible", f"subscription {c.sub.subscription} "
                     "applies once per account and is already active on it through {winner} "
                     f"({c.sit.first_addon}), assigned earlier")

        @when_all(distinct(False), _competition(), _first(),
                  c.later << (m.kind == "addon") & (m.addon == c.sit.later_addon)
                  & (m.subscription == c.first.subscription) & (m.subscription != ""),
                  c.sub << (m.kind == "subscription") & (m.subscription == c.first.subscription)
                  & (m.once_per_account == False))
        def subscription_allowed_more_than_once(c: Closure) -> None:
            """SPEC §1: a subscription with once_per_account false may apply several times."""
            conclude(c, NO_COMPETITION, "compatible", "")

        @when_all(distinct(False), _competition(), _first(),
                  c.later << (m.kind == "addon") & (m.addon == c.sit.later_addon)
                  & (m.subscription != c.first.subscription))
        def addons_with_different_subscriptions_do_not_compete(c: Closure) -> None:
            """SPEC §3: only the same subscription can already be active on the account."""
            conclude(c, NO_COMPETITION, "compatible", "")

        @when_all(distinct(False), _competition(), c.first << (m.kind == "addon")
                  & (m.addon == c.sit.first_addon) & (m.subscription == ""),
                  c.later << (m.kind == "addon") & (m.addon == c.sit.later_addon)
                  & (m.subscription == ""))
        def addons_without_subscription_do_not_compete(c: Closure) -> None:
            """SPEC §3: add-ons without a subscription bring none to compete for."""
            conclude(c, NO_COMPETITION, "compatible", "")


engine.declare(NAME, _declare)


def catalog_facts(catalog: Catalog) -> list[Fact]:
    """The catalog facts the eligibility rules join: offers, add-ons, fee plans, subscriptions."""
    out: list[Fact] = [
        {"kind": "offer", "id": f"offer:{p.id}:{a}", "product": p.id, "addon": a}
        for p in catalog.main_products
        for a in p.available_addons
    ]
    out += [
        {"kind": "addon", "id": f"addon:{a.id}", "addon": a.id,
         "subscription": a.subscription or ""}
        for a in catalog.addons
    ]
    for sub in catalog.subscriptions:
        out.append(
            {
                "kind": "subscription",
                "id": f"subscription:{sub.id}",
                "subscription": sub.id,
                "once_per_account": sub.once_per_account,
            }
        )
        out += [
            {
                "kind": "fee_plan",
                "id": f"fee_plan:{fp.id}",
                "fee_plan": fp.id,
                "subscription": sub.id,
                "currency": fp.currency,
            }
            for fp in sub.fee_plans
        ]
    return out


def judge_activations(catalog: Catalog, frame: pl.DataFrame) -> pl.DataFrame:
    """The eligibility verdicts of each row of `frame`: its columns, rule, outcome, reason.

    `frame` holds a row key and ACTIVATION_KEYS (strings "" where absent).
    """
    tagged, distinct_rows = distinct_situations(frame, ACTIVATION_KEYS, "activation")
    verdicts = engine.judge(
        NAME,
        catalog_facts(catalog),
        engine.facts(distinct_rows, "activation"),
        expect="pass_or_failures",
        pass_outcome="eligible",
    )
    return tagged.join(verdicts, on="situation").drop("situation")


def judge_competitions(catalog: Catalog, pairs: pl.DataFrame) -> pl.DataFrame:
    """The verdict of each overlapping pair: its columns, rule, outcome, reason.

    `pairs` holds first_addon and later_addon (first = assigned earlier) and the pair's keys.
    """
    keys = ["first_addon", "later_addon"]
    tagged, distinct_rows = distinct_situations(pairs, keys, "competition")
    verdicts = engine.judge(
        NAME, catalog_facts(catalog), engine.facts(distinct_rows, "competition"), expect="one"
    )
    return tagged.join(verdicts, on="situation").drop("situation")
