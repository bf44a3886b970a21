"""`pipeline.counters`: never-reset counters carried across periods, and the roll-forward shift."""

from __future__ import annotations

from datetime import date

import polars as pl

from pipeline.contracts import COUNTER_KEY, COUNTER_SCHEMA, NEVER_START
from pipeline.counters import carry_counters, counter_shift

M = 1_000_000
DAY = date(2026, 1, 1)


def _counters(rows: list[tuple[str, str, str, date, int]]) -> pl.DataFrame:
    """(account_id, service, reset, window_start, value in whole units) of quantity counters."""
    return pl.DataFrame(
        [
            {"account_id": a, "service": s, "destination_group": "ANY",
             "threshold_type": "quantity", "window_start": w, "value_units": v * M, "reset": r}
            for a, s, r, w, v in rows
        ],
        schema=COUNTER_SCHEMA,
    )


def test_a_carried_never_window_wins_over_the_stored_one_and_others_stay() -> None:
    stored = _counters([("A1", "roam", "never", NEVER_START, 100),
                        ("A2", "roam", "never", NEVER_START, 40)])
    carried = _counters([("A1", "roam", "never", NEVER_START, 130),
                         ("A1", "data", "billing_period", DAY, 7)])  # a period window ends
    before = carry_counters(stored, carried)
    values = dict(zip(before["account_id"] + "/" + before["service"], before["value_units"],
                      strict=True))
    # A1's lifetime window stands at 130 after the previous period of this run, not the stored
    # 100; A2's stored 40 is kept; A1's billing-period window does not carry.
    assert values == {"A1/roam": 130 * M, "A2/roam": 40 * M}
    assert before.columns == [*COUNTER_KEY, "value_units"]


def test_the_shift_is_the_change_of_each_never_window_and_nothing_else() -> None:
    old = _counters([("A1", "roam", "never", NEVER_START, 100),
                     ("A2", "roam", "never", NEVER_START, 40),
                     ("A3", "roam", "never", NEVER_START, 10),
                     ("A1", "data", "billing_period", DAY, 5)])
    new = _counters([("A1", "roam", "never", NEVER_START, 125),   # late usage: +25
                     ("A2", "roam", "never", NEVER_START, 40),    # unchanged: no row
                     ("A4", "roam", "never", NEVER_START, 3),     # new window: +3
                     ("A1", "data", "billing_period", DAY, 9)])   # not a never window
    shift = counter_shift(old, new, "2026-01").sort("account_id")
    # A3's window vanished on reprocess: -10.
    assert shift.select("account_id", "period", "delta_units").rows() == [
        ("A1", "2026-01", 25 * M), ("A3", "2026-01", -10 * M), ("A4", "2026-01", 3 * M),
    ]
