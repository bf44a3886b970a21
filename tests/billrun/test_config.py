"""One configuration (issue 13 item 4), through the CLI: billrun.toml / --config, BILLRUN_* env,
flags; precedence flags > env > file > defaults; `billrun config`; a bad value is exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from billrun import config
from billrun.cli import main

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, and no BILLRUN_* setting inherited from the caller's shell."""
    for key in config.KEYS:
        monkeypatch.delenv(config.env_var(key), raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settings_shown(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, tuple[str, str]]:
    """Run `billrun config ARGV` and read back key -> (value, source) from its output."""
    assert main(["config", *argv]) == 0
    shown = {}
    for line in capsys.readouterr().out.splitlines():
        match = re.match(r"^(?:# )?(\w+)\s+= (.+?)  # (.+)$", line)
        if match:
            shown[match.group(1)] = (match.group(2), match.group(3))
    assert set(shown) == set(config.KEYS)
    return shown


def test_defaults_when_nothing_is_configured(workdir: Path, capsys) -> None:
    shown = settings_shown(capsys)
    assert shown["db"] == ('"billrun.duckdb"', "default")  # SPEC §6: --db defaults to this
    assert shown["cron"] == ('"0 2 * * *"', "default")  # every night at 02:00
    assert shown["as_of_horizon_days"] == ("1", "default")
    # The budget the runs use when nothing sets one, told as the runs use it (issue 21).
    assert shown["memory_gb"] == ("8.0", "default")
    assert shown["grace_days"] == ("(not set)", "default")  # the catalog's finalize_grace_days


def test_file_then_env_then_flag(workdir: Path, capsys, monkeypatch) -> None:
    toml = workdir / "billrun.toml"
    toml.write_text(
        'db = "from-file.duckdb"\ncron = "*/5 * * * *"\nconflict_policy = "reject"\n'
        'memory_gb = 2.5\ncluster = "tcp://10.0.0.5:8786"\nstaging = "stage"\n'
        "as_of_horizon_days = 3\n"
    )
    shown = settings_shown(capsys)
    # Relative paths in the file are relative to the file's folder.
    assert shown["db"] == (f'"{workdir / "from-file.duckdb"}"', f"file {toml}")
    assert shown["staging"] == (f'"{workdir / "stage"}"', f"file {toml}")
    assert shown["cron"] == ('"*/5 * * * *"', f"file {toml}")
    assert shown["memory_gb"] == ("2.5", f"file {toml}")
    assert shown["cluster"] == ('"tcp://10.0.0.5:8786"', f"file {toml}")
    assert shown["as_of_horizon_days"] == ("3", f"file {toml}")

    monkeypatch.setenv("BILLRUN_DB", "from-env.duckdb")
    monkeypatch.setenv("BILLRUN_CONFLICT_POLICY", "replace")
    monkeypatch.setenv("BILLRUN_AS_OF_HORIZON_DAYS", "0")
    shown = settings_shown(capsys)
    assert shown["db"] == ('"from-env.duckdb"', "env BILLRUN_DB")
    assert shown["conflict_policy"] == ('"replace"', "env BILLRUN_CONFLICT_POLICY")
    assert shown["as_of_horizon_days"] == ("0", "env BILLRUN_AS_OF_HORIZON_DAYS")
    assert shown["cron"] == ('"*/5 * * * *"', f"file {toml}")  # untouched by env

    shown = settings_shown(capsys, "--db", "from-flag.duckdb")
    assert shown["db"] == ('"from-flag.duckdb"', "flag --db")
    assert shown["conflict_policy"] == ('"replace"', "env BILLRUN_CONFLICT_POLICY")


def test_config_flag_names_another_file(workdir: Path, capsys) -> None:
    elsewhere = workdir / "etc" / "billing.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text('input = "/srv/drop"\n')
    (workdir / "billrun.toml").write_text('input = "ignored"\n')
    for argv in (["--config", str(elsewhere)], []):  # after the command, or before it
        if argv:
            shown = settings_shown(capsys, *argv)
        else:
            assert main(["--config", str(elsewhere), "config"]) == 0
            out = capsys.readouterr().out
            assert f'"/srv/drop"  # file {elsewhere}' in out
            continue
        assert shown["input"] == ('"/srv/drop"', f"file {elsewhere}")


def test_commands_take_their_defaults_from_the_file(workdir: Path, capsys) -> None:
    (workdir / "billrun.toml").write_text('db = "books/configured.duckdb"\n')
    assert main(["load", str(SAMPLE)]) == 0
    assert (workdir / "books" / "configured.duckdb").is_file()
    assert not (workdir / "billrun.duckdb").exists()


@pytest.mark.parametrize(
    ("file_text", "env", "argv", "named"),
    [
        ("memory_gb = -2\n", {}, [], ["memory_gb", "billrun.toml"]),
        ('memory_gb = "lots"\n', {}, [], ["memory_gb", "billrun.toml"]),
        ('cluster = "no-port"\n', {}, [], ["cluster", "billrun.toml"]),
        ('conflict_policy = "merge"\n', {}, [], ["conflict_policy", "billrun.toml"]),
        ("as_of_horizon_days = 1.5\n", {}, [], ["as_of_horizon_days", "billrun.toml"]),
        ('colour = "blue"\n', {}, [], ["colour", "billrun.toml"]),  # unknown key: a typo
        ("db = \n", {}, [], ["billrun.toml", "TOML"]),  # not TOML at all
        ("", {"BILLRUN_CRON": "61 * * * *"}, [], ["cron", "BILLRUN_CRON"]),
        ("", {"BILLRUN_AS_OF_HORIZON_DAYS": "tomorrow"}, [], ["as_of_horizon_days",
                                                             "BILLRUN_AS_OF_HORIZON_DAYS"]),
        ("", {"BILLRUN_MEMORY_GB": "0"}, [], ["memory_gb", "BILLRUN_MEMORY_GB"]),
        ("", {}, ["--cron", "every night"], ["cron", "--cron"]),
        ("", {}, ["--config", "missing.toml"], ["missing.toml"]),
        ("grace_days = 32\n", {}, [], ["grace_days", "billrun.toml", "0 to 31"]),
        ("grace_days = 1.5\n", {}, [], ["grace_days", "billrun.toml"]),
        ("", {"BILLRUN_GRACE_DAYS": "-1"}, [], ["grace_days", "BILLRUN_GRACE_DAYS", "0 to 31"]),
    ],
)
def test_a_bad_value_is_exit_2_naming_the_key(
    workdir: Path, capsys, monkeypatch, file_text: str, env: dict[str, str], argv: list[str],
    named: list[str],
) -> None:
    if file_text:
        (workdir / "billrun.toml").write_text(file_text)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    command = ["serve", *argv] if "--cron" in argv else ["config", *argv]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for word in named:
        assert word in err


def test_a_bad_file_does_not_stop_commands_that_read_no_setting(
    workdir: Path, capsys
) -> None:
    (workdir / "billrun.toml").write_text("memory_gb = -2\n")
    assert main(["generate", "--accounts", "3", "--out", str(workdir / "gen")]) == 0


def test_grace_days_from_the_file_the_env_or_the_flag(workdir: Path, capsys, monkeypatch) -> None:
    (workdir / "billrun.toml").write_text("grace_days = 3\n")
    assert settings_shown(capsys)["grace_days"] == ("3", f"file {workdir / 'billrun.toml'}")
    monkeypatch.setenv("BILLRUN_GRACE_DAYS", "0")
    assert settings_shown(capsys)["grace_days"] == ("0", "env BILLRUN_GRACE_DAYS")
    resolved = config.load_settings({"grace_days": "31"}, flag_names={"grace_days": "--grace-days"})
    assert (resolved.grace_days, resolved.sources["grace_days"]) == (31, "flag --grace-days")


def test_the_memory_default_is_the_one_the_runs_use(capsys) -> None:
    # One default, told the same way by --help, `billrun config`, CONFIG.md and RUNS.md.
    from billrun.cli import build_parser
    from flows.coordinator import DEFAULT_MEMORY_GB

    assert config.DEFAULT_MEMORY_GB == DEFAULT_MEMORY_GB == 8.0
    nightly = build_parser()._subparsers._group_actions[0].choices["nightly"]  # noqa: SLF001
    assert "(default 8 GB)" in " ".join(nightly.format_help().split())
    docs = Path(__file__).resolve().parents[2] / "docs"
    assert "| `memory_gb` | `8.0` (8 GB) |" in (docs / "CONFIG.md").read_text()
    assert "default 8 GB" in (docs / "RUNS.md").read_text()
