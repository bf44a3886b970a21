"""Polars reductions around the rules: distinct situations, first-come chains, period positions."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from rules.situations import distinct_situations, period_positions, settle_first_come


def test_distinct_situations_number_each_combination_once_and_tag_every_row():
    frame = pl.DataFrame({"seq": [0, 1, 2, 3], "a": ["x", "y", "x", "x"], "b": [1, 1, 1, 2]})
    tagged, distinct = distinct_situations(frame, ["a", "b"], "t")
    assert distinct.rows() == [("t:0", "x", 1), ("t:1", "x", 2), ("t:2", "y", 1)]
    assert dict(tagged.select("seq", "situation").rows()) == {0: "t:0", 1: "t:2", 2: "t:0",
                                                              3: "t:1"}


@pytest.mark.parametrize(
    ("edges", "losers"),
    [
        ([], []),
        ([(0, 1)], [(1, 0)]),
        ([(0, 1), (0, 2), (1, 2)], [(1, 0), (2, 0)]),
        ([(0, 1), (1, 2)], [(1, 0)]),  # 1 lost, so it takes nothing from 2
        ([(0, 1), (1, 2), (2, 3)], [(1, 0), (3, 2)]),
        ([(0, 2), (1, 2)], [(2, 0)]),  # the earliest standing one is named
    ],
    ids=["none", "pair", "triangle", "chain-3", "chain-4", "two-winners"],
)
def test_settle_first_come_walks_chains_in_assignment_order(edges, losers):
    frame = pl.DataFrame(edges, schema={"first_seq": pl.UInt32, "later_seq": pl.UInt32},
                         orient="row")
    assert settle_first_come(frame).rows() == losers


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2026-02-01", None, (-1, 32)),
        ("2026-03-05", "2026-03-20", (4, 19)),
        ("2026-05-01", "2026-06-01", (32, 32)),
        ("2026-01-01", "2026-02-01", (-1, -1)),
        ("2026-03-01", "2026-04-01", (0, 31)),
    ],
)
def test_period_positions_clip_one_day_outside_the_period(start, end, expected):
    frame = pl.DataFrame({
        "eff_start": [date.fromisoformat(start)],
        "eff_end": [date.fromisoformat(end) if end else None],
        "period_start": [date(2026, 3, 1)], "period_end": [date(2026, 4, 1)],
    }, schema_overrides={"eff_end": pl.Date})
    out = period_positions(frame)
    assert (out["pos_start"][0], out["pos_end"][0], out["pos_period_end"][0]) == (*expected, 31)
