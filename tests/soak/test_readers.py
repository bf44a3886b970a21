"""Readers during publication (issue 23): processes read the analyst copy, the Parquet set and
`billrun sql` in a loop while four nights (loads, nightlies, a reprocess) publish. None of them
gets an error, and none sees invoices of one run with the lines of another. The suite's
campaign (the month) carries its own readers on three fault-free nights, and this test is
skipped; a campaign too short for such a stretch (BILLRUN_SOAK_DAYS under 14, to try a change
quickly) leaves them to this test."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from data.generator import generate
from tests.soak import test_campaign
from tests.soak.campaign import (
    Campaign,
    assert_readers_held,
    plan_days,
    start_readers,
    stop_readers,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    test_campaign.DAYS >= 14, reason="the campaign's fault-free nights carry the readers")]

SEED = int(os.environ.get("BILLRUN_SOAK_SEED", "23"))


def test_readers_never_fail_and_never_see_two_runs_at_once(tmp_path: Path) -> None:
    generate(80, tmp_path / "gen", seed=SEED, months=2, start="2026-01")
    days = plan_days(tmp_path / "gen", tmp_path / "drops", date(2026, 1, 27), 4, SEED)
    days[3].reprocess = "2025-12"  # a reprocess publishes too
    env = dict(os.environ)
    campaign = Campaign(tmp_path / "db" / "billrun.duckdb", env, seed=SEED, counters_every=0)
    campaign.db.parent.mkdir()
    campaign.play(days[:1], check=False)  # something to read
    # One reader of each kind: each loops without pause, so on the suite's two cores a second
    # reader of the same kind took a core from the other tests for no path of its own.
    procs, stop, reports = start_readers(
        campaign.db, ["copy", "parquet", "sql"], tmp_path / "readers", env)
    try:
        campaign.play(days[1:], check=False)
    finally:
        seen = stop_readers(procs, stop, reports)
    assert_readers_held(procs, seen)
