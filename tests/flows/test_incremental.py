"""The incremental nightly (docs/RUNS.md, "Incremental nightly"; issue 9, item 3): a night that
continues drafts from what their last computation counted leaves every table exactly as a night
that recomputes every group whole (`incremental=False`), over the same sequence of drops and
nights, whatever the sequence: new days of usage, late events, assignments that arrive later,
periods that end and are finalized.

Real parts: generated data (every scenario kind of data/generator.py, the sample catalog with
its rollover entry), real loads and nightly flows on a real DuckDB file."""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, timedelta
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from data.generator import generate
from flows.load import load_flow
from flows.nightly import nightly_flow
from tests.flows.conftest import copy_database
from tests.flows.test_units_property import results


def _lines(path: Path) -> tuple[str, list[str]]:
    """The header and the physical body lines of a CSV file, byte for byte."""
    text = path.read_text(encoding="utf-8").splitlines()
    return text[0], text[1:]


def write_drops(src: Path, folder: Path, nights: list[date], late_every: int,
                held_assignments_every: int, catalog_again: bool = False) -> list[Path]:
    """One drop folder per night. Night i brings the usage started on or before its as-of and
    after the previous one's; every `late_every`-th event comes one night late (0: none); every
    `held_assignments_every`-th assignment arrives with the second drop (0: none). The catalog
    and accounts, and lines whose date does not parse, come with the first drop;
    `catalog_again`: the second drop brings the catalog once more, with a comment added (a new
    catalog version, which bills the same)."""
    drops = [folder / f"drop{i}" for i in range(len(nights))]
    for drop in drops:
        drop.mkdir(parents=True)
    shutil.copy2(src / "catalog.yaml", drops[0] / "catalog.yaml")
    shutil.copy2(src / "accounts.csv", drops[0] / "accounts.csv")
    if catalog_again and len(drops) > 1:
        text = (src / "catalog.yaml").read_text(encoding="utf-8")
        (drops[1] / "catalog.yaml").write_text(text + "# reviewed\n", encoding="utf-8")
    header, body = _lines(src / "assignments.csv")
    kept = [line for i, line in enumerate(body)
            if not held_assignments_every or i % held_assignments_every]
    held = [line for i, line in enumerate(body)
            if held_assignments_every and not i % held_assignments_every]
    (drops[0] / "assignments.csv").write_text("\n".join([header, *kept]) + "\n")
    if held and len(drops) > 1:
        (drops[1] / "assignments.csv").write_text("\n".join([header, *held]) + "\n")
    header, body = _lines(src / "usage.csv")
    at = header.split(",").index("started_at")
    per_drop: list[list[str]] = [[] for _ in drops]
    for i, line in enumerate(body):
        fields = line.split(",")
        try:
            day = date.fromisoformat(fields[at][:10])
        except (IndexError, ValueError):
            per_drop[0].append(line)
            continue
        night = next((n for n, as_of in enumerate(nights) if day <= as_of), None)
        if night is None:
            continue  # after the last night: never loaded
        if late_every and i % late_every == 0:
            night = min(night + 1, len(nights) - 1)
        per_drop[night].append(line)
    for drop, rows in zip(drops, per_drop, strict=True):
        (drop / "usage.csv").write_text("\n".join([header, *rows]) + "\n")
    return drops


def run_nights(tmp: Path, seed: int, accounts: int, nights: list[date], late_every: int,
               held_every: int, catalog_again: bool = False,
               grace_days: int | None = None, whole: bool = True
               ) -> tuple[dict, dict | None, list[int]]:
    """The same drops and nights on two databases, incremental and whole; returns both DBs'
    tables and, for each incremental night, how many drafts it continued. `grace_days`: the
    nights' `--grace-days` (SPEC §8.3; None: the catalog's). `whole=False`: the incremental
    database alone (None for the whole one's tables).

    The first night runs once, incremental, and the whole database starts as its copy: on an
    empty database there is nothing to continue (the tests assert it continued no draft), so
    a second first night would compute the same again."""
    generate(accounts, tmp / "gen", seed=seed, months=2)
    drops = write_drops(tmp / "gen", tmp, nights, late_every, held_every, catalog_again)
    inc, whole_db = tmp / "inc.duckdb", tmp / "whole.duckdb"
    continued = []
    for night, (drop, as_of) in enumerate(zip(drops, nights, strict=True)):
        if night == 1 and whole:
            copy_database(inc, whole_db)
        for db, incremental in ((inc, True), (whole_db, False)):
            if not incremental and (night == 0 or not whole):
                continue
            # The night loads its drop itself (`nightly --input`): one flow and one publication
            # a night, not two; both databases take the same path.
            summary = nightly_flow(as_of=as_of, db=str(db), input_dir=str(drop), shards=2,
                                   incremental=incremental, grace_days=grace_days)
            if incremental:
                continued.append(summary.changes["drafts_continued"])
            else:
                assert summary.changes["drafts_continued"] == 0
    if whole and len(nights) == 1:
        copy_database(inc, whole_db)
    return comparable(inc), comparable(whole_db) if whole else None, continued


def comparable(db: Path) -> dict[str, list[tuple]]:
    """Every table (tests/flows/test_units_property.py), but the run log's `rows_in`: the
    events a run read, fewer when it continues (see the first test)."""
    tables = results(db)
    # runs without run_id and clocks: kind, period, as_of, status, rows_in, rows_out, message
    tables["runs"] = [row[:4] + row[5:] for row in tables["runs"]]
    return tables


def test_the_months_last_day_as_a_separate_drop_continues_every_draft() -> None:
    # The bench's increment: January without its last day, then the last day alone, both
    # nights as of January 31. Every draft continues (its new events are all on the 31st), and
    # the units read only those events: a nightly's rows_in is its assignments plus the usage
    # events its units read.
    with tempfile.TemporaryDirectory() as tmp:
        nights = [date(2026, 1, 30), date(2026, 1, 31)]
        inc, whole, continued = run_nights(Path(tmp), 7, 30, nights, 0, 0)
        assert inc == whole
        drafts = len({row[0] for row in inc["invoices"] if row[1] == "2026-01"})
        assert continued[0] == 0 and continued[1] == drafts > 0
        with duckdb.connect(str(Path(tmp) / "inc.duckdb"), read_only=True) as con:
            rows_in = con.execute("SELECT rows_in FROM runs WHERE kind = 'nightly' "
                                  "ORDER BY started_at").fetchall()
            assignments = con.execute("SELECT count(*) FROM assignments").fetchone()[0]
            last_day = con.execute("SELECT count(*) FROM usage WHERE started_at >= "
                                   "TIMESTAMP '2026-01-31'").fetchone()[0]
        assert rows_in[1][0] == assignments + last_day


def test_a_late_event_recomputes_its_account_whole() -> None:
    # Every 7th event comes a night late: its account's draft is recomputed whole, the others
    # continue.
    with tempfile.TemporaryDirectory() as tmp:
        nights = [date(2026, 1, 12), date(2026, 1, 20), date(2026, 1, 27)]
        inc, whole, continued = run_nights(Path(tmp), 3, 30, nights, 7, 0)
        assert inc == whole
        drafts = len({row[0] for row in inc["invoices"] if row[1] == "2026-01"})
        assert 0 < continued[1] < drafts and 0 < continued[2] < drafts


def test_a_new_catalog_version_recomputes_every_draft_whole() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nights = [date(2026, 1, 20), date(2026, 1, 27)]
        inc, whole, continued = run_nights(Path(tmp), 9, 20, nights, 0, 0, catalog_again=True)
        assert inc == whole
        assert continued == [0, 0]


def test_an_earlier_as_of_recomputes_every_draft_whole() -> None:
    # The second night is as of an earlier day: its drafts count fewer events than the first
    # night's did, so none can continue from them.
    with tempfile.TemporaryDirectory() as tmp:
        nights = [date(2026, 1, 20), date(2026, 1, 14)]
        inc, whole, continued = run_nights(Path(tmp), 9, 20, nights, 0, 0)
        assert inc == whole
        assert continued == [0, 0]


def test_a_draft_in_its_grace_continues_and_equals_a_whole_recompute() -> None:
    # SPEC §8.3 with a grace of 3 days: on Feb 2 January (billing day 1) is still a draft,
    # beside February's, and continues from what Jan 30 counted (no event comes late here: a
    # late one recomputes its account whole, as in the open period); Feb 4 finalizes it.
    with tempfile.TemporaryDirectory() as tmp:
        nights = [date(2026, 1, 30), date(2026, 2, 2), date(2026, 2, 4)]
        inc, whole, continued = run_nights(Path(tmp), 13, 25, nights, 0, 0, grace_days=3)
        assert inc == whole
        # Without the grace, Feb 2 continues only the drafts of periods still open then.
        no_grace = Path(tmp) / "no-grace"
        no_grace.mkdir()
        _, _, open_only = run_nights(no_grace, 13, 25, nights[:2], 0, 0, grace_days=0,
                                     whole=False)
        assert continued[1] > open_only[1]
        # On Feb 4, January is final where it ended on Feb 1 (billing day 1), a draft where it
        # ended later (its grace is not over: billing day 2 finalizes it on Feb 5).
        with duckdb.connect(str(Path(tmp) / "inc.duckdb"), read_only=True) as con:
            statuses = con.execute("""SELECT DISTINCT a.billing_day = 1, i.status
                FROM invoices i JOIN accounts a USING (account_id)
                WHERE i.period = '2026-01' ORDER BY ALL""").fetchall()
        assert statuses == [(False, "draft"), (True, "final")]


# Few examples, no shrinking: one example is a generated drop per night and two runs a night.
NIGHTS = settings(max_examples=2, deadline=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=[HealthCheck.too_slow])


@NIGHTS
@given(
    seed=st.integers(0, 10**6),
    gaps=st.lists(st.integers(1, 12), min_size=2, max_size=3),
    late_every=st.sampled_from([0, 5, 13]),
    held_every=st.sampled_from([0, 4]),
)
def test_an_incremental_night_equals_a_whole_recompute(
    seed: int, gaps: list[int], late_every: int, held_every: int
) -> None:
    nights, day = [], date(2026, 1, 3)
    for gap in gaps:  # as-of dates that move on, across the end of January now and then
        day += timedelta(days=gap)
        nights.append(day)
    with tempfile.TemporaryDirectory() as tmp:
        inc, whole, _ = run_nights(Path(tmp), seed, 25, nights, late_every, held_every)
        assert inc == whole


def test_increments_then_the_finalizing_night_equal_one_run_over_everything() -> None:
    # Two incremental nights of January, then the night after it ends (January finalized,
    # February drafted), against one nightly over the same loaded drops as of that last day.
    # No event comes late, so the two histories meet: every table but the run log is the same.
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        nights = [date(2026, 1, 20), date(2026, 1, 30), date(2026, 2, 2)]
        inc, _, continued = run_nights(tmp_path, 5, 30, nights, 0, 0, whole=False)
        assert continued[1] > 0
        once = tmp_path / "once.duckdb"
        for drop in sorted(tmp_path.glob("drop*")):
            load_flow(str(drop), str(once))
        nightly_flow(as_of=nights[-1], db=str(once), shards=3)
        everything = comparable(once)
        numbers = []
        for tables in (inc, everything):
            del tables["runs"]
            # SPEC §9: an invoice is issued on the as-of date of the run that finalized it, and
            # numbered run after run: the first night finalized the periods that ended before
            # it, the single run all of them. The same numbers are given.
            documents = tables.pop("documents")
            numbers.append(sorted(row[0] for row in documents if row[1] == "invoice"))
            tables["invoices"] = sorted(row[:5] for row in tables["invoices"])
        assert inc == everything
        assert numbers[0] == numbers[1] and len(numbers[0]) > 0
