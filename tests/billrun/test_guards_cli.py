"""Issue 21, item 2: a refused command is refused before any Prefect server or flow starts.

Each command runs as the user runs it: the real `billrun` script in its own process, WITHOUT
the session's PREFECT_API_URL and with a new Prefect home, so that it would launch its own
temporary server if it got that far. A server, once launched, writes `server.log` in that home
(flows/prefect_env.py); a refused command leaves the home without it, and leaves the database
as it was: no `runs` row, no file created.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from billrun.cli import main
from store.runlock import run_lock
from tests.conftest import left_in
from tests.flows.conftest import ACCOUNTS, ASSIGNMENTS, CATALOG, USAGE, write_drop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the scenario loaded and billed once (in-process, the session's API)."""
    tmp = tmp_path_factory.mktemp("guards")
    drop = write_drop(tmp / "drop", catalog=CATALOG, accounts=ACCOUNTS, assignments=ASSIGNMENTS,
                      usage=USAGE)
    db = tmp / "billrun.duckdb"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["load", str(drop), "--db", str(db)]) == 0
        assert main(["nightly", "--as-of", "2026-02-01", "--db", str(db)]) == 0
    return db


def refused(*argv: str, cwd: Path) -> tuple[int, str, Path]:
    """Run `billrun ARGV` as a user would, with no API URL: exit code, stderr, Prefect home."""
    home = cwd / f"prefect-home-{len(list(cwd.glob('prefect-home-*')))}"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "BILLRUN_VERBOSE")}
    env["BILLRUN_PREFECT_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "billrun.cli", *argv], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)
    return done.returncode, " ".join(done.stderr.split()), home


def assert_refused_before_start(code: int, err: str, home: Path, want: int, words: str) -> None:
    assert code == want, err
    assert err.startswith("billrun: error: ") or err.startswith("billrun: warning: "), err
    assert words in err, err
    assert "Traceback" not in err
    assert not (home / "server.log").exists(), "a Prefect server was started"
    # The server child a flow command launches held at its start (docs/RUNS.md, "Start-up")
    # never became a server, and is gone with the refused command.
    assert not left_in(home), "a process of the refused command outlived it"


def runs(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()


@contextlib.contextmanager
def unchanged(db: Path) -> Iterator[None]:
    """The block writes no `runs` row (and leaves the file's bytes alone)."""
    before_runs, before_bytes = runs(db), db.read_bytes()
    yield
    assert runs(db) == before_runs
    assert db.read_bytes() == before_bytes


# ---------------------------------------------------------------------------------------------
# Arguments and files: exit 2


@pytest.mark.parametrize("command", [
    ["load", "{drop}"],
    ["nightly", "--as-of", "2026-02-01"],
    ["reprocess", "--period", "2026-01"],
])
def test_a_db_that_is_not_a_duckdb_database_is_refused(command: list[str],
                                                      tmp_path: Path) -> None:
    drop = write_drop(tmp_path / "drop", catalog=CATALOG, accounts=ACCOUNTS)
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database\n")
    argv = [a.format(drop=drop) for a in command]
    code, err, home = refused(*argv, "--db", str(junk), cwd=tmp_path)
    assert_refused_before_start(code, err, home, 2, f"--db {junk} is not a DuckDB database")
    assert junk.read_text() == "not a database\n"


def test_a_nightly_with_no_database_and_no_catalog_in_its_drop_is_refused(
    tmp_path: Path,
) -> None:
    db = tmp_path / "new.duckdb"
    code, err, home = refused("nightly", "--as-of", "2026-02-01", "--db", str(db), cwd=tmp_path)
    assert_refused_before_start(code, err, home, 2, f"no database at {db}: load a folder with "
                                "catalog.yaml first")
    drop = write_drop(tmp_path / "drop", accounts=ACCOUNTS)  # no catalog.yaml in it
    code, err, home = refused("nightly", "--as-of", "2026-02-01", "--db", str(db),
                              "--input", str(drop), cwd=tmp_path)
    assert_refused_before_start(code, err, home, 2, f"no database at {db}")
    assert not db.exists() and not Path(f"{db}.lock").exists()


def test_a_nightly_on_a_database_without_a_catalog_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()  # a DuckDB database, but nothing was ever loaded
    before = db.read_bytes()
    code, err, home = refused("nightly", "--as-of", "2026-02-01", "--db", str(db), cwd=tmp_path)
    assert_refused_before_start(code, err, home, 2, f"no catalog has been loaded into {db}")
    assert db.read_bytes() == before


@pytest.mark.parametrize(("files", "words"), [
    ({"usage.csv": USAGE, "usage.parquet": "x"}, "holds both usage.csv and usage.parquet"),
    ({"catalog.yaml": "currencies: [oops\n"}, "catalog"),
])
def test_a_nightly_whose_drop_the_load_would_refuse_is_refused(
    loaded: Path, tmp_path: Path, files: dict[str, str], words: str
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    for name, text in files.items():
        (drop / name).write_text(text)
    with unchanged(loaded):
        code, err, home = refused("nightly", "--as-of", "2026-02-01", "--db", str(loaded),
                                  "--input", str(drop), cwd=tmp_path)
    assert_refused_before_start(code, err, home, 2, words)


@pytest.mark.parametrize("command", [
    ["nightly", "--as-of", "2026-02-01"],
    ["reprocess", "--period", "2026-01"],
])
@pytest.mark.parametrize(("option", "words"), [
    (["--cluster", "tcp://10.0.0.5:8786"],
     "the workers of tcp://10.0.0.5:8786 cannot reach billrun's temporary Prefect server"),
    (["--staging", "nope://bucket/stage"], "--staging nope://bucket/stage: Protocol not known"),
])
def test_a_cluster_or_staging_the_run_cannot_use_is_refused(
    loaded: Path, tmp_path: Path, command: list[str], option: list[str], words: str
) -> None:
    with unchanged(loaded):
        code, err, home = refused(*command, "--db", str(loaded), *option, cwd=tmp_path)
    assert_refused_before_start(code, err, home, 2, words)


def test_the_earlier_guards_start_no_server_either(loaded: Path, tmp_path: Path) -> None:
    # Issue 12's guard rails, and the load of an empty folder (a warning, exit 0).
    with unchanged(loaded):
        code, err, home = refused("nightly", "--as-of", "2100-01-01", "--db", str(loaded),
                                  cwd=tmp_path)
        assert_refused_before_start(code, err, home, 2, "is beyond the horizon")
        code, err, home = refused("reprocess", "--period", "2030-01", "--db", str(loaded),
                                  cwd=tmp_path)
        assert_refused_before_start(code, err, home, 2, "period 2030-01 was never billed")
        (tmp_path / "empty").mkdir()
        code, err, home = refused("load", str(tmp_path / "empty"), "--db", str(loaded),
                                  cwd=tmp_path)
        assert_refused_before_start(code, err, home, 0, "nothing to load")


# ---------------------------------------------------------------------------------------------
# Another run holds the database: exit 1, as when the run itself finds the lock taken


@pytest.mark.parametrize("command", [
    ["load", "{drop}"],
    ["nightly", "--as-of", "2026-02-01"],
    ["reprocess", "--period", "2026-01"],
])
def test_a_database_another_run_holds_is_refused(
    loaded: Path, tmp_path: Path, command: list[str]
) -> None:
    drop = write_drop(tmp_path / "drop", accounts=ACCOUNTS)
    argv = [a.format(drop=drop) for a in command]
    with unchanged(loaded), run_lock(loaded):
        code, err, home = refused(*argv, "--db", str(loaded), cwd=tmp_path)
    assert_refused_before_start(code, err, home, 1,
                                f"refused: another billrun run (pid {os.getpid()}) is writing")
