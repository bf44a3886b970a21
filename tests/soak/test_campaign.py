"""A month of nights with faults (issue 23): 30 seeded random days of 150 generated accounts
through the real CLI, with 3 SIGKILLs, 2 full disks and a corrupt file on random days, every
invariant checked after each day (tests/soak/campaign.py), the counters recomputed whole every
15th day (and on the last), and at the end the database equals a twin that ran the same days
without a fault. The days before the first fault are fault-free already: the twin starts from
a copy of the campaign's database after them and plays the rest in this process.

Readers during publication: over three fault-free nights in a row (one with a reprocess when
there is one), a reader of the analyst copy, one of the Parquet set and one of `billrun sql`
read in a loop while the nights publish; none of them gets an error or sees invoices of one run
with the lines of another.

`benchmarks/soak.py` runs the same campaign long; BILLRUN_SOAK_DAYS (and _ACCOUNTS, _SEED)
change its size and draw here (under 10 days: one fault of each kind, and no readers when no
three nights in a row are free of faults)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from data.generator import generate
from tests.flows.conftest import copy_database
from tests.soak.campaign import (
    Campaign,
    Day,
    SmallDisk,
    assert_readers_held,
    cpu_seconds,
    equal_to_twin,
    plan_days,
    plan_faults,
    play_twin,
    readers_window,
    start_readers,
    stop_readers,
)

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("BILLRUN_SOAK_SEED", "23"))
ACCOUNTS = int(os.environ.get("BILLRUN_SOAK_ACCOUNTS", "150"))
# The suite plays four nights: the month (BILLRUN_SOAK_DAYS=30) took 360 s of one worker in
# `.ci/run`, whose pytest then took 933 s, past CI's 15 minutes (benchmarks/RESULTS.md, "The
# month in CI, cheaper"). Run it with BILLRUN_SOAK_DAYS=30 before a change to the runs lands.
DAYS = int(os.environ.get("BILLRUN_SOAK_DAYS", "4"))
START = date(2026, 1, 15)
# A short campaign (BILLRUN_SOAK_DAYS under 10, to try a change quickly) has one of each kind.
FAULTS = ({"kill": 1, "disk": 1, "corrupt": 1} if DAYS < 10
          else {"kill": 3, "disk": 2, "corrupt": 1})
# The whole recompute of the counters (a CLI night on a copy) every 15th day and on the last:
# twice in the month (days 15 and 30), each against carried counters of 15 more nights; in
# between, the carried counters are still checked whole at the end against the twin's.
COUNTERS_EVERY = 15
# The readers' nights: they read through loads, nightlies and a reprocess (the month of seed 23:
# days 10 to 12), not through a fault (a killed or disk-full run is not what they are about).
READERS_NIGHTS = 3
READERS = ["copy", "parquet", "sql"]


def test_a_month_of_nights_with_faults_keeps_every_invariant(tmp_path: Path) -> None:
    generate(ACCOUNTS, tmp_path / "gen", seed=SEED, months=2, start="2026-01")
    days = plan_days(tmp_path / "gen", tmp_path / "drops", START, DAYS, SEED)
    counts = dict(FAULTS)
    if not SmallDisk.available():  # no mount here: the full disk is covered where it is
        counts.pop("disk")
    faults = plan_faults(days, SEED, counts)
    env = dict(os.environ)
    log: list[str] = []

    def note(line: str) -> None:
        log.append(line)
        with (tmp_path / 'soak.log').open('a') as out:
            out.write(line + '\n')

    twin = tmp_path / "twin" / "billrun.duckdb"
    # The twin's start: the campaign's database after its last day before the first fault
    # (never day 0, plan_faults); those days ran through the CLI with no fault, as the twin's.
    forked = min(faults, default=len(days))

    def fork(day: Day) -> None:
        if day.index == forked - 1:
            copy_database(campaign.db, twin)
            note(f"twin: a copy of the database after day {day.index}")

    with SmallDisk(tmp_path / "disk", 400) as disk:
        campaign = Campaign(disk.folder / "billrun.duckdb", env, faults, disk, seed=SEED,
                            counters_every=COUNTERS_EVERY, log=note, after_day=fork)
        window = readers_window(days, faults, READERS_NIGHTS)
        if window is None:
            note(f"no {READERS_NIGHTS} nights in a row without a fault: no readers")
            campaign.play(days)
        else:
            first, end = window
            campaign.play(days[:first], last=False)
            note(f"readers from day {first} to day {end - 1}")
            procs, stop, reports = start_readers(campaign.db, READERS, tmp_path / "readers", env)
            try:
                campaign.play(days[first:end], last=end == len(days))
            finally:
                seen = stop_readers(procs, stop, reports)
            assert_readers_held(procs, seen)
            note(f"readers: {seen}")
            campaign.play(days[end:])
        cpu = cpu_seconds()
        play_twin(days[forked:], twin, env, log=note, in_process=True)
        note(f"twin: {len(days) - forked} days in {cpu_seconds() - cpu:.1f} CPU-s")
        assert equal_to_twin(campaign.db, twin, campaign.corrupt_lines) == [], "\n".join(log)
    print("\n".join(log), dict(campaign.ledger))
    assert campaign.found == [], campaign.found
