"""`billrun serve`: the nightly deployment on a cron schedule (Prefect)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import psutil
import pytest

from flows.load import load_flow
from flows.serve import DEPLOYMENT_NAME, nightly_deployment, scheduled_nightly


def test_the_deployment_runs_the_nightly_flow_every_night_at_two() -> None:
    deployment = nightly_deployment("prod.duckdb", "/srv/drop", "0 2 * * *", "adjust")
    assert deployment.name == DEPLOYMENT_NAME
    assert deployment.parameters == {"db": "prod.duckdb", "input_dir": "/srv/drop",
                                     "late_usage": "adjust"}
    assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]


def test_the_scheduled_flow_bills_as_of_the_given_day(scenario: dict[str, Path]) -> None:
    db = scenario["db"]
    load_flow(str(scenario["drop"]), str(db))
    summary = scheduled_nightly(db=str(db), as_of=date(2026, 1, 20))
    assert summary.periods == ["2026-01"]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT as_of FROM runs WHERE kind = 'nightly'").fetchall() == [
            (date(2026, 1, 20),)
        ]


def _without_api_url() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}


@pytest.mark.slow
def test_serve_bills_on_a_one_minute_cron_with_its_own_scheduler(
    scenario: dict[str, Path], tmp_path: Path
) -> None:
    """`billrun serve` starts a real server with its scheduler: a run lands within two minutes."""
    db = scenario["db"]
    load_flow(str(scenario["drop"]), str(db))
    home = tmp_path / "prefect-home"  # its own home: the session's server does not share it
    env = {**_without_api_url(), "BILLRUN_PREFECT_HOME": str(home)}
    code = "import sys; from billrun.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--db", str(db), "--cron", "* * * * *"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # as a non-interactive shell starts a background job: SIGINT ignored (issue 21)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    stopped_in = None
    try:
        first = proc.stderr.readline()  # printed once the scheduler's server is healthy
        assert "Prefect API with its scheduler at" in first, first
        # When the next run is, and that the cron is read in UTC.
        second = proc.stderr.readline()
        assert "on cron '* * * * *' (UTC); next run " in second and second.endswith(" UTC\n")
        parent = psutil.Process(proc.pid)
        tree = [parent, *parent.children(recursive=True)]
        deadline = time.monotonic() + 120
        runs: list[tuple] = []
        while time.monotonic() < deadline and not runs:
            time.sleep(2)
            assert proc.poll() is None, proc.stderr.read()
            runs = _nightly_runs(db)
        assert runs, "no scheduled nightly landed in `runs` within two minutes"
    finally:
        proc.send_signal(signal.SIGINT)
        asked = time.monotonic()
        try:
            proc.wait(timeout=60)
            stopped_in = time.monotonic() - asked
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # SIGINT stops it even though it started with SIGINT ignored, cleanly and soon.
    assert stopped_in is not None and stopped_in < 20, stopped_in
    rest = proc.stderr.read()
    assert proc.returncode == 0, rest
    assert "billrun: serve stopped" in rest and "never awaited" not in rest, rest
    log = (home / "serve-server.log").read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    # Its server and every other process of its tree went with it.
    assert [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


def _nightly_runs(db: Path) -> list[tuple]:
    try:
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute(
                "SELECT kind, status FROM runs WHERE kind = 'nightly' AND status = 'success'"
            ).fetchall()
    except duckdb.IOException:  # the scheduled run holds the file right now
        return []
