"""A tiny progress hook: flows report, the CLI draws (rich); nothing is drawn without a CLI."""

from __future__ import annotations

from collections.abc import Callable

Reporter = Callable[[str, int, int], None]
_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> None:
    """Install (or remove, with None) the function that draws progress."""
    global _reporter
    _reporter = reporter


def advance(what: str, done: int, total: int) -> None:
    """Report that `done` of `total` units of `what` are finished."""
    if _reporter is not None:
        _reporter(what, done, total)
