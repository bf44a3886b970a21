"""The house (docs/ARCHITECTURE.md): each layer imports only the layers below it, and the pure
core (`pipeline/`, `rules/`) touches no database, no orchestrator, no file, no clock.

Read from the source (AST), so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "rules", "billing", "store", "report", "flows", "billrun", "data")
# What each first-party package may import (itself included). No arrow runs back up.
MAY_IMPORT: dict[str, set[str]] = {
    # The charges never see the rules: the billing floor composes them (checked below).
    "pipeline": {"pipeline"},
    "rules": {"rules", "pipeline"},
    # `bill` composes the rules and the charges, on a floor above both.
    "billing": {"billing", "rules", "pipeline"},
    "store": {"store", "pipeline"},
    "data": {"data", "pipeline"},
    # The run report reads the analyst copy and renders it: beside the store, below the flows.
    "report": {"report", "store", "pipeline"},
    "flows": {"flows", "report", "store", "billing", "pipeline", "rules"},
    "billrun": {"billrun", "flows", "report", "store", "billing", "pipeline", "rules", "data"},
}
PURE = ("pipeline", "rules", "billing")
# Third-party packages and first-party layers the pure core never imports.
IMPURE_IMPORTS = {"duckdb", "prefect", "store", "report", "flows", "billrun", "data", "pyarrow"}
CLOCK_CALLS = {"now", "today", "utcnow"}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports (absolute imports only: the house has no
    relative ones)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _clock_calls(path: Path) -> list[str]:
    """`x.now()`, `x.today()`, `x.utcnow()` and bare `now()`/`today()` calls in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in CLOCK_CALLS:
                found.append(f"{path.name}:{node.lineno} {ast.unparse(func)}()")
    return found


@pytest.mark.parametrize("package", PURE)
def test_the_pure_core_imports_no_store_orchestrator_or_app(package: str) -> None:
    bad = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & IMPURE_IMPORTS)
        for path in _modules(package)
        if _imports(path) & IMPURE_IMPORTS
    }
    assert bad == {}


@pytest.mark.parametrize("package", PURE)
def test_the_pure_core_never_reads_the_clock(package: str) -> None:
    calls = [call for path in _modules(package) for call in _clock_calls(path)]
    assert calls == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_runs_back_up_the_house(package: str) -> None:
    first_party = set(PACKAGES)
    bad = {
        str(path.relative_to(ROOT)): sorted((_imports(path) & first_party) - MAY_IMPORT[package])
        for path in _modules(package)
        if (_imports(path) & first_party) - MAY_IMPORT[package]
    }
    assert bad == {}


def test_only_the_billing_floor_joins_the_rules_to_the_charges() -> None:
    """No module of pipeline/ imports rules/, and neither imports billing/ back: `bill`
    composes them from the floor above, so no arrow runs back up and there is no cycle."""
    for package in ("pipeline", "rules"):
        for path in _modules(package):
            imported = _imports(path)
            assert "billing" not in imported, path.name
            if package == "pipeline":
                assert "rules" not in imported, path.name


def test_the_checks_see_an_arrow_up_and_a_clock(tmp_path: Path) -> None:
    """The checks themselves work: a module that imports the store and reads the clock fails."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import store.raw\nfrom datetime import date, datetime\n"
        "def f():\n    from flows import coordinator\n    return datetime.now(), date.today()\n"
    )
    assert _imports(probe) & IMPURE_IMPORTS == {"store", "flows"}
    assert _clock_calls(probe) == ["probe.py:5 datetime.now()", "probe.py:5 date.today()"]


def test_no_flow_module_shadows_a_top_level_package() -> None:
    # Prefect loads a deployment's flow from its file with flows/ on sys.path (billrun serve):
    # a flows/X.py named like a top-level package X would shadow it in the flow-run process.
    flow_modules = {path.stem for path in (ROOT / "flows").glob("*.py")}
    assert flow_modules & set(PACKAGES) == set()
