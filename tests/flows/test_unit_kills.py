"""SIGKILL a real `billrun nightly` (a catch-up of two periods, in staged units) while its units
run and during its commit (issue 9, item 2). Each kill leaves the previous tables
byte-identical; the staging folder the kill leaves is removed by the next run, which succeeds
and gives the tables of an unkilled run. The helpers are tests/flows/test_kills.py's."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import psutil
import pytest

from data.generator import generate
from flows.nightly import nightly_flow
from tests.flows.test_kills import SEED, dump, own_env, results, survivors

pytestmark = pytest.mark.slow

AS_OF = "2026-03-15"  # February final, March drafted: two periods of units


def command(db: Path) -> list[str]:
    code = "import sys; from billrun.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "nightly", "--as-of", AS_OF, "--db", str(db)]


def staging_root(db: Path) -> Path:
    return Path(f"{db}.staging")


def units_started(db: Path) -> bool:
    """The run's units are running: a unit folder exists in its staging folder."""
    return any(staging_root(db).glob("*/units/*/*"))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """January billed (final), February and March loaded but not billed yet."""
    tmp = tmp_path_factory.mktemp("unit-kills")
    generate(40, tmp / "in", seed=11, months=3)
    db = tmp / "base.duckdb"
    # The night loads the drop itself (`nightly --input`): one flow and one publication.
    nightly_flow(as_of=date(2026, 2, 1), db=str(db), input_dir=str(tmp / "in"))
    return db


def kill_at(point: str, db: Path, folder: Path, deadline: float = 240) -> None:
    """Run `billrun nightly` on `db` paused at the fault point `point`, SIGKILL it there, and
    check it reached the point and left no process of its tree."""
    tag, marker = uuid.uuid4().hex, folder / "paused"
    env = own_env(tag, BILLRUN_PAUSE_AT=point, BILLRUN_PAUSE_MARKER=str(marker))
    tree, killed, _ = watch(command(db), env, db, marker=marker, deadline=deadline)
    assert killed and marker.exists(), f"never reached {point}"
    assert survivors(tree, tag) == []


def watch(argv: list[str], env: dict[str, str], db: Path, *, marker: Path | None = None,
          delay: float | None = None, deadline: float = 240) -> tuple[list, bool, float]:
    """Run `argv`; once its units have started, wait for `marker` or `delay` seconds (None:
    until it ends), then SIGKILL it. Returns its process tree, whether it was killed, and the
    seconds from the units' start to the kill or the end."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    tree, started, units_at = [parent], time.monotonic(), None
    while proc.poll() is None and time.monotonic() - started < deadline:
        try:
            seen = {p.pid for p in tree}
            tree += [c for c in parent.children(recursive=True) if c.pid not in seen]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
        if units_at is None and units_started(db):
            units_at = time.monotonic()
        if marker is not None and marker.exists():
            break
        if delay is not None and units_at is not None and time.monotonic() - units_at >= delay:
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return tree, killed, time.monotonic() - (units_at or started)


@pytest.fixture(scope="module")
def reference(base: Path) -> tuple[dict, float]:
    """An unkilled CLI run's results, and how long it ran after its units started."""
    db = base.with_name("reference.duckdb")
    db.write_bytes(base.read_bytes())
    _, killed, span = watch(command(db), own_env(uuid.uuid4().hex), db)
    assert not killed and not staging_root(db).exists()
    return results(db), span


def fresh(base: Path, tmp_path: Path) -> Path:
    db = tmp_path / "billrun.duckdb"
    db.write_bytes(base.read_bytes())
    return db


def after_kill(db: Path, before: dict, reference: dict, what: str) -> None:
    """The previous tables are whole; the next run cleans the staging folder and succeeds."""
    assert dump(db) == before, f"{what}: the kill changed the tables"
    nightly_flow(as_of=date.fromisoformat(AS_OF), db=str(db))
    assert results(db) == reference, f"{what}: the next run differs from an unkilled run"
    assert not staging_root(db).exists(), f"{what}: staging left behind"


@pytest.mark.parametrize("point", ["mid-units", "mid-commit", "before-commit"])
def test_kill_at_a_named_point_of_the_units_or_the_commit(
    point: str, base: Path, reference: tuple[dict, float], tmp_path: Path
) -> None:
    db = fresh(base, tmp_path)
    before = dump(db)
    kill_at(point, db, tmp_path)
    assert any(staging_root(db).glob("*/units/*/*")), "the killed run staged nothing"
    after_kill(db, before, reference[0], f"killed at {point}")


@pytest.mark.parametrize("draw", range(3))
def test_kill_at_a_random_moment_of_the_units_or_the_commit(
    draw: int, base: Path, reference: tuple[dict, float], tmp_path: Path
) -> None:
    expected, span = reference
    delay = random.Random(f"{SEED}-units-{draw}").uniform(0, span)
    what = (f"killed {delay:.2f} s after its units started, of {span:.1f} s "
            f"(BILLRUN_KILL_SEED={SEED})")
    db = fresh(base, tmp_path)
    before = dump(db)
    tag = uuid.uuid4().hex
    tree, killed, _ = watch(command(db), own_env(tag), db, delay=delay)
    assert survivors(tree, tag) == [], what
    if killed:  # nothing is committed before the run's last instants: the tables are whole
        now = dump(db)
        if now != before:  # the commit had landed: it must be the unkilled run's result
            assert results(db) == expected, what
            return
        after_kill(db, before, expected, what)
