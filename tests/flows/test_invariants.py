"""Invariants of whole runs (SPEC §4-5), on the inputs of tests/flows/test_scenarios.py.

- Shuffling the rows of every input file gives identical results tables.
- `nightly_flow(shards=1)` and `shards=3` give identical tables.
- A single catch-up run and the same nights run one by one give identical tables.
- For every invoice, total = the sum of its charges; every discount is within [0, usage].
- Reloading the same drop and re-running the same night changes no results table (run ids
  included: unchanged groups keep their run id).
- Hypothesis, against an independent reference (exact fractions) of SPEC §4's counting: the
  discount of random small usage sets is what the spec says, never negative nor above the usage.

Run ids differ between two databases (they carry the start time), so the cross-database
comparisons leave `run_id` out; within one database they are compared too.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.load import load_flow
from flows.nightly import nightly_flow
from pipeline.catalog import catalog_frames, parse_catalog
from pipeline.charges import compute_charges


def _scenarios() -> object:
    """The scenario inputs (test_scenarios.py is not importable by name under importlib mode)."""
    path = Path(__file__).with_name("test_scenarios.py")
    spec = importlib.util.spec_from_file_location("billrun_scenario_inputs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


S = _scenarios()
AS_OF = date(2026, 8, 1)
NIGHTS = [date(2026, 3, 20), date(2026, 4, 1), date(2026, 4, 20), date(2026, 6, 1), AS_OF]
# The in-file duplicate event (a later row with the first one's event_id) is left out here: which
# of the two loads depends on the row order, by design ("the first occurrence loads").
DUPLICATE_ROW = "U14_OK,S14,voice,US,2026-03-06 10:00:00,20,2.00"
USAGE = "\n".join(line for line in S.USAGE.splitlines() if line != DUPLICATE_ROW) + "\n"
FILES = {"catalog": S.CATALOG, "accounts": S.ACCOUNTS, "assignments": S.ASSIGNMENTS,
         "usage": USAGE}

RESULT_TABLES = [
    "charges", "invoices", "decisions", "discount_counters", "counter_periods", "adjustments",
    "activation_locks", "finalized_periods",
]


def dump(
    db: Path, keep_run_ids: bool = False, leave_out: tuple[str, ...] = ()
) -> dict[str, list[tuple]]:
    """Every results table, sorted; without run ids unless asked, nor the `leave_out` columns.
    `rejected_rows` by its SPEC columns but `line` (where the row was, which shuffling moves)."""
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for table in RESULT_TABLES:
            columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            if not keep_run_ids:
                columns = [c for c in columns if c != "run_id"]
            columns = [c for c in columns if c not in leave_out]
            out[table] = con.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY ALL"
            ).fetchall()
        out["rejected_rows"] = con.execute(
            "SELECT source, reason, raw FROM rejected_rows ORDER BY ALL"
        ).fetchall()
    return out


def shuffled(text: str, seed: int) -> str:
    header, *rows = text.lstrip("\n").splitlines()
    random.Random(seed).shuffle(rows)
    return "\n".join([header, *rows]) + "\n"


def bill(tmp: Path, name: str, files: dict[str, str], nights: list[date], shards: int) -> Path:
    db = tmp / f"{name}.duckdb"
    load_flow(str(S.write_drop(tmp / name, **files)), str(db))
    for night in nights:
        nightly_flow(as_of=night, db=str(db), shards=shards)
    return db


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenario inputs billed by one catch-up run as of 2026-08-01, in one shard."""
    return bill(tmp_path_factory.mktemp("base"), "base", FILES, [AS_OF], shards=1)


def test_base_bills_something(base: Path) -> None:
    tables = dump(base)
    assert len(tables["charges"]) > 100 and len(tables["invoices"]) > 50


def test_shuffled_input_rows_give_identical_tables(base: Path, tmp_path: Path) -> None:
    files = {"catalog": S.CATALOG, **{
        name: shuffled(text, seed) for seed, (name, text) in enumerate(FILES.items()) if seed
    }}
    assert files.keys() == FILES.keys()
    other = bill(tmp_path, "shuffled", files, [AS_OF], shards=1)
    assert dump(other) == dump(base)


def test_three_shards_give_the_tables_of_one(base: Path, tmp_path: Path) -> None:
    other = bill(tmp_path, "shards3", FILES, [AS_OF], shards=3)
    assert dump(other) == dump(base)


def test_night_by_night_gives_the_tables_of_one_catch_up_run(base: Path, tmp_path: Path) -> None:
    """Counters, drafts turned final, locks: running every night or only the last one must end
    in the same tables. Only `runs` differs, and the invoices' documents (SPEC §9): each is
    issued on the as-of date of the run that finalized it, and numbered run after run, so a
    period that another night finalized has another number; the same numbers are given."""
    other = bill(tmp_path, "nightly", FILES, NIGHTS, shards=2)
    documents = ("invoice_number", "issued_on", "due_on")
    assert dump(other, leave_out=documents) == dump(base, leave_out=documents)
    numbers = "SELECT invoice_number FROM invoices WHERE status = 'final' ORDER BY 1"
    with duckdb.connect(str(other), read_only=True) as a, \
            duckdb.connect(str(base), read_only=True) as b:
        assert a.execute(numbers).fetchall() == b.execute(numbers).fetchall()


def test_invoice_totals_are_the_sums_of_their_lines(base: Path) -> None:
    with duckdb.connect(str(base), read_only=True) as con:
        bad = con.execute(
            """SELECT i.account_id, i.period, i.total, coalesce(sum(c.amount), 0)
               FROM invoices i LEFT JOIN charges c USING (account_id, period)
               GROUP BY ALL HAVING i.total <> coalesce(sum(c.amount), 0)"""
        ).fetchall()
        orphans = con.execute(
            "SELECT DISTINCT account_id, period FROM charges "
            "ANTI JOIN invoices USING (account_id, period)"
        ).fetchall()
        currencies = con.execute(
            "SELECT count(*) FROM charges c JOIN invoices i USING (account_id, period) "
            "WHERE c.currency <> i.currency"
        ).fetchall()
    assert bad == [] and orphans == [] and currencies == [(0,)]


def test_discounts_are_within_zero_and_the_usage(base: Path) -> None:
    with duckdb.connect(str(base), read_only=True) as con:
        rows = con.execute(
            """SELECT d.account_id, d.period, d.service, d.destination_group, d.addon_id,
                      d.amount, u.amount
               FROM charges d LEFT JOIN charges u
                 ON u.line_type = 'usage' AND u.account_id = d.account_id
                AND u.period = d.period AND u.service = d.service
                AND u.destination_group = d.destination_group
                AND u.addon_id IS NOT DISTINCT FROM d.addon_id
                AND u.assignment_id IS NOT DISTINCT FROM d.assignment_id
               WHERE d.line_type = 'discount'"""
        ).fetchall()
    assert rows, "the scenarios have discounts"
    assert [r for r in rows if r[6] is None or not (-r[6] <= r[5] < 0)] == []


def test_reloading_the_drop_and_rerunning_the_night_changes_nothing(base: Path) -> None:
    before = dump(base, keep_run_ids=True)
    load_flow(str(base.parent / "base"), str(base))
    nightly_flow(as_of=AS_OF, db=str(base), shards=1)
    assert dump(base, keep_run_ids=True) == before
    with duckdb.connect(str(base), read_only=True) as con:
        counts = con.execute(
            "SELECT (SELECT count(*) FROM usage), (SELECT count(*) FROM assignment_versions)"
        ).fetchall()
    assert counts == [(len(USAGE.splitlines()) - 1 - 2, len(S.ASSIGNMENTS.splitlines()) - 1 - 1)]


# --- hypothesis: the discount against an exact reference ---------------------------------------

M = 10**6
TIER_CATALOG = """
currencies: {USD: 2}
main_products: [{id: MP, name: Main}]
addons: [{id: ADD_Q, name: Quantity, priority: 1, discount_plan: DPQ},
         {id: ADD_A, name: Amount, priority: 1, discount_plan: DPA}]
discount_plans:
  - id: DPQ
    entries: [{service: voice, destination_group: US, threshold_type: quantity,
               tiers: %s}]
  - id: DPA
    entries: [{service: data, destination_group: ALL, threshold_type: amount,
               tiers: %s}]
"""


def _tiers(steps: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Ascending tiers from 0: the first pct is the first step's, then cumulative starts."""
    tiers, start = [], 0
    pcts = [pct for _, pct in steps] or [100]
    tiers.append((0, pcts[0]))
    for (width, _), pct in zip(steps, pcts[1:]):
        start += width
        tiers.append((start, pct))
    return tiers


tiers_strategy = st.lists(
    st.tuples(st.integers(1, 40), st.sampled_from([0, 5, 12.5, 50, 99.99, 100])),
    min_size=0, max_size=3,
).map(_tiers)


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["voice/US", "data/ALL"]),
        st.integers(0, 30 * 24 * 60 - 1),  # minute of March (31 days: all inside the period)
        st.integers(0, 25 * M),  # quantity in 10^-6
        st.integers(0, 9 * M),  # amount in 10^-6
    ),
    min_size=1, max_size=12,
)


def reference_discount(events: list[tuple], tiers: list[tuple[int, float]], by_amount: bool
                       ) -> Fraction:
    """SPEC §4 literally: count in (started_at, event_id) order; split each event at tier
    boundaries; each part is discounted at its tier, its amount shared out by quantity."""
    bounds = [(Fraction(lo), Fraction(tiers[k + 1][0]) if k + 1 < len(tiers) else None,
               Fraction(str(pct)) / 100) for k, (lo, pct) in enumerate(tiers)]
    counter, total = Fraction(0), Fraction(0)
    for _, _, quantity, amount in sorted(events, key=lambda e: (e[1], e[0])):
        amount_f = Fraction(amount, M)
        x = Fraction(amount if by_amount else quantity, M)
        c0, c1 = counter, counter + x
        if x == 0:
            pct = next(p for lo, hi, p in bounds if lo <= c0 and (hi is None or c0 < hi))
            total += amount_f * pct
        else:
            for lo, hi, pct in bounds:
                overlap = min(c1, hi if hi is not None else c1) - max(c0, lo)
                if overlap > 0:
                    total += amount_f * overlap / x * pct
        counter = c1
    return total


def round_cents(value: Fraction) -> int:
    cents = value * 100
    whole = int(abs(cents) + Fraction(1, 2))  # half away from zero
    return whole if cents >= 0 else -whole


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, tiers_q=tiers_strategy, tiers_a=tiers_strategy)
def test_discount_matches_the_spec_and_stays_within_the_usage(
    events: list[tuple], tiers_q: list, tiers_a: list
) -> None:
    def yaml_tiers(tiers: list) -> str:
        return "[" + ", ".join(f"[{lo}, {pct}]" for lo, pct in tiers) + "]"

    catalog = catalog_frames(parse_catalog(TIER_CATALOG % (yaml_tiers(tiers_q),
                                                           yaml_tiers(tiers_a))))
    accounts = pl.DataFrame({
        "account_id": ["A"], "currency": ["USD"], "main_product_id": ["MP"],
        "billing_day": [1], "effective_from": [date(2026, 1, 1)],
        "status": ["active"], "closed_on": [None],
    }, schema_overrides={"closed_on": pl.Date})
    lifecycles = pl.DataFrame({
        "assignment_id": ["AQ", "AA"], "account_id": ["A", "A"], "addon_id": ["ADD_Q", "ADD_A"],
        "fee_plan_id": [None, None], "quantity": [1, 1],
        "assigned_at": [datetime(2026, 1, 1), datetime(2026, 1, 1)],
        "eff_start": [date(2026, 1, 1), date(2026, 1, 1)], "eff_end": [None, None],
        "billable": [True, True],
    }, schema_overrides={"fee_plan_id": pl.Utf8, "eff_end": pl.Date})
    start = datetime(2026, 3, 1)
    rows = [
        {"event_id": f"E{i:02d}", "account_id": "A", "service": kind.split("/")[0],
         "destination_group": kind.split("/")[1],
         "started_at": start + timedelta(minutes=minute), "quantity_units": quantity,
         "amount_units": amount}
        for i, (kind, minute, quantity, amount) in enumerate(events)
    ]
    usage = pl.DataFrame(rows, schema_overrides={"started_at": pl.Datetime("us")})
    counters = pl.DataFrame(schema={
        "account_id": pl.Utf8, "service": pl.Utf8, "destination_group": pl.Utf8,
        "threshold_type": pl.Utf8, "window_start": pl.Date, "value_units": pl.Int64,
    })
    result = compute_charges(catalog, accounts, lifecycles, usage, counters, "2026-03")
    lines = {(r["line_type"], r["service"]): r["amount_minor"]
             for r in result.charges.iter_rows(named=True)}
    for kind, tiers, by_amount in (("voice/US", tiers_q, False), ("data/ALL", tiers_a, True)):
        service = kind.split("/")[0]
        mine = [(f"E{i:02d}", *e[1:]) for i, e in enumerate(events) if e[0] == kind]
        mine = [(minute, eid, q, a) for eid, minute, q, a in mine]
        if not mine:
            assert ("usage", service) not in lines
            continue
        expected = reference_discount([(eid, minute, q, a) for minute, eid, q, a in mine],
                                      tiers, by_amount)
        usage_total = round_cents(sum((Fraction(a, M) for *_, a in mine), Fraction(0)))
        discount = -lines.get(("discount", service), 0)
        assert lines[("usage", service)] == usage_total
        assert discount == round_cents(expected)
        assert 0 <= discount <= usage_total


# --- hypothesis: periodic fees against an exact reference ---------------------------------------

FIRST_PERIOD, LAST_PERIOD = "2025-12", "2027-02"


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, day.day)


def _period_of(day: date, billing_day: int) -> str:
    start = date(day.year, day.month, billing_day)
    if day < start:
        start = _add_months(start, -1)
    return f"{start.year:04d}-{start.month:02d}"


def _round_half_away(value: Fraction) -> int:
    whole = int(abs(value) + Fraction(1, 2))
    return whole if value >= 0 else -whole


def reference_fee_lines(a: dict) -> list[tuple[str, str, int]]:
    """SPEC §4 "Periodic fees", term by term: (period, line_type, amount in cents)."""
    start, end, d, n = a["start"], a["end"], a["billing_day"], a["months"]
    fee = a["fee"] * a["quantity"]
    b0 = date(start.year, start.month, d)
    if b0 < start:
        b0 = _add_months(b0, 1)
    lines = []
    if a["activation"]:
        lines.append((_period_of(start, d), "activation", a["activation"] * a["quantity"]))
    term_start = _add_months(b0, -n) if start < b0 else b0
    while term_start < date(2027, 3, 1) and (end is None or term_start < end):
        term_end = _add_months(term_start, n)
        first = max(term_start, start)
        last_excl = min(term_end, end) if end is not None else term_end
        full = (term_end - term_start).days
        start_missing = (first - term_start).days if a["prorate_first"] else 0
        end_missing = (term_end - last_excl).days if a["prorate_last"] else 0
        if a["mode"] == "in_advance":
            lines.append((_period_of(first, d), "recurring",
                          _round_half_away(Fraction(fee * (full - start_missing), full))))
            if end is not None and end < term_end and a["prorate_last"]:
                lines.append((_period_of(end, d), "credit",
                              -_round_half_away(Fraction(fee * (term_end - end).days, full))))
        else:
            last_day = last_excl - timedelta(days=1)
            lines.append((_period_of(last_day, d), "recurring", _round_half_away(
                Fraction(fee * (full - start_missing - end_missing), full))))
        term_start = term_end
    in_range = [line for line in lines if FIRST_PERIOD <= line[0] <= LAST_PERIOD]
    return [line for line in in_range if line[2] != 0 or line[1] == "recurring"]


assignment_strategy = st.fixed_dictionaries({
    "start": st.dates(date(2026, 1, 1), date(2026, 12, 31)),
    "length": st.one_of(st.none(), st.integers(0, 200)),
    "billing_day": st.integers(1, 28),
    "months": st.sampled_from([1, 3, 6, 12]),
    "fee": st.integers(0, 99_999),  # cents
    "activation": st.sampled_from([0, 0, 500, 999]),
    "quantity": st.integers(1, 4),
    "mode": st.sampled_from(["in_advance", "in_arrears"]),
    "prorate_first": st.booleans(),
    "prorate_last": st.booleans(),
}).map(lambda a: {**a, "end": None if a["length"] is None
                  else a["start"] + timedelta(days=a["length"])})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(assignments=st.lists(assignment_strategy, min_size=1, max_size=4))
def test_fee_lines_match_the_spec_term_by_term(assignments: list[dict]) -> None:
    def flag(value: bool) -> str:
        return "true" if value else "false"

    subs = "\n".join(
        f"  - {{id: SUB{i}, charge_mode: {a['mode']}, prorate_first: {flag(a['prorate_first'])}, "
        f"prorate_last: {flag(a['prorate_last'])}, "
        f"activation_fee: \"{a['activation'] / 100:.2f}\", "
        f"fee_plans: [{{id: F{i}, term_months: {a['months']}, fee: \"{a['fee'] / 100:.2f}\", "
        f"currency: USD}}]}}"
        for i, a in enumerate(assignments)
    )
    addons = ", ".join(f"{{id: ADD{i}, name: Add-on {i}, priority: 1, subscription: SUB{i}}}"
                       for i in range(len(assignments)))
    catalog = catalog_frames(parse_catalog(
        f"currencies: {{USD: 2}}\nmain_products: [{{id: MP, name: Main}}]\n"
        f"addons: [{addons}]\nsubscriptions:\n{subs}\n"
    ))
    accounts = pl.DataFrame({
        "account_id": [f"A{i}" for i in range(len(assignments))],
        "currency": ["USD"] * len(assignments), "main_product_id": ["MP"] * len(assignments),
        "billing_day": [a["billing_day"] for a in assignments],
        "effective_from": [date(2025, 1, 1)] * len(assignments),
        "status": ["active"] * len(assignments), "closed_on": [None] * len(assignments),
    }, schema_overrides={"closed_on": pl.Date})
    lifecycles = pl.DataFrame({
        "assignment_id": [f"S{i}" for i in range(len(assignments))],
        "account_id": [f"A{i}" for i in range(len(assignments))],
        "addon_id": [f"ADD{i}" for i in range(len(assignments))],
        "fee_plan_id": [f"F{i}" for i in range(len(assignments))],
        "quantity": [a["quantity"] for a in assignments],
        "assigned_at": [datetime(2025, 1, 1)] * len(assignments),
        "eff_start": [a["start"] for a in assignments],
        "eff_end": [a["end"] for a in assignments],
        "billable": [a["end"] is None or a["end"] > a["start"] for a in assignments],
    }, schema_overrides={"eff_end": pl.Date})
    usage = pl.DataFrame(schema={
        "event_id": pl.Utf8, "account_id": pl.Utf8, "service": pl.Utf8,
        "destination_group": pl.Utf8, "started_at": pl.Datetime("us"),
        "quantity_units": pl.Int64, "amount_units": pl.Int64,
    })
    counters = pl.DataFrame(schema={
        "account_id": pl.Utf8, "service": pl.Utf8, "destination_group": pl.Utf8,
        "threshold_type": pl.Utf8, "window_start": pl.Date, "value_units": pl.Int64,
    })
    got: dict[str, list] = {f"A{i}": [] for i in range(len(assignments))}
    period, periods = FIRST_PERIOD, []
    while period <= LAST_PERIOD:
        periods.append(period)
        year, month = int(period[:4]), int(period[5:])
        period = f"{year + month // 12:04d}-{month % 12 + 1:02d}"
    for period in periods:
        result = compute_charges(catalog, accounts, lifecycles, usage, counters, period)
        for r in result.charges.iter_rows(named=True):
            got[r["account_id"]].append((r["period"], r["line_type"], r["amount_minor"]))
    for i, a in enumerate(assignments):
        expected = reference_fee_lines(a) if a["end"] is None or a["end"] > a["start"] else []
        assert sorted(got[f"A{i}"]) == sorted(expected), a
