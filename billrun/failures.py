"""Release what a failed run's exception keeps alive, before the interpreter exits.

A caught exception's traceback holds every frame it passed through, and with them their locals:
DuckDB connections, Polars frames, durable_rules hosts. Prefect keeps the exception in the flow
run's final state, so those objects are still alive when Python shuts down, and nanobind (DuckDB's
binding layer) then prints one `nanobind: leaked ...` line per survivor (its documented
behaviour: https://nanobind.readthedocs.io/en/latest/refleaks.html). Clearing the frames of the
finished traceback drops those references, so the objects are freed at once, while the exception
and its message stay intact for the one-line error.
"""

from __future__ import annotations

import errno
import gc
import re
import traceback
from datetime import datetime
from pathlib import Path

import duckdb


def release(exc: BaseException) -> None:
    """Clear the locals of every finished frame in `exc`'s traceback chain, then collect."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__
    gc.collect()


# A full disk, as the layers below say it: an OSError with ENOSPC (Python, Polars, pyarrow; often
# without a file name) or DuckDB's text, which names the file it could not write (`Could not
# write file "…": No space left on device`).
_NO_SPACE = "No space left on device"
_QUOTED_PATH = re.compile(r'"(/[^"]+)"')
# The step, from the module that met the full disk (the deepest of these in the traceback), else
# from the file's name; and what the failure left behind. Publishing comes after the commit.
_STEPS = (
    ("store/snapshot.py", "publishing"), ("store/parquet_set.py", "publishing"),
    ("flows/run_report.py", "publishing"), ("store/staging.py", "staging the run's files"),
    ("store/results.py", "committing"), ("store/sources.py", "loading"),
    ("store/checks.py", "loading"),
)
_AFTER_COMMIT = ("the run's results are committed; the analyst copy and the Parquet set still "
                 "show the previous run until the next run publishes them")
_BEFORE_COMMIT = "nothing was written; the previous results are whole"


def _step(exc: BaseException, path: str | None) -> str:
    """What the run was doing: the deepest known module of the traceback, else the file."""
    tb, step = exc.__traceback__, None
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        step = next((s for module, s in _STEPS if name.endswith(module)), step)
        tb = tb.tb_next
    if step is None and path is not None:
        step = ("publishing" if ".analyst" in path or path.endswith(".report.html")
                else "staging the run's files" if ".staging" in path
                else "spilling to disk" if path.endswith(".tmp") or ".tmp/" in path
                else "writing the database")
    return step or "writing"


def disk_full(exc: BaseException, committed: bool = False) -> str | None:
    """One line for a failure caused by a full disk, saying where (the file it could not write,
    when known, and the step) and what was kept; None for any other failure. `committed`: the
    run's `runs` row is there (`committed_since`): DuckDB can fail a COMMIT whose log is already
    durable (its checkpoint into the file failed), and the results are then in."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if (isinstance(current, OSError) and current.errno == errno.ENOSPC) or _NO_SPACE in text:
            found = _QUOTED_PATH.search(text)
            path = getattr(current, "filename", None) or (found.group(1) if found else None)
            step = _step(current, None if path is None else str(path))
            kept = _AFTER_COMMIT if committed or step == "publishing" else _BEFORE_COMMIT
            what = f"could not write {path}" if path else _NO_SPACE
            return f"the disk is full: {what} ({step}): {kept}"
        current = current.__cause__ or current.__context__
    return None


def committed_since(db: str | Path, kind: str, since: datetime) -> bool:
    """Whether a `kind` run that started at or after `since` (UTC) is recorded as successful
    in `db`: after a failure, whether its commit went through all the same."""
    try:
        with duckdb.connect(str(db), read_only=True) as con:
            found = con.execute(
                "SELECT count(*) FROM runs WHERE kind = ? AND status = 'success' AND "
                "started_at >= ?", [kind, since]).fetchone()
    except duckdb.Error:
        return False
    return bool(found and found[0])
