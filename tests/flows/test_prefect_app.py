"""billrun's own Prefect app (flows/prefect_app.py), which a command's temporary server serves
once its Prefect home is migrated: the flows through it stay real Prefect flows, recorded by
Prefect with their task runs, states, logs and artifacts, and nothing outlives the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from flows import prefect_server
from tests.conftest import left_in
from tests.flows.conftest import ACCOUNTS, ASSIGNMENTS, CATALOG, USAGE, write_drop

pytestmark = pytest.mark.slow


def billrun(*argv: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`billrun ARGV` as a user runs it: no API URL, so it starts its own server in `home`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "BILLRUN_VERBOSE")}
    env["BILLRUN_PREFECT_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "billrun.cli", *argv], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def post(api_url: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{api_url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_a_nightly_through_the_commands_own_server_is_recorded_by_prefect(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    drop = write_drop(tmp_path / "drop", catalog=CATALOG, accounts=ACCOUNTS,
                      assignments=ASSIGNMENTS, usage=USAGE)
    db = tmp_path / "billrun.duckdb"
    # The first command in a new home runs Prefect's whole server (it migrates the database);
    # the nightly, on the migrated home, runs billrun's own app.
    for argv in (["load", str(drop)], ["nightly", "--as-of", "2026-02-01"]):
        done = billrun(*argv, "--db", str(db), home=home, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert not left_in(home), "a process of the command outlived it"

    # Read what Prefect recorded, through Prefect's whole server on the same home.
    server = prefect_server.start(extra_env={"PREFECT_HOME": str(home)})
    try:
        runs = post(server.api_url, "/flow_runs/filter", {"sort": "START_TIME_ASC"})
        flows = {f["id"]: f["name"] for f in post(server.api_url, "/flows/filter", {})}
        assert [(flows[r["flow_id"]], r["state_type"]) for r in runs] == [
            ("billrun-load", "COMPLETED"), ("billrun-nightly", "COMPLETED")]
        nightly = runs[1]["id"]
        tasks = post(server.api_url, "/task_runs/filter",
                     {"flow_runs": {"id": {"any_": [nightly]}}})
        # As of 2026-02-01, A1 (opened 2026-01-01, billing day 1) has two periods to bill:
        # 2026-01 (ended: final) and 2026-02 (open: draft). The accounts are split into the
        # fewest shards, at least 2, and each shard settles its assignments once, then bills
        # each period (docs/RUNS.md, "Units of work"): 2 x (1 + 2) = 6 units, a task each.
        units = [t for t in tasks if t["name"].startswith("bill-unit")]
        assert len(units) == 6
        assert {t["state_type"] for t in units} == {"COMPLETED"}
        logs = post(server.api_url, "/logs/filter",
                    {"logs": {"flow_run_id": {"any_": [nightly]}}})
        assert logs, "the nightly's log lines reached the server"
        artifacts = post(server.api_url, "/artifacts/filter",
                         {"flow_runs": {"id": {"any_": [nightly]}}})
        assert artifacts, "the nightly's artifacts reached the server"
    finally:
        server.stop()


CONNECT = """
from flows import prefect_env, prefect_server
prefect_env.connect()
prefect_env.ready()
print(prefect_server.own_server().app)
"""


def test_the_smaller_app_serves_a_migrated_home_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["BILLRUN_PREFECT_HOME"] = str(tmp_path / "home")

    def app(**more: str) -> str:
        done = subprocess.run([sys.executable, "-c", CONNECT], env={**env, **more},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert app() == prefect_server.APP  # a new home: Prefect's server migrates it
    assert app() == prefect_server.FLOW_APP
    # Authentication is Prefect's server's alone.
    assert app(PREFECT_SERVER_API_AUTH_STRING="admin:secret") == prefect_server.APP
    assert app(PREFECT_SERVER_CSRF_PROTECTION_ENABLED="false") == prefect_server.FLOW_APP
    (tmp_path / "home" / "prefect.db").unlink()  # the database is gone: Prefect's, again
    assert app() == prefect_server.APP


def test_the_smaller_app_answers_as_prefects_server_does() -> None:
    # In this process, on the session's Prefect home (reads only; no lifespan, no services):
    # the same statuses and bodies as Prefect's whole server for a valid request, an invalid
    # one, a missing object and a client older than the API's minimum; no route of what is
    # left out (deployments).
    import asyncio
    import uuid

    import httpx

    from flows.prefect_app import create_app

    async def answers() -> list[tuple[int, Any]]:
        transport = httpx.ASGITransport(create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://server/api") as c:
            old = {"X-PREFECT-API-VERSION": "0.0.1"}
            replies = [
                await c.get("/health"),
                await c.post("/flows/", json={"nam": "x"}),
                await c.get(f"/flows/{uuid.uuid4()}"),
                await c.post("/flows/filter", json={}, headers=old),
                await c.get("/deployments/"),
            ]
        return [(r.status_code, r.json()) for r in replies]

    health, invalid, missing, too_old, left_out = asyncio.run(answers())
    assert health == (200, True)
    assert invalid[0] == 422 and invalid[1]["exception_message"] == "Invalid request received."
    assert invalid[1]["exception_detail"][0]["loc"] == ["body", "name"]
    assert missing == (404, {"detail": "Flow not found"})
    assert too_old[0] == 400 and "requires version 0.8.0 or higher" in too_old[1]["detail"]
    assert left_out == (404, {"detail": "Not Found"})
