"""The durable_rules adapter: one host, rulesets registered once, bounded sessions, loud guards.

Rule actions never compute: they call `conclude`, which records one verdict for the matched
situation. `judge` asserts the catalog facts and then the situation facts of one concern in
sessions of bounded size, collects the verdicts, deletes each session, and checks that every
situation got the verdicts its concern expects. Any engine failure mode raises RulesEngineError.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import polars as pl
from durable import engine as dr_engine
from durable import lang

# Live facts per session stay far below ~100k, where durable_rules' message index starts to drop
# distinct facts on hash collisions (upstream issue #376).
MAX_FACTS_PER_SESSION = 20_000
MAX_SITUATIONS_PER_SESSION = 10_000

VERDICT_SCHEMA = {"situation": pl.Utf8, "rule": pl.Utf8, "outcome": pl.Utf8, "reason": pl.Utf8}

Fact = dict[str, Any]
Expectation = Literal["one", "pass_or_failures"]


class RulesEngineError(RuntimeError):
    """The rules engine failed, or a concern's verdicts are missing, duplicated or inconsistent."""


class _SyncHost(dr_engine.Host):
    """A durable_rules host without background dispatch threads: every action runs inside assert.

    The stock host polls every ruleset from timer threads; such a thread could take an action of
    our session between an assert and our read of the verdicts. Here nothing runs behind our back.
    """

    def _run(self) -> None:
        return None


_LOCK = threading.RLock()
_HOST: _SyncHost | None = None
_VERDICTS: dict[str, list[dict[str, str]]] = {}
_SESSIONS = itertools.count()
# Work done by the engine in this process, for benchmarks: sessions, facts, situations, seconds.
STATS: dict[str, float] = {"sessions": 0, "facts": 0, "situations": 0, "seconds": 0.0}


def reset_stats() -> None:
    """Zero the engine work counters."""
    STATS.update(sessions=0, facts=0, situations=0, seconds=0.0)


def host() -> _SyncHost:
    """The process-wide host that holds billrun's rulesets (created on first use)."""
    global _HOST
    with _LOCK:
        if _HOST is None:
            _HOST = _SyncHost()
        return _HOST


def declare(name: str, build: Callable[[], None]) -> None:
    """Register ruleset `name` once per process; `build` declares its rules with durable.lang."""
    with _LOCK:
        registry = host()._ruleset_directory
        if name in registry:
            return
        build()
        # durable.lang keeps top-level rulesets in a global dict that `get_host()` would register
        # again in its own host; take ours out so only this host ever holds it.
        declared = lang._rulesets.pop(name, None)
        if declared is None:
            raise RulesEngineError(f"ruleset {name!r} was not declared by its build function")
        full_name, definition = declared.define()
        host().register_rulesets({full_name: definition})


def registered(name: str) -> bool:
    """True when ruleset `name` is registered in this process."""
    return name in host()._ruleset_directory


def conclude(c: Any, rule: str, outcome: str, reason: str, detail: str = "") -> None:
    """Record, from inside a rule action, the verdict of `rule` on the matched situation `c.sit`.

    `reason` may hold `{detail}`; verdicts of one rule that fire more than once for a situation
    (once per piece of evidence) are merged and their details listed there.
    """
    _VERDICTS[c.s.sid].append(
        {
            "situation": c.sit.id,
            "rule": rule,
            "outcome": outcome,
            "reason": reason,
            "detail": detail,
        }
    )


def _assert(ruleset: str, facts: list[Fact]) -> None:
    """Assert facts as one batch, turning the engine's exceptions into RulesEngineError."""
    if not facts:
        return  # durable_rules 2.0.28 crashes the process (segfault) on an empty batch
    try:
        host().assert_facts(ruleset, facts)
    except dr_engine.MessageNotHandledException as exc:
        raise RulesEngineError(f"{ruleset}: a fact matches no rule: {exc.message[:500]}") from exc
    except dr_engine.MessageObservedException as exc:
        raise RulesEngineError(
            f"{ruleset}: a fact was asserted twice: {exc.message[:500]}"
        ) from exc


def _session(ruleset: str, catalog: Sequence[Fact], chunk: Sequence[Fact]) -> list[dict[str, str]]:
    """Run one session: catalog facts, then situation facts; return its verdicts and delete it."""
    sid = f"{ruleset}-{next(_SESSIONS)}"
    _VERDICTS[sid] = []
    try:
        _assert(ruleset, [{**fact, "sid": sid} for fact in catalog])
        _assert(ruleset, [{**fact, "sid": sid} for fact in chunk])
        state = host().get_state(ruleset, sid)
        if "exception" in state:
            raise RulesEngineError(f"{ruleset}: a rule action failed: {state['exception']}")
        _check_held(ruleset, sid, catalog, chunk)
        return _VERDICTS[sid]
    finally:
        _VERDICTS.pop(sid, None)
        # A session whose first assert failed may have no state to delete.
        with contextlib.suppress(Exception):
            host().delete_state(ruleset, sid)


def _check_held(
    ruleset: str, sid: str, catalog: Sequence[Fact], chunk: Sequence[Fact]
) -> None:
    """Fail unless the session holds every fact asserted into it.

    A catalog fact dropped silently (upstream #376) would turn into a wrong verdict, not a
    missing one, so the session's facts are read back and counted.
    """
    held = {str(f.get("id")) for f in host().get_facts(ruleset, sid)}
    lost = [str(f["id"]) for f in (*catalog, *chunk) if str(f["id"]) not in held]
    if lost:
        raise RulesEngineError(
            f"{ruleset}: the engine dropped {len(lost)} asserted fact(s), e.g. {lost[:3]}"
        )


def _merge(rows: list[dict[str, str]]) -> pl.DataFrame:
    """One row per (situation, rule, outcome, reason), with the details of repeated firings."""
    if not rows:
        return pl.DataFrame(schema=VERDICT_SCHEMA)
    keys = ["situation", "rule", "outcome", "reason"]
    return (
        pl.DataFrame(rows, schema={**VERDICT_SCHEMA, "detail": pl.Utf8})
        .group_by(keys)
        .agg(pl.col("detail").unique().sort().str.join(", "))
        .with_columns(pl.col("reason").str.replace_all("{detail}", pl.col("detail"), literal=True))
        .select(keys)
        .sort(keys)
    )


def _check(
    ruleset: str, verdicts: pl.DataFrame, situation_ids: list[str], expect: Expectation,
    pass_outcome: str,
) -> None:
    """Fail loudly unless every situation got exactly the verdicts its concern expects."""
    per = verdicts.group_by("situation").agg(
        pl.col("rule").n_unique().alias("rules"),
        (pl.col("outcome") == pass_outcome).sum().alias("passes"),
        pl.len().alias("verdicts"),
        pl.col("rule").unique().sort().str.join(" | ").alias("which"),
    )
    expected = pl.DataFrame({"situation": situation_ids}, schema={"situation": pl.Utf8})
    missing = expected.join(per, on="situation", how="anti")
    unknown = per.join(expected, on="situation", how="anti")
    if expect == "one":
        bad = per.filter((pl.col("rules") != 1) | (pl.col("verdicts") != 1))
    else:
        bad = per.filter((pl.col("passes") > 0) & (pl.col("verdicts") != 1))
    problems = []
    if missing.height:
        problems.append(f"{missing.height} situation(s) got no verdict, e.g. {missing.row(0)}")
    if unknown.height:
        problems.append(f"{unknown.height} verdict(s) name no asserted situation")
    if bad.height:
        problems.append(f"{bad.height} situation(s) got conflicting verdicts, e.g. {bad.row(0)}")
    if problems:
        raise RulesEngineError(f"{ruleset}: " + "; ".join(problems))


def judge(
    ruleset: str,
    catalog: Sequence[Fact],
    situations: Sequence[Fact],
    expect: Expectation = "one",
    pass_outcome: str = "",
) -> pl.DataFrame:
    """Judge situation facts against catalog facts; one row per verdict: situation, rule, ...

    Every situation fact needs a unique string `id`. `expect="one"`: each situation gets exactly
    one verdict. `expect="pass_or_failures"`: one `pass_outcome` verdict, or only failures.
    """
    if not registered(ruleset):
        raise RulesEngineError(f"ruleset {ruleset!r} is not registered")
    ids = [str(s["id"]) for s in situations]
    if len(set(ids)) != len(ids):
        raise RulesEngineError(f"{ruleset}: situation ids are not unique")
    # Room for the catalog and for facts the rules derive from it (a few per catalog fact).
    per_session = max(1, min(MAX_SITUATIONS_PER_SESSION, MAX_FACTS_PER_SESSION - 4 * len(catalog)))
    rows: list[dict[str, str]] = []
    began = time.perf_counter()
    with _LOCK:
        for start in range(0, len(situations), per_session):
            chunk = situations[start : start + per_session]
            rows += _session(ruleset, catalog, chunk)
            STATS["sessions"] += 1
            STATS["facts"] += len(catalog) + len(chunk)
        STATS["situations"] += len(situations)
        STATS["seconds"] += time.perf_counter() - began
    verdicts = _merge(rows)
    _check(ruleset, verdicts, ids, expect, pass_outcome)
    return verdicts


def facts(frame: pl.DataFrame, kind: str) -> list[Fact]:
    """Situation facts from a frame of distinct situations (its `situation` column is the id)."""
    return [
        {"kind": kind, "id": row.pop("situation"), **row}
        for row in frame.to_dicts()
    ]
