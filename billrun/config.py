"""billrun's settings: defaults < `billrun.toml` (or `--config FILE`) < `BILLRUN_*` env < flags.

Read with pydantic-settings: one model declares every key, its type and its check; the three
sources are pydantic-settings sources, so the precedence is the library's, not hand-made. Each
setting also records where its value came from, for `billrun config`. A bad value anywhere is a
`ConfigError` that names the key and its source (the CLI turns it into exit 2).

`memory_gb` (the run's budget: shards and DuckDB's share), `cluster` (flows/cluster.py) and
`staging` (store/staging.py) are passed to `nightly` and `reprocess` (docs/RUNS.md, README);
`late_usage` to `nightly` and `serve` (docs/RUNS.md, "Late usage").
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# SPEC §8.3's bound of a grace period, the catalog's and the setting's
MAX_GRACE_DAYS = 31

CONFIG_FILE = "billrun.toml"
ENV_PREFIX = "BILLRUN_"
DEFAULT_CRON = "0 2 * * *"

# The file being read by the current `load_settings` call (pydantic-settings builds the sources
# from the class, so the path is handed over here rather than through a global).
_toml_file: ContextVar[Path | None] = ContextVar("billrun_toml_file", default=None)

_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIELDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]  # minute hour day month weekday
_CRON_NAMES = [
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
]
_CRON_ITEM = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")


def _cron_value(text: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text.lower()) if not text.isdigit() else int(text)
    if value is None or not low <= value <= high:
        raise ValueError(f"{text!r} is not in {low}-{high}")
    return value


def check_cron(expr: str) -> str:
    """A standard five-field cron expression (or @daily and friends), else ValueError."""
    text = " ".join(expr.split())
    if text.lower() in _CRON_MACROS:
        return text
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(f"{expr!r} is not a cron expression of 5 fields (minute hour day "
                         "month weekday), e.g. '0 2 * * *'")
    for field, (low, high), names in zip(fields, _CRON_FIELDS, _CRON_NAMES, strict=True):
        for item in field.split(","):
            match = _CRON_ITEM.match(item.lower())
            if not match or (match.group(2) is not None and int(match.group(2)) < 1):
                raise ValueError(f"{expr!r}: {field!r} is not a cron field")
            if match.group(1) != "*":
                bounds = [_cron_value(v, low, high, names) for v in match.group(1).split("-")]
                if bounds != sorted(bounds):
                    raise ValueError(f"{expr!r}: range {match.group(1)!r} runs backwards")
    return text


DEFAULT_MEMORY_GB = 8.0


class Settings(BaseSettings):
    """Every setting billrun reads, with its default; see docs/CONFIG.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="ignore",  # other BILLRUN_* variables (e.g. BILLRUN_PREFECT_HOME) are not ours
        validate_default=True,
    )

    db: str = Field("billrun.duckdb", min_length=1, description="the working DuckDB file")
    input: str | None = Field(None, description="drop folder loaded by nightly and serve")
    cron: str = Field(DEFAULT_CRON, description="schedule of `billrun serve`")
    conflict_policy: Literal["replace", "reject"] | None = Field(
        None, description="overrides the catalog's conflict policy"
    )
    # The same 8 GB the runs fall back to (flows.coordinator.DEFAULT_MEMORY_GB; a test checks).
    memory_gb: float = Field(
        DEFAULT_MEMORY_GB, gt=0, le=4096, description="memory budget of a run, in GB"
    )
    cluster: str | None = Field(
        None, description="local:N, or a Dask scheduler address, e.g. tcp://host:8786"
    )
    staging: str | None = Field(None, min_length=1, description="staging folder or URL")
    as_of_horizon_days: int = Field(
        1, ge=0, le=366, description="how many days past today --as-of may be"
    )
    grace_days: int | None = Field(
        None, description="overrides the catalog's finalize_grace_days (SPEC §8.3)"
    )
    # docs/RUNS.md, "Late usage": why the default only reports.
    late_usage: Literal["report", "adjust"] = Field(
        "report", description="what a nightly does with usage that arrives for a final period: "
        "count it (report) or reprocess its period (adjust)"
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # The one parser of cluster specs is the one the runs use (flows/cluster.py).
        from flows.cluster import parse_cluster

        parse_cluster(value)
        return value

    @field_validator("as_of_horizon_days", "grace_days", mode="before")
    @classmethod
    def _whole_days(cls, value: Any) -> Any:
        # TOML 1.5 or "1.5" must not be truncated to 1 silently; booleans are not days.
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError(f"{value!r} is not a whole number of days")
        return value

    @field_validator("grace_days")
    @classmethod
    def _grace_days(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= MAX_GRACE_DAYS:
            raise ValueError(f"{value} is not a number of days from 0 to {MAX_GRACE_DAYS}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init) > environment > the TOML file > defaults; no .env, no secrets dir."""
        toml = _toml_file.get()
        if toml is None:
            return init_settings, env_settings
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml)


KEYS: tuple[str, ...] = tuple(Settings.model_fields)


class ConfigError(ValueError):
    """A configuration file or value billrun cannot use; the message names key and source."""


@dataclass(frozen=True)
class Resolved:
    """The effective settings and, for each key, where its value came from."""

    settings: Settings
    sources: dict[str, str]  # key -> "default" | "file PATH" | "env BILLRUN_X" | "flag --x"
    file: Path | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.settings, name)


def env_var(key: str) -> str:
    """`memory_gb` -> `BILLRUN_MEMORY_GB`."""
    return f"{ENV_PREFIX}{key.upper()}"


def flag(key: str) -> str:
    """`as_of_horizon_days` -> `--as-of-horizon-days` (how `billrun config` names a flag)."""
    return "--" + key.replace("_", "-")


def _read_file(path: Path) -> dict[str, Any]:
    """The TOML file's keys, checked against the known ones, with errors that name the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(KEYS)}"
        )
    return data


def find_file(explicit: str | Path | None, cwd: Path | None = None) -> Path | None:
    """`--config FILE` (which must exist), else `./billrun.toml` if there is one."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"--config {explicit}: no such file")
        return path
    default = (cwd or Path.cwd()) / CONFIG_FILE
    return default if default.is_file() else None


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> Resolved:
    """Resolve every setting from flags (the values given, None = not given), the environment,
    the configuration file and the defaults; raise ConfigError naming the bad key and source."""
    path = find_file(config_file)
    from_file = _read_file(path) if path else {}
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    names = dict(flag_names or {})
    token = _toml_file.set(path)
    try:
        from_env = EnvSettingsSource(Settings)()
        sources = {}
        for key in KEYS:
            if key in given:
                sources[key] = f"flag {names.get(key, flag(key))}"
            elif key in from_env:
                sources[key] = f"env {env_var(key)}"
            elif key in from_file:
                sources[key] = f"file {path}"
            else:
                sources[key] = "default"
        try:
            settings = Settings(**given)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, sources)) from None
    finally:
        _toml_file.reset(token)
    if path is not None:
        settings = _beside_file(settings, sources, path)
    return Resolved(settings=settings, sources=sources, file=path)


_PATH_KEYS = ("db", "input", "staging")


def _beside_file(settings: Settings, sources: dict[str, str], path: Path) -> Settings:
    """Relative paths written in the file are relative to the file's folder, not the cwd, so a
    `--config /srv/billing/billrun.toml` means the same from anywhere."""
    update = {}
    for key in _PATH_KEYS:
        value = getattr(settings, key)
        if sources[key].startswith("file ") and value and "://" not in value:
            if not Path(value).expanduser().is_absolute():
                update[key] = str(path.parent / value)
    return settings.model_copy(update=update) if update else settings


def _explain(
    exc: ValidationError,
    sources: dict[str, str],
) -> str:
    """One line per bad key: where it came from, the value given and what is wrong."""
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        source = sources.get(key, "default")
        value = error.get("input")
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{key} ({source}) = {value!r}: {message}")
    if len(lines) == 1:  # one bad key: one line (README: every failure is one line)
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def render(resolved: Resolved) -> str:
    """The effective settings as TOML, each with its source as a comment (`billrun config`)."""
    width = max(len(k) for k in KEYS)
    lines = [f"# billrun settings (file: {resolved.file or 'none'})"]
    for key in KEYS:
        value = getattr(resolved.settings, key)
        source = resolved.sources[key]
        if value is None:
            lines.append(f"# {key:<{width}} = (not set)  # {source}")
        else:
            lines.append(f"{key:<{width + 2}} = {_toml_value(value)}  # {source}")
    return "\n".join(lines)
