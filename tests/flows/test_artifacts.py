"""Each billing run publishes Prefect artifacts: a summary table and revenue by add-on."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.load import load_flow
from flows.nightly import nightly_flow


def _artifacts(key: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )


def test_nightly_publishes_a_summary_and_revenue_by_addon(scenario: dict[str, Path]) -> None:
    load_flow(str(scenario["drop"]), str(scenario["db"]))
    summary = nightly_flow(as_of=date(2026, 2, 1), db=str(scenario["db"]))
    runs = _artifacts("nightly-summary")
    assert any(summary.run_id in str(a.data) for a in runs)
    revenue = _artifacts("nightly-revenue-by-addon")
    # January's TV pack: 10.00 activation + 20.32 prorated fee = 3032 minor units.
    assert any("3032" in str(a.data) and "ADD_TV" in str(a.data) for a in revenue)
