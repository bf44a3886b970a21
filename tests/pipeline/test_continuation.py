"""A draft period continued from what it counted so far (docs/RUNS.md, "Incremental nightly")
gives exactly what rating all its events at once gives: the same lines, rounded once from the
same exact sums, the same counters and rollover parcels (issue 9, item 3).

Built on the usage tests' catalog (free minutes, tiers over a split event, an amount threshold,
a daily reset, a never-reset counter carried in, add-ons replacing one another mid-period) and
on the rollover tests' one (100 free minutes a period, unused minutes carried one period)."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.charges import ChargesResult, account_context, compute_charges
from pipeline.contracts import UsageSoFar
from pipeline.usage import UsageResult, usage_charges
from pipeline.usage.rollover import empty_parcels
from tests.pipeline.test_rollover import ACCOUNTS as ROLLOVER_ACCOUNTS
from tests.pipeline.test_rollover import ALWAYS
from tests.pipeline.test_rollover import catalog as rollover_catalog
from tests.pipeline.test_rollover import lifecycles as rollover_lifecycles
from tests.pipeline.test_usage import (
    CATALOG,
    EMPTY_COUNTERS,
    RANDOM_ACCOUNT,
    RANDOM_LIFECYCLES,
    M,
    at,
    event_rows,
    events,
    line_amounts,
    random_usage,
    roam_counter,
)

ACCOUNT, LIFECYCLES = RANDOM_ACCOUNT, RANDOM_LIFECYCLES


def rate(usage: pl.DataFrame, cutoff: date | None, before: pl.DataFrame,
         so_far: UsageSoFar | None = None) -> UsageResult:
    context = account_context(CATALOG, ACCOUNT, "2026-06", cutoff)
    return usage_charges(CATALOG, ACCOUNT, LIFECYCLES, usage, before, context, "2026-06",
                         detail=False, so_far=so_far)


def so_far_of(result: UsageResult) -> UsageSoFar:
    return UsageSoFar(sums=result.sums, counters=result.counters_after)


def rows(frame: pl.DataFrame) -> list[tuple]:
    return sorted(frame.rows(), key=lambda r: tuple("" if v is None else str(v) for v in r))


def test_a_call_after_the_free_minutes_of_last_night_is_charged_from_where_they_stopped() -> None:
    # Night 1 (as of June 5): 60 of V100's 100 free minutes. Night 2 (as of June 6) brings a
    # 50-minute call for $5.00: 40 of its minutes are free, 10 charged. Usage 6.00 + 5.00 =
    # 11.00; discount -(6.00 + 4.00) = -10.00 (the 60 + 40 free minutes at $0.10).
    first = events(("e1", "voice", "US", at(4), "60", "6.00"))
    night1 = rate(first, date(2026, 6, 5), EMPTY_COUNTERS)
    assert line_amounts(night1) == [("discount", "S1", "V100", "voice", "US", -600),
                                    ("usage", "S1", "V100", "voice", "US", 600)]
    later = events(("e2", "voice", "US", at(6), "50", "5.00"))
    night2 = rate(later, date(2026, 6, 6), EMPTY_COUNTERS, so_far_of(night1))
    assert line_amounts(night2) == [("discount", "S1", "V100", "voice", "US", -1000),
                                    ("usage", "S1", "V100", "voice", "US", 1100)]
    window = night2.counters_after.filter(pl.col("destination_group") == "US")
    assert window["value_units"].to_list() == [110 * M]


def test_sums_are_rounded_once_not_night_by_night() -> None:
    # Two nights of one event each at $0.005 of usage (no entry: data): each night alone would
    # round to 0.01, twice 0.01 = 0.02; the exact sum 0.010 rounds to 0.01.
    night1 = rate(events(("e1", "data", "ANY", at(2), "1", "0.005")), date(2026, 6, 2),
                  EMPTY_COUNTERS)
    assert line_amounts(night1) == [("usage", None, None, "data", "ANY", 1)]
    night2 = rate(events(("e2", "data", "ANY", at(3), "1", "0.005")), date(2026, 6, 3),
                  EMPTY_COUNTERS, so_far_of(night1))
    assert line_amounts(night2) == [("usage", None, None, "data", "ANY", 1)]


@settings(max_examples=80, deadline=None)
@given(rows_=event_rows, split=st.integers(0, 40), roam_before=st.integers(0, 600 * M),
       first_cutoff=st.one_of(st.none(), st.integers(1, 30)),
       final=st.booleans())
def test_continuing_after_any_event_equals_rating_every_event_at_once(
    rows_: list[tuple], split: int, roam_before: int, first_cutoff: int | None, final: bool,
) -> None:
    usage = random_usage(rows_).sort("started_at", "event_id")
    before = roam_counter(roam_before)
    # The first night counted the first `split` events (in counter order) that its cutoff let
    # in, a prefix of that order; the second sees the rest too, as of the period's last day or
    # at its end (finalized).
    cutoff1 = None if first_cutoff is None else date(2026, 6, first_cutoff)
    in_time = usage if cutoff1 is None else usage.filter(
        pl.col("started_at").dt.date() <= cutoff1)
    counted = min(split, in_time.height)
    night1 = rate(usage.head(counted), cutoff1, before)
    later = usage.slice(counted)
    cutoff2 = None if final else date(2026, 6, 30)
    whole = rate(usage, cutoff2, before)
    continued = rate(later, cutoff2, before, so_far_of(night1))
    assert rows(continued.lines) == rows(whole.lines)
    assert rows(continued.counters_after) == rows(whole.counters_after)
    assert rows(continued.sums) == rows(whole.sums)


ROLLING = rollover_catalog(1)
MINUTES = st.lists(st.tuples(st.integers(1, 28), st.integers(0, 60)), min_size=1, max_size=12)


def calls(month: int, rows: list[tuple[int, int]]) -> pl.DataFrame:
    """Voice/US calls of account A in 2026-`month`: (day, minutes) at $0.10 a minute."""
    return pl.DataFrame({
        "event_id": [f"m{month}e{i:02d}" for i in range(len(rows))],
        "account_id": ["A"] * len(rows), "service": ["voice"] * len(rows),
        "destination_group": ["US"] * len(rows),
        "started_at": [datetime(2026, month, day, 12) for day, _ in rows],
        "quantity_units": [m * M for _, m in rows],
        "amount_units": [m * 100_000 for _, m in rows],
    }, schema_overrides={"started_at": pl.Datetime("us")}).sort("started_at", "event_id")


@settings(max_examples=40, deadline=None)
@given(january=MINUTES, february=MINUTES, split=st.integers(0, 12))
def test_a_continued_period_leaves_the_same_rollover_parcels(
    january: list[tuple[int, int]], february: list[tuple[int, int]], split: int
) -> None:
    # January leaves parcels; February is counted in two nights, split after any call.
    def charge(usage: pl.DataFrame, period: str, parcels: pl.DataFrame,
               so_far: UsageSoFar | None = None) -> ChargesResult:
        return compute_charges(ROLLING, ROLLOVER_ACCOUNTS, ALWAYS, usage, pl.DataFrame(),
                               period, parcels_before=parcels, detail=False, so_far=so_far)

    left = charge(calls(1, january), "2026-01", empty_parcels()).parcels
    usage = calls(2, february)
    whole = charge(usage, "2026-02", left)
    counted = min(split, usage.height)
    night1 = charge(usage.head(counted), "2026-02", left)
    continued = charge(usage.slice(counted), "2026-02", left,
                       UsageSoFar(sums=night1.usage_sums, counters=night1.counters_after))
    assert rows(continued.charges) == rows(whole.charges)
    assert rows(continued.parcels) == rows(whole.parcels)
    assert rows(continued.counters_after) == rows(whole.counters_after)


def test_a_draft_decides_rollover_as_its_whole_period_will() -> None:
    # Q100 (rollover 1) from 2025-12-01 until 2026-01-20; from then MP's plan (same counter
    # key, no rollover, 0 % below 1000 minutes) wins to the end of January. December has no
    # usage: its 100 are carried into January. January's deciding entry is MP's, the last in
    # force, so the carried 100 are not used (and expire): the 150-minute call of the 5th
    # ($15.00) is 100 free under Q100 (-10.00), the 60-minute call of the 25th ($6.00) gets
    # 0 %. The draft as of the 10th sees only the first call but decides as the period will:
    # -10.00, not the -15.00 of a band of 200. Continued as of the 28th with the second call
    # only, it equals January recomputed whole: -10.00, the same sums and counters.
    cat = rollover_catalog(1, main_plan=True)
    life = rollover_lifecycles(("S1", "Q100", date(2025, 12, 1), date(2026, 1, 20)))

    def call(event: str, day: int, minutes: int) -> pl.DataFrame:
        return pl.DataFrame({
            "event_id": [event], "account_id": ["A"], "service": ["voice"],
            "destination_group": ["US"], "started_at": [datetime(2026, 1, day, 12)],
            "quantity_units": [minutes * M], "amount_units": [minutes * 100_000],
        }, schema_overrides={"started_at": pl.Datetime("us")})

    def charge(usage: pl.DataFrame, period: str, cutoff: date | None, parcels: pl.DataFrame,
               so_far: UsageSoFar | None = None) -> ChargesResult:
        return compute_charges(cat, ROLLOVER_ACCOUNTS, life, usage, pl.DataFrame(), period,
                               cutoff, parcels_before=parcels, detail=False, so_far=so_far)

    def discount(result: ChargesResult) -> int:
        return sum(result.charges.filter(pl.col("line_type") == "discount")["amount_minor"])

    first, second = call("e1", 5, 150), call("e2", 25, 60)
    december = charge(first.clear(), "2025-12", None, empty_parcels()).parcels
    assert december["remaining_units"].to_list() == [100 * M]
    night1 = charge(first, "2026-01", date(2026, 1, 10), december)
    assert discount(night1) == -1000
    whole = charge(pl.concat([first, second]), "2026-01", date(2026, 1, 28), december)
    continued = charge(second, "2026-01", date(2026, 1, 28), december,
                       UsageSoFar(sums=night1.usage_sums, counters=night1.counters_after))
    assert discount(whole) == discount(continued) == -1000
    assert rows(continued.charges) == rows(whole.charges)
    assert rows(continued.usage_sums) == rows(whole.usage_sums)
    assert rows(continued.counters_after) == rows(whole.counters_after)
    assert whole.parcels.height == continued.parcels.height == 0


@settings(max_examples=40, deadline=None)
@given(january=MINUTES, february=MINUTES, split=st.integers(0, 12),
       ends=st.one_of(st.none(), st.integers(2, 28)), first_cutoff=st.integers(1, 27),
       final=st.booleans())
def test_a_continued_draft_carries_what_a_whole_recompute_carries(
    january: list[tuple[int, int]], february: list[tuple[int, int]], split: int,
    ends: int | None, first_cutoff: int, final: bool,
) -> None:
    # Q100 (rollover 1) from January, ending on February `ends` (or not), after which MP's plan
    # (same counter key, no rollover) wins. February is counted in two nights: the first as of
    # `first_cutoff` counts a prefix of the calls it lets in, the second the rest, as of the
    # 28th or finalized. Whatever the first night saw of the add-on's end, the continued
    # period equals February recomputed whole: lines, sums, counters and parcels.
    cat = rollover_catalog(1, main_plan=True)
    life = rollover_lifecycles(
        ("S1", "Q100", date(2026, 1, 1), None if ends is None else date(2026, 2, ends)))

    def charge(usage: pl.DataFrame, period: str, cutoff: date | None, parcels: pl.DataFrame,
               so_far: UsageSoFar | None = None) -> ChargesResult:
        return compute_charges(cat, ROLLOVER_ACCOUNTS, life, usage, pl.DataFrame(), period,
                               cutoff, parcels_before=parcels, detail=False, so_far=so_far)

    left = charge(calls(1, january), "2026-01", None, empty_parcels()).parcels
    usage = calls(2, february)
    cutoff1 = date(2026, 2, first_cutoff)
    in_time = usage.filter(pl.col("started_at").dt.date() <= cutoff1)
    counted = min(split, in_time.height)
    night1 = charge(usage.head(counted), "2026-02", cutoff1, left)
    cutoff2 = None if final else date(2026, 2, 28)
    whole = charge(usage, "2026-02", cutoff2, left)
    continued = charge(usage.slice(counted), "2026-02", cutoff2, left,
                       UsageSoFar(sums=night1.usage_sums, counters=night1.counters_after))
    assert rows(continued.charges) == rows(whole.charges)
    assert rows(continued.usage_sums) == rows(whole.usage_sums)
    assert rows(continued.counters_after) == rows(whole.counters_after)
    assert rows(continued.parcels) == rows(whole.parcels)
