"""Code that runs inside a LocalCluster's worker processes (imported there by Dask)."""

from __future__ import annotations

import ctypes

from distributed import Worker, WorkerPlugin

PR_SET_PDEATHSIG = 1
SIGKILL = 9


class DieWithParent(WorkerPlugin):
    """The worker process asks Linux to SIGKILL it when its parent (the coordinator) dies.

    Dask's parent-alive pipe already ends a LocalCluster worker whose parent died; the prctl is
    the kernel's own guarantee on top, as flows/prefect_server.py has for the Prefect server."""

    name = "billrun-die-with-parent"

    def setup(self, worker: Worker) -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, SIGKILL)
        except (OSError, AttributeError):
            pass  # not Linux: Dask's pipe still ends the worker
