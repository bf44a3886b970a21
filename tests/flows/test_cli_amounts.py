"""Amounts as people read them, through the real CLI (issue 13 item 3): the run summary,
`explain`, `available_addons.fee_plans` and the Prefect artifacts show each amount at its
currency's precision (USD 2 decimals, JPY none), never the tables' DECIMAL(18,4)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from tests.flows import conftest
from tests.flows.conftest import write_drop

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CATALOG = """
currencies: {USD: 2, JPY: 0}
conflict_policy: replace
main_products:
  - {id: MP, name: Basic, available_addons: [ADD_TV, ADD_FILM]}
addons:
  - {id: ADD_TV, name: TV pack, priority: 10, subscription: SUB_TV}
  - {id: ADD_FILM, name: Films, priority: 20, subscription: SUB_FILM}
subscriptions:
  - id: SUB_TV
    fee_plans:
      - {id: TVJ, term_months: 1, fee: "3224", currency: JPY}
      - {id: TVU, term_months: 1, fee: "137.80", currency: USD}
  - id: SUB_FILM
    fee_plans:
      - {id: FJ1, term_months: 1, fee: "1500", currency: JPY}
      - {id: FJ12, term_months: 12, fee: "15000", currency: JPY}
      - {id: FU1, term_months: 1, fee: "30", currency: USD}
"""
ACCOUNTS = conftest.ACCOUNTS.splitlines()[0] + """
J1,JPY,MP,1,active,2026-01-01,,
U1,USD,MP,1,active,2026-01-01,,
"""
ASSIGNMENTS = conftest.ASSIGNMENTS.splitlines()[0] + """
AJ,J1,ADD_TV,TVJ,2026-01-01,,2025-12-30 10:00:00,1
AU,U1,ADD_TV,TVU,2026-01-01,,2025-12-30 10:00:00,1
"""
# An amount printed at the tables' 4 decimals, or JPY with decimals: what must never show.
TABLE_PRECISION = re.compile(r"\d\.\d{4}\b(?! ?%)|\d\.\d+ JPY")


def billrun(*args: str) -> str:
    done = subprocess.run(
        [str(BIN / "billrun"), *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("amounts")
    drop = write_drop(tmp / "drop", catalog=CATALOG, accounts=ACCOUNTS, assignments=ASSIGNMENTS)
    path = tmp / "billrun.duckdb"
    billrun("load", str(drop), "--db", str(path))
    return path


def test_summary_explain_and_fee_plans_at_each_currency_precision(db: Path) -> None:
    out = billrun("nightly", "--as-of", "2026-02-01", "--db", str(db))
    # January (final) and February (draft), a whole month each: JPY 3,224 x 2 = 6,448;
    # USD 137.80 x 2 = 275.60.
    assert "2 totalling 6,448 JPY" in out
    assert "2 totalling 275.60 USD" in out

    jpy = billrun("explain", "--account", "J1", "--period", "2026-01", "--db", str(db))
    assert "Invoice J1 2026-01: 3,224 JPY (final" in jpy
    assert "Sum of lines: 3,224 = invoice total 3,224" in jpy
    usd = billrun("explain", "--account", "U1", "--period", "2026-01", "--db", str(db))
    assert "Invoice U1 2026-01: 137.80 USD (final" in usd
    assert "Sum of lines: 137.80 = invoice total 137.80" in usd

    plans = billrun(
        "sql", "--db", str(db),
        "SELECT account_id || ': ' || fee_plans AS p FROM available_addons ORDER BY ALL",
    )
    # Each account is offered the films add-on it does not hold, in its own currency.
    assert "J1: FJ1 (1 mo 1,500 JPY), FJ12 (12 mo 15,000 JPY)" in plans
    assert "U1: FU1 (1 mo 30.00 USD)" in plans

    for text in (out, jpy, usd, plans):
        assert not TABLE_PRECISION.search(text), TABLE_PRECISION.search(text)


def test_prefect_artifacts_show_amounts_at_currency_precision(db: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.nightly import nightly_flow

    summary = nightly_flow(as_of=date(2026, 2, 2), db=str(db))
    with get_client(sync_client=True) as client:
        found = {
            key: [
                a for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
                )
                if summary.run_id in str(a.data) or key.endswith("addon")
            ]
            for key in ("nightly-summary", "nightly-revenue-by-addon")
        }
    summary_text = str(found["nightly-summary"][-1].data)
    # This run redrafts February only: one invoice per currency.
    assert "1 totalling 3,224 JPY" in summary_text and "1 totalling 137.80 USD" in summary_text
    revenue = " ".join(str(a.data) for a in found["nightly-revenue-by-addon"])
    assert "3,224 JPY" in revenue and "137.80 USD" in revenue
