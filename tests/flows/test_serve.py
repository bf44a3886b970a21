"""`billrun serve`: the nightly deployment on a cron schedule (Prefect)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from flows.load import load_flow
from flows.serve import DEPLOYMENT_NAME, nightly_deployment, scheduled_nightly


def test_the_deployment_runs_the_nightly_flow_every_night_at_two() -> None:
    deployment = nightly_deployment("prod.duckdb", "/srv/drop", "0 2 * * *")
    assert deployment.name == DEPLOYMENT_NAME
    assert deployment.parameters == {"db": "prod.duckdb", "input_dir": "/srv/drop"}
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
