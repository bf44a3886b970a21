"""Property test: `decide` against a plain, independent reference of SPEC §3 written with loops.

The reference reads the pydantic catalog directly and walks the assignments one by one in
assignment order; it shares no code with `rules/`. Shuffling the input rows changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rules_cases import accounts_frame, assignments_frame, locks_frame, sample_catalog

from pipeline.catalog import Catalog
from rules import conflicts as cf
from rules import decide
from rules import eligibility as el
from rules import lifecycle as lc

CATALOG = sample_catalog()
PERIODS = ["2026-02", "2026-03", "2026-04"]
BASE = date(2026, 1, 20)
FEE_PLANS = sorted(fp.id for s in CATALOG.subscriptions for fp in s.fee_plans)
# Every add-on, with those that can conflict (same priority, shared entries) drawn more often.
ADDONS = [a.id for a in CATALOG.addons] + ["ADD_VOICE100", "ADD_VOICE200", "ADD_DATA5",
                                           "ADD_DATA20", "ADD_INTL"] * 2
OWN_PLANS = {a.id: [fp.id for s in CATALOG.subscriptions if s.id == a.subscription
                    for fp in s.fee_plans] for a in CATALOG.addons}


@dataclass
class Ref:
    """The reference's view of one assignment."""

    row: dict
    start: date
    locked_from: date | None = None
    failures: list[str] = field(default_factory=list)
    closure_end: date | None = None
    change_end: date | None = None
    lost_once: bool = False
    rejected: bool = False
    replaced_end: date | None = None

    @property
    def end_cut(self) -> date | None:
        """End before conflicts: the earliest of until, closure and product change."""
        ends = [e for e in (self.row["end_date"], self.closure_end, self.change_end) if e]
        return min(ends) if ends else None


def overlap(a: Ref, b: Ref) -> bool:
    """[start, end_cut) of two assignments share a day."""
    far = date(9999, 12, 31)
    return a.start < (b.end_cut or far) and b.start < (a.end_cut or far) and \
        a.start < (a.end_cut or far) and b.start < (b.end_cut or far)


def reference(cat: Catalog, accounts: list[dict], assignments: list[dict], policy: str,
              locks: dict[str, date]) -> tuple[set, dict]:
    """(decision rows, life cycles) the spec asks for, computed one assignment at a time."""
    offers = {p.id: set(p.available_addons) for p in cat.main_products}
    addons = {a.id: a for a in cat.addons}
    subs = {s.id: s for s in cat.subscriptions}
    plans = {fp.id: (s.id, fp.currency) for s in cat.subscriptions for fp in s.fee_plans}
    keys = {p.id: {(e.service, e.destination_group, e.threshold_type) for e in p.entries}
            for p in cat.discount_plans}
    rows_by_account: dict[str, list[dict]] = {}
    for r in sorted(accounts, key=lambda r: r["effective_from"] or r["opened_on"]):
        rows_by_account.setdefault(r["account_id"], []).append(r)

    def close_date(acc: str) -> date | None:
        dates = [r["closed_on"] or (r["effective_from"] if r["status"] == "closed" else None)
                 for r in rows_by_account[acc]]
        dates = [x for x in dates if x]
        return min(dates) if dates else None

    refs = []
    for a in sorted(assignments, key=lambda a: (a["assigned_at"], a["assignment_id"])):
        ref = Ref(row=a, start=a["start_date"])
        lock = locks.get(a["assignment_id"])
        if lock and lock != a["start_date"]:
            ref.start, ref.locked_from = lock, a["start_date"]
        rows = rows_by_account[a["account_id"]]
        at = [r for r in rows if (r["effective_from"] or r["opened_on"]) <= ref.start]
        product = at[-1]["main_product_id"] if at else None
        currency = at[-1]["currency"] if at else rows[0]["currency"]
        addon, plan = addons[a["addon_id"]], a["fee_plan_id"]
        if product is None or a["addon_id"] not in offers[product]:
            ref.failures.append(el.AVAILABLE)
        closes = close_date(a["account_id"])
        if closes and closes <= ref.start:
            ref.failures.append(el.NOT_CLOSED)
        if addon.subscription:
            if not plan or plans.get(plan, ("", ""))[0] != addon.subscription:
                ref.failures.append(el.FEE_PLAN)
        elif plan:
            ref.failures.append(el.FEE_PLAN)
        if plan and plan in plans and plans[plan][1] != currency:
            ref.failures.append(el.CURRENCY)
        if not ref.failures:
            until = a["end_date"]
            if closes and closes > ref.start and (until is None or closes < until):
                ref.closure_end = closes
            cut = min([x for x in (until, ref.closure_end) if x], default=None)
            for r in rows:
                eff = r["effective_from"] or r["opened_on"]
                if ref.start < eff and (cut is None or eff < cut) and \
                        a["addon_id"] not in offers[r["main_product_id"]]:
                    ref.change_end = eff
                    break
        refs.append(ref)

    kept: list[Ref] = []
    for ref in refs:  # once per account, in assignment order
        if ref.failures:
            continue
        sub = addons[ref.row["addon_id"]].subscription
        winner = next((k for k in kept if k.row["account_id"] == ref.row["account_id"] and sub
                       and addons[k.row["addon_id"]].subscription == sub
                       and subs[sub].once_per_account and overlap(k, ref)), None)
        if winner:
            ref.lost_once = True
        else:
            kept.append(ref)

    def conflict(x: Ref, y: Ref) -> bool:
        ax, ay = addons[x.row["addon_id"]], addons[y.row["addon_id"]]
        return (x.row["account_id"] == y.row["account_id"] and ax.priority == ay.priority
                and ax.discount_plan is not None and ay.discount_plan is not None
                and bool(keys[ax.discount_plan] & keys[ay.discount_plan]) and overlap(x, y))

    standing: list[Ref] = []
    for ref in kept:  # conflicts, in assignment order, among the eligible
        if policy == "reject":
            if any(conflict(s, ref) for s in standing):
                ref.rejected = True
                continue
        else:
            for s in standing:
                if conflict(s, ref) and (s.replaced_end is None or ref.start < s.replaced_end):
                    s.replaced_end = ref.start
        standing.append(ref)

    decisions, lives = set(), {}
    for ref in refs:
        aid = ref.row["assignment_id"]
        part = not ref.failures and not ref.lost_once and not ref.rejected
        ends = [(ref.row["end_date"], "until"), (ref.closure_end, "account_closed"),
                (ref.change_end, "main_product_change"), (ref.replaced_end, "replaced")]
        ends = [(e, why) for e, why in ends if e]
        first = min(ends, key=lambda e: e[0]) if ends else (None, None)
        first = next(((e, why) for e, why in ends if e == first[0]), (None, None))
        if part:
            eff_end = max(first[0], ref.start) if first[0] else None
            lives[aid] = (ref.start, eff_end, first[0] is None or first[0] > ref.start, first[1])
        else:
            eff_end = ref.start
            lives[aid] = (ref.start, ref.start, False, None)
        day = rows_by_account[ref.row["account_id"]][0]["billing_day"]
        for period in PERIODS:
            year, month = int(period[:4]), int(period[5:])
            p_start = date(year, month, day)
            p_end = date(year + month // 12, month % 12 + 1, day)
            state, eff = None, (None, None)
            if part:
                if ref.start >= p_end:
                    state = (lc.PENDING, "pending")
                elif eff_end is not None and (eff_end <= p_start or eff_end <= ref.start):
                    state = (lc.EXPIRED, "expired")
                else:
                    state = (lc.ACTIVE, "active")
                    eff = (max(ref.start, p_start), min(eff_end or p_end, p_end))
            out = []
            if ref.locked_from:
                out.append((lc.LOCKED, "locked"))
            out += [(f, "ineligible") for f in ref.failures]
            if ref.lost_once:
                out.append((el.ONCE_PER_ACCOUNT, "ineligible"))
            elif not ref.failures:
                out.append((el.ELIGIBLE, "eligible"))
            if ref.rejected:
                out.append((cf.REJECTED, "rejected"))
            if part:
                extra = {"account_closed": (lc.ACCOUNT_CLOSED, state[1]),
                         "main_product_change": (lc.PRODUCT_CHANGE, state[1]),
                         "replaced": (cf.REPLACED, "replaced")}.get(first[1])
                out += [extra, state] if extra else [state]
            decisions |= {(aid, period, rule, outcome, *eff) for rule, outcome in out}
    return decisions, lives


def account_rows() -> st.SearchStrategy[list[dict]]:
    """1-2 accounts, each with 1-3 main-product versions, maybe closed."""
    def one(acc: str) -> st.SearchStrategy[list[dict]]:
        version = st.tuples(st.sampled_from([p.id for p in CATALOG.main_products]),
                            st.integers(0, 90))
        return st.tuples(
            st.sampled_from(["USD", "USD", "USD", "EUR"]), st.integers(1, 28),
            st.integers(-30, 20),
            st.lists(version, min_size=0, max_size=2), st.sampled_from(["MP_BASIC", "MP_PLUS",
                                                                         "MP_BIZ"]),
            st.one_of(st.none(), st.none(), st.none(), st.integers(0, 120)),
            st.integers(0, 4).map(lambda v: v == 0),
        ).map(lambda t: [
            {"account_id": acc, "currency": t[0], "main_product_id": p, "billing_day": t[1],
             "status": "closed" if t[5] is not None or t[6] and i else "active",
             "opened_on": BASE + timedelta(days=t[2]),
             "closed_on": BASE + timedelta(days=t[5]) if t[5] is not None and i == 0 else None,
             "effective_from": BASE + timedelta(days=t[2] + off) if i else None}
            for i, (p, off) in enumerate([(t[4], 0)] + sorted(set(t[3]), key=lambda v: v[1]))
            if i == 0 or off > 0
        ])
    return st.integers(1, 2).flatmap(
        lambda n: st.tuples(*[one(f"A{i}") for i in range(n)]).map(
            lambda groups: _dedupe([r for g in groups for r in g])))


def _dedupe(rows: list[dict]) -> list[dict]:
    """Keep one account row per (account_id, effective_from)."""
    seen, out = set(), []
    for r in rows:
        key = (r["account_id"], r["effective_from"] or r["opened_on"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def assignment_rows(n_accounts: int, palette: list[str]) -> st.SearchStrategy[list[dict]]:
    """1-8 assignments, mostly of a few add-ons, with overlapping dates and tied timestamps."""
    one = st.tuples(
        st.integers(0, n_accounts - 1),
        st.one_of(st.sampled_from(palette), st.sampled_from(palette), st.sampled_from(ADDONS)),
        st.integers(0, 9), st.integers(0, 99), st.integers(0, 70),
        st.integers(0, 3).flatmap(lambda k: st.none() if k == 0 else st.integers(1, 45)),
        st.integers(0, 3),
    )

    def plan(addon: str, mode: int, pick: int) -> str | None:
        """Mostly a plan of the add-on's own subscription; sometimes none or any plan."""
        own = OWN_PLANS[addon]
        if mode < 7:
            return own[pick % len(own)] if own else None
        return None if mode < 8 else FEE_PLANS[pick % len(FEE_PLANS)]

    return st.lists(one, min_size=1, max_size=8).map(lambda items: [
        {"assignment_id": f"S{i}", "account_id": f"A{acc}", "addon_id": addon,
         "fee_plan_id": plan(addon, mode, pick), "start_date": BASE + timedelta(days=start),
         "end_date": BASE + timedelta(days=start + length) if length else None,
         "assigned_at": datetime(2026, 1, 1) + timedelta(hours=at), "quantity": 1}
        for i, (acc, addon, mode, pick, start, length, at) in enumerate(items)
    ])


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[dict], list[dict], str, dict[str, date]]:
    """Random small accounts, assignments, policy and locks."""
    accounts = draw(account_rows())
    n_accounts = len({r["account_id"] for r in accounts})
    palette = draw(st.lists(st.sampled_from(ADDONS), min_size=1, max_size=2))
    assignments = draw(assignment_rows(n_accounts, palette))
    policy = draw(st.sampled_from(["replace", "reject"]))
    locked = draw(st.lists(st.tuples(st.integers(0, len(assignments) - 1), st.integers(0, 80)),
                           max_size=3, unique_by=lambda t: t[0]))
    locks = {f"S{i}": BASE + timedelta(days=day) for i, day in locked}
    return accounts, assignments, policy, locks


def run(accounts: list[dict], assignments: list[dict], policy: str, locks: dict[str, date]):
    """decide over the frames built from plain rows."""
    lock_frame = locks_frame([(k, v.isoformat()) for k, v in locks.items()]) if locks else None
    return decide(CATALOG, accounts_frame(accounts), assignments_frame(assignments), PERIODS,
                  policy, locks=lock_frame)


@st.composite
def chain_cases(draw: st.DrawFn) -> tuple[list[dict], list[dict], str, dict[str, date]]:
    """One open account and 3-7 short assignments of add-ons that compete or conflict."""
    family = draw(st.sampled_from([["ADD_TV"], ["ADD_INTL"], ["ADD_VOICE100", "ADD_VOICE200"],
                                   ["ADD_DATA5", "ADD_DATA20"]]))
    plans = {"ADD_TV": "TV1", "ADD_INTL": None, "ADD_VOICE100": "V1", "ADD_VOICE200": "V200_1",
             "ADD_DATA5": "D5_1", "ADD_DATA20": "D20_1"}
    items = draw(st.lists(st.tuples(st.sampled_from(family), st.integers(0, 60),
                                    st.integers(1, 30), st.integers(0, 4)),
                          min_size=3, max_size=7))
    accounts = [{"account_id": "A0", "currency": "USD", "main_product_id": "MP_PLUS",
                 "billing_day": 1, "status": "active", "opened_on": BASE - timedelta(days=60),
                 "closed_on": None, "effective_from": None}]
    assignments = [
        {"assignment_id": f"S{i}", "account_id": "A0", "addon_id": addon,
         "fee_plan_id": plans[addon], "start_date": BASE + timedelta(days=start),
         "end_date": BASE + timedelta(days=start + length),
         "assigned_at": datetime(2026, 1, 1) + timedelta(hours=at), "quantity": 1}
        for i, (addon, start, length, at) in enumerate(items)
    ]
    return accounts, assignments, draw(st.sampled_from(["replace", "reject"])), {}


def check_against_reference(case: tuple, rnd) -> None:
    """decide equals the reference, and shuffling the input rows changes nothing."""
    accounts, assignments, policy, locks = case
    result = run(accounts, assignments, policy, locks)
    expected_rows, expected_lives = reference(CATALOG, accounts, assignments, policy, locks)

    got_rows = {
        (r["assignment_id"], r["period"], r["rule"], r["outcome"], r["effective_start"],
         r["effective_end"])
        for r in result.decisions.to_dicts()
    }
    assert got_rows == expected_rows
    assert result.decisions.height == len(expected_rows)  # one row per assignment/period/rule
    got_lives = {r["assignment_id"]: (r["eff_start"], r["eff_end"], r["billable"],
                                      r["end_reason"]) for r in result.lifecycles.to_dicts()}
    assert got_lives == expected_lives

    shuffled_accounts, shuffled_assignments = accounts[:], assignments[:]
    rnd.shuffle(shuffled_accounts)
    rnd.shuffle(shuffled_assignments)
    again = run(shuffled_accounts, shuffled_assignments, policy, locks)
    assert again.decisions.equals(result.decisions)
    assert again.lifecycles.equals(result.lifecycles)


# 50 derandomized examples: the same 50 every run (150 cost 20 CPU-s more in every suite run,
# and the suite must fit CI's 15 minutes with the soak's month; benchmarks/RESULTS.md).
PROPERTY = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cases(), st.randoms(use_true_random=False))
def test_decide_matches_the_reference_and_ignores_row_order(case, rnd):
    check_against_reference(case, rnd)


@PROPERTY
@given(chain_cases(), st.randoms(use_true_random=False))
def test_chains_of_competing_add_ons_match_the_reference(case, rnd):
    check_against_reference(case, rnd)


def test_reference_agrees_on_a_replace_example():
    """The reference itself, on the spec's replace example: the earlier one ends on the later's
    start."""
    accounts = [{"account_id": "A0", "currency": "USD", "main_product_id": "MP_PLUS",
                 "billing_day": 1, "status": "active", "opened_on": date(2026, 1, 1),
                 "closed_on": None, "effective_from": None}]
    assignments = [
        {"assignment_id": "S0", "account_id": "A0", "addon_id": "ADD_VOICE100",
         "fee_plan_id": "V1", "start_date": date(2026, 2, 1), "end_date": None,
         "assigned_at": datetime(2026, 1, 1), "quantity": 1},
        {"assignment_id": "S1", "account_id": "A0", "addon_id": "ADD_VOICE200",
         "fee_plan_id": "V200_1", "start_date": date(2026, 3, 5), "end_date": None,
         "assigned_at": datetime(2026, 1, 2), "quantity": 1},
    ]
    _, lives = reference(CATALOG, accounts, assignments, "replace", {})
    assert lives["S0"] == (date(2026, 2, 1), date(2026, 3, 5), True, "replaced")
    result = run(accounts, assignments, "replace", {})
    assert result.lifecycles.filter(pl.col("assignment_id") == "S0")["eff_end"][0] == \
        date(2026, 3, 5)
