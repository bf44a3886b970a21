"""The billing commands through the CLI entry point (SPEC §6): output and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from billrun.cli import main


@pytest.fixture()
def loaded(scenario: dict[str, Path]) -> Path:
    db = scenario["db"]
    assert main(["load", str(scenario["drop"]), "--db", str(db)]) == 0
    return db


def test_nightly_reprocess_and_explain(loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nightly", "--as-of", "2026-02-01", "--db", str(loaded)]) == 0
    out = capsys.readouterr().out
    assert "billrun nightly" in out and "analyst copy" in out
    assert "invoices USD" in out and "72.32 USD" in out  # 37.32 (Jan, final) + 35.00 (Feb)

    assert main(["reprocess", "--period", "2026-01", "--db", str(loaded)]) == 0
    assert "adjustment lines" in capsys.readouterr().out

    assert main(["explain", "--account", "A1", "--period", "2026-01", "--db", str(loaded)]) == 0
    out = capsys.readouterr().out
    assert "Invoice A1 2026-01" in out and "Decisions" in out and "Discount counters" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["nightly", "--as-of", "2026-13-01"],
        ["nightly"],
        ["reprocess", "--period", "2026-1"],
        ["explain", "--account", "A1", "--period", "January"],
        ["nightly", "--as-of", "2026-02-01", "--conflict-policy", "merge"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], loaded: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--db", str(loaded)])
    assert exit_info.value.code == 2


def test_explain_tells_an_unknown_account_from_one_with_nothing(
    loaded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "--account", "NOPE", "--period", "2026-01", "--db", str(loaded)]) == 2
    err = capsys.readouterr().err
    assert err == "billrun: error: no account NOPE in the database (check --account and --db)\n"

    # A known account with nothing in the period is another message, and exit 1. A1 opened on
    # 2026-01-01: nothing of it in 2025-06.
    assert main(["explain", "--account", "A1", "--period", "2025-06", "--db", str(loaded)]) == 1
    err = capsys.readouterr().err
    assert err == ("billrun: error: account A1 exists, but nothing was billed or decided for it "
                   "in 2025-06\n")
