"""The coordinator: output contracts, grain, purity."""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl
import pytest
from rules_cases import account, accounts_frame, assignment, assignments_frame, sample_catalog

from pipeline.periods import account_periods
from rules import RulesResult, decide
from rules.decide import DECISIONS_SCHEMA, LIFECYCLES_SCHEMA

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"


PERIODS = ["2026-02", "2026-03", "2026-04"]


def inputs() -> tuple[pl.DataFrame, pl.DataFrame]:
    """A mixed case: a product change, a closing EUR account, a replacement, a lost competition."""
    accounts = [account("A1"), account("A1", product="MP_BIZ", effective_from="2026-03-10"),
                account("A2", currency="EUR", closed_on="2026-04-02", status="closed")]
    assignments = [
        assignment("S1", "ADD_TV", "TV1", "2026-02-05"),
        assignment("S2", "ADD_VOICE100", "V1", "2026-02-01"),
        assignment("S3", "ADD_VOICE200", "V200_1", "2026-03-05", assigned_at="2026-02-01T00:00"),
        assignment("S4", "ADD_TV", "TV1", "2026-02-05", account_id="A2"),
        assignment("S5", "ADD_SMS", "S1E", "2026-02-05", account_id="A2"),
        assignment("S6", "ADD_SMS", "S1E", "2026-02-07", account_id="A2",
                   assigned_at="2026-01-02T00:00"),
    ]
    return accounts_frame(accounts), assignments_frame(assignments)


@pytest.fixture(scope="module")
def result() -> RulesResult:
    """decide over the mixed case and three periods."""
    return decide(sample_catalog(), *inputs(), PERIODS, "replace")


def test_outputs_follow_the_contract_schemas(result):
    assert result.decisions.schema == pl.Schema(DECISIONS_SCHEMA)
    assert result.lifecycles.schema == pl.Schema(LIFECYCLES_SCHEMA)
    assert result.lifecycles.height == 6 and result.lifecycles["assignment_id"].is_unique().all()


def test_one_decision_row_per_assignment_period_and_rule(result):
    keys = result.decisions.select("assignment_id", "period", "rule")
    assert keys.is_unique().all()
    per = result.decisions.group_by("assignment_id", "period").len()
    assert per.height == 6 * 3  # every assignment is decided in every period


def test_outcomes_stay_in_the_vocabulary(result):
    vocabulary = {"eligible", "ineligible", "replaced", "rejected", "pending", "active",
                  "expired", "locked"}
    assert set(result.decisions["outcome"].unique()) <= vocabulary
    assert result.decisions["reason"].str.contains("{", literal=True).sum() == 0


def test_non_billable_assignments_have_an_empty_life_cycle(result):
    idle = result.lifecycles.filter(~pl.col("billable"))
    assert (idle["eff_end"] == idle["eff_start"]).all()


def test_the_same_inputs_give_the_same_tables(result):
    again = decide(sample_catalog(), *inputs(), PERIODS, "replace")
    assert again.decisions.equals(result.decisions)
    assert again.lifecycles.equals(result.lifecycles)


def test_the_rules_layer_is_pure():
    """No store, no files, no wall clock (the engine's work counter only reads perf_counter)."""
    forbidden = {"duckdb", "prefect", "os", "pathlib", "io"}
    for path in RULES_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module.split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names}
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert not imported & forbidden, path.name
        clocks = {"date.today", "datetime.now", "datetime.today", "time.time", "open"}
        assert not clocks & calls, path.name


def test_active_rows_lie_inside_the_accounts_billing_periods(result):
    accounts, _ = inputs()
    bounds = pl.concat([account_periods(accounts, p) for p in PERIODS])
    rows = result.decisions.filter(pl.col("outcome") == "active").join(
        bounds, on=["account_id", "period"]
    )
    assert rows.height > 0
    assert (rows["effective_start"] >= rows["period_start"]).all()
    assert (rows["effective_end"] <= rows["period_end"]).all()
    assert (rows["effective_start"] < rows["effective_end"]).all()
