"""Named points where a test can freeze a real run, to kill it there with SIGKILL.

Inert unless `BILLRUN_PAUSE_AT` names the point: the process then writes `<point>` to the file
named by `BILLRUN_PAUSE_MARKER` and sleeps until it is killed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def checkpoint(point: str) -> None:
    """Freeze here if a test asked to (see module doc); otherwise do nothing."""
    if os.environ.get("BILLRUN_PAUSE_AT") != point:
        return
    marker = os.environ.get("BILLRUN_PAUSE_MARKER")
    if marker:
        Path(marker).write_text(point)
    while True:  # the test kills us here
        time.sleep(1)


def die_once(point: str) -> None:
    """SIGKILL this process at `point`, once per marker file: when `BILLRUN_DIE_AT` names the
    point and the file named by `BILLRUN_DIE_MARKER` does not exist yet, write our pid there
    and die. A cluster test kills a worker in the middle of a unit this way (its reruns find
    the marker and carry on)."""
    if os.environ.get("BILLRUN_DIE_AT") != point:
        return
    marker = Path(os.environ.get("BILLRUN_DIE_MARKER", ""))
    if not marker.name:
        return
    try:
        with marker.open("x") as out:  # exclusive: of two units at once, one dies
            out.write(str(os.getpid()))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
