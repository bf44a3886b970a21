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

import gc
import traceback


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
