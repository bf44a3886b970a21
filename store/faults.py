"""Named points where a test can freeze a real run, to kill it there with SIGKILL.

Inert unless `BILLRUN_PAUSE_AT` names the point: the process then writes `<point>` to the file
named by `BILLRUN_PAUSE_MARKER` and sleeps until it is killed.
"""

from __future__ import annotations

import os
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
