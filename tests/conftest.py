"""Shared fixtures: one throw-away Prefect home per test session, and small file helpers."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Prefect reads its settings when it is first imported, which happens while test modules are
# collected: the home must be chosen here, at conftest import, not inside a fixture.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="billrun-test-prefect-"))
os.environ["BILLRUN_PREFECT_HOME"] = str(_PREFECT_HOME)


@pytest.fixture(scope="session", autouse=True)
def prefect_home() -> Iterator[Path]:
    """The session's Prefect home: its ephemeral server starts once and is reused by every
    flow run of the session."""
    yield _PREFECT_HOME
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


def write_text(folder: Path, name: str, text: str) -> Path:
    """Write dedented `text` to `folder/name` and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def write() -> Callable[[Path, str, str], Path]:
    """The `write_text` helper, as a fixture for test modules."""
    return write_text
