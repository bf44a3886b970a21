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


@settings(max_examples=40, deadline=None)
@given(january=MINUTES, february=MINUTES, split=st.integers(0, 12))
def test_a_continued_period_leaves_the_same_rollover_parcels(
    january: list[tuple[int, int]], february: list[tuple[int, int]], split: int
) -> None:
    # January leaves parcels; February is counted in two nights, split after any call.
    def calls(month: int, rows: list[tuple[int, int]]) -> pl.DataFrame:
        return pl.DataFrame({
            "event_id": [f"m{month}e{i:02d}" for i in range(len(rows))],
            "account_id": ["A"] * len(rows), "service": ["voice"] * len(rows),
            "destination_group": ["US"] * len(rows),
            "started_at": [datetime(2026, month, day, 12) for day, _ in rows],
            "quantity_units": [m * M for _, m in rows],
            "amount_units": [m * 100_000 for _, m in rows],
        }, schema_overrides={"started_at": pl.Datetime("us")}).sort("started_at", "event_id")

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
