"""The durable_rules adapter: registration once per process, sessions, and its loud guards."""

from __future__ import annotations

import importlib

import polars as pl
import pytest
from durable import lang
from durable.engine import Closure
from durable.lang import c, m, ruleset, when_all
from rules_cases import account, accounts_frame, assignment, assignments_frame, sample_catalog

import rules.eligibility
from rules import decide, engine
from rules.engine import RulesEngineError, conclude

GUARDS = "billrun_test_guards"


def _declare_guards() -> None:
    """A throw-away ruleset whose rules misbehave on purpose."""
    with ruleset(GUARDS):

        @when_all(c.sit << (m.kind == "probe") & (m.mode == "ok"))
        def answers_once(c: Closure) -> None:
            """Answers its situation once."""
            conclude(c, "answers", "ok", "fine")

        @when_all(c.sit << (m.kind == "probe") & (m.mode == "twice"))
        def answers_twice(c: Closure) -> None:
            """Answers its situation twice, differently."""
            conclude(c, "first answer", "ok", "one")
            conclude(c, "second answer", "ok", "two")

        @when_all(c.sit << (m.kind == "probe") & (m.mode == "silent"))
        def stays_silent(c: Closure) -> None:
            """Matches and concludes nothing."""

        @when_all(c.sit << (m.kind == "probe") & (m.mode == "boom"))
        def fails(c: Closure) -> None:
            """Raises inside the action (durable_rules only records it in s.exception)."""
            raise ValueError("boom")


engine.declare(GUARDS, _declare_guards)


def probe(n: int, mode: str) -> dict:
    """A probe situation fact."""
    return {"kind": "probe", "id": f"p{n}", "mode": mode}


def test_rulesets_register_once_and_stay_out_of_the_global_registry():
    before = dict(engine.host()._ruleset_directory)
    engine.declare(rules.eligibility.NAME, rules.eligibility._declare)
    importlib.reload(rules.eligibility)
    assert engine.host()._ruleset_directory == before
    assert not set(lang._rulesets) & {"billrun_eligibility", "billrun_conflicts",
                                      "billrun_lifecycle", GUARDS}


def test_one_verdict_per_situation_is_returned():
    verdicts = engine.judge(GUARDS, [], [probe(1, "ok"), probe(2, "ok")])
    assert verdicts.rows() == [("p1", "answers", "ok", "fine"), ("p2", "answers", "ok", "fine")]


@pytest.mark.parametrize(
    ("situations", "message"),
    [
        ([probe(1, "ok"), probe(2, "silent")], "1 situation\\(s\\) got no verdict"),
        ([probe(1, "twice")], "conflicting verdicts"),
        ([probe(1, "boom")], "a rule action failed: .*boom"),
        ([{"kind": "unknown", "id": "x"}], "a fact matches no rule"),
        ([probe(1, "ok"), probe(1, "ok")], "situation ids are not unique"),
    ],
    ids=["missing", "conflicting", "action-exception", "not-handled", "duplicate-id"],
)
def test_engine_failure_modes_raise(situations, message):
    with pytest.raises(RulesEngineError, match=message):
        engine.judge(GUARDS, [], situations)


def test_a_fact_asserted_twice_in_a_session_raises():
    with pytest.raises(RulesEngineError, match="asserted twice"):
        engine.judge(GUARDS, [probe(9, "ok"), probe(9, "ok")], [probe(1, "ok")])


def test_an_unregistered_ruleset_is_refused():
    with pytest.raises(RulesEngineError, match="not registered"):
        engine.judge("no_such_ruleset", [], [probe(1, "ok")])


def test_sessions_are_chunked_and_give_the_same_verdicts(monkeypatch):
    catalog = sample_catalog()
    accounts = accounts_frame([account(f"A{i}", product=p, currency=cur)
                               for i, (p, cur) in enumerate(
                                   [("MP_BASIC", "USD"), ("MP_PLUS", "EUR"), ("MP_BIZ", "USD")])])
    assignments = assignments_frame([
        assignment(f"S{i}", addon, plan, f"2026-03-{1 + i % 20:02d}", account_id=f"A{i % 3}")
        for i, (addon, plan) in enumerate(
            [(a.id, p) for a in catalog.addons for p in ("V1", "TV1", "TV1E", "SEAT1", None)])
    ])
    whole = decide(catalog, accounts, assignments, ["2026-03"], "replace")
    engine.reset_stats()
    monkeypatch.setattr(engine, "MAX_SITUATIONS_PER_SESSION", 3)
    chunked = decide(catalog, accounts, assignments, ["2026-03"], "replace")
    assert engine.STATS["sessions"] >= engine.STATS["situations"] / 3 > 4
    assert chunked.decisions.equals(whole.decisions)
    assert chunked.lifecycles.equals(whole.lifecycles)


def test_no_session_is_left_behind():
    catalog = sample_catalog()
    decide(catalog, accounts_frame([account()]),
           assignments_frame([assignment("S1", "ADD_TV", "TV1", "2026-03-02")]),
           ["2026-03"], "replace")
    assert engine._VERDICTS == {}
    last = f"{rules.eligibility.NAME}-{next(engine._SESSIONS) - 1}"
    with pytest.raises(Exception):  # noqa: B017 - durable_rules raises its own error type
        engine.host().get_state(rules.eligibility.NAME, last)


def test_empty_inputs_give_empty_typed_results():
    result = decide(sample_catalog(), accounts_frame([]), assignments_frame([]), ["2026-03"],
                    "replace")
    assert result.decisions.height == 0 and result.lifecycles.height == 0
    assert result.decisions.schema == pl.Schema(
        {"assignment_id": pl.Utf8, "account_id": pl.Utf8, "period": pl.Utf8, "rule": pl.Utf8,
         "outcome": pl.Utf8, "reason": pl.Utf8, "effective_start": pl.Date,
         "effective_end": pl.Date})


def test_a_fact_the_engine_drops_silently_fails_the_run(monkeypatch):
    real = engine.host().get_facts

    def forgetful(ruleset: str, sid: str) -> list[dict]:
        return [f for f in real(ruleset, sid) if f.get("id") != "p2"]

    monkeypatch.setattr(engine.host(), "get_facts", forgetful)
    with pytest.raises(RulesEngineError, match="dropped 1 asserted fact"):
        engine.judge(GUARDS, [], [probe(1, "ok"), probe(2, "ok")])
