"""The Prefect API app of a command's temporary server: Prefect's own routers, models, database
and services, only those a flow run uses.

Prefect's `create_app` builds its whole server (about 30 routers, the UI, Docket's background
worker, seven services) and, on a migrated home, still hashes its settings twice and its block
registry once before it serves. A billrun command's server lives for one command and serves one
client, billrun's own flows, which use a handful of routes (docs/RUNS.md, "Start-up"): creating
flows and flow runs, their states, task runs, logs, and the events websocket through which the
client reports task runs (the task run recorder turns those events into task runs and states).

So this app mounts Prefect's routers for those, in the order a flow run first reaches them (FastAPI
builds an included router's routes when a request first walks past it), with Prefect's exception
handlers, its minimum-version check, its SQLite request limit, and runs two of Prefect's
services: the task run recorder and the event persister. Everything else of Prefect's server
(the UI, the scheduler, automations, work pools, deployments) is left out: `billrun serve`, and
a first start that migrates a new home, use Prefect's full app (flows/prefect_server.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

# Prefect's API routers, by module of prefect.server.api, in the order a flow run first reaches
# them (the client's CSRF probe, the server's default result storage, its flow and flow run,
# the events websocket, logs, artifacts), then the ones it may reach (task runs read back,
# states, concurrency limits, variables, blocks): FastAPI builds an included router's routes the
# first time a request walks past it, so a router placed after every one a run uses is never
# built.
ROUTERS = (
    "csrf_token", "admin", "flows", "flow_runs", "events", "logs", "artifacts", "task_runs",
    "flow_run_states", "task_run_states", "concurrency_limits_v2", "concurrency_limits",
    "variables", "block_types", "block_documents", "block_schemas", "block_capabilities",
)


def create_app() -> Any:
    """The FastAPI app: Prefect's API under /api, with a health check, and its services."""
    import importlib

    import prefect
    import sqlalchemy as sa
    from fastapi import Depends, FastAPI
    from fastapi.exceptions import RequestValidationError
    from prefect.server.api.dependencies import EnforceMinimumAPIVersion
    from prefect.server.exceptions import ObjectNotFoundError

    api = FastAPI(
        title="Prefect REST API",
        version=prefect.__version__,
        exception_handlers={
            Exception: _internal_error,
            RequestValidationError: _invalid_request,
            sa.exc.IntegrityError: _integrity_error,
            ObjectNotFoundError: _not_found,
        },
    )

    @api.get("/health", tags=["Root"])
    async def health_check() -> bool:
        return True

    # Prefect's own check: clients older than its API's minimum version are refused.
    minimum = EnforceMinimumAPIVersion(minimum_api_version="0.8.0", logger=_logger())
    for name in ROUTERS:
        module = importlib.import_module(f"prefect.server.api.{name}")
        api.include_router(module.router, dependencies=[Depends(minimum)])

    _log_to_stderr()
    app = FastAPI(title="Prefect Server", version=prefect.__version__, lifespan=_lifespan)
    # As Prefect does on SQLite (the only database this app serves: flows/prefect_env.py picks
    # Prefect's whole server for a database URL of the user's own): at most 100 requests at
    # once, fewer concurrent writes.
    app.add_middleware(_RequestLimit, limit=100)
    app.mount("/api", app=api, name="api")
    return app


def _log_to_stderr() -> None:
    """The server's warnings and errors on stderr (the server's log), at Prefect's default
    server level, without Prefect's whole logging set-up (its settings are serialized for it)."""
    import logging

    server = logging.getLogger("prefect.server")
    if any(getattr(h, "billrun", False) for h in server.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - "
                                           "%(message)s"))
    handler.billrun = True  # type: ignore[attr-defined]
    server.addHandler(handler)
    server.setLevel(logging.WARNING)


def _logger() -> Any:
    from prefect.logging import get_logger

    return get_logger("server")


# Prefect's exception handlers and request limit, as prefect/server/api/server.py (prefect
# 3.8.8, pinned) defines them: importing that module would import the whole server again.


def _retryable(exc: Exception) -> bool:
    """A database error the client retries on (503): SQLite busy or locked, a lost connection."""
    import sqlite3

    import sqlalchemy as sa
    import sqlalchemy.orm.exc

    if isinstance(exc, sa.exc.OperationalError) and isinstance(exc.orig, sqlite3.OperationalError):
        return getattr(exc.orig, "sqlite_errorname", None) in {
            "SQLITE_BUSY", "SQLITE_BUSY_SNAPSHOT",
        } or "database is locked" in getattr(exc.orig, "args", [])
    return isinstance(exc, sa.exc.DBAPIError | sa.exc.InvalidRequestError
                      | sqlalchemy.orm.exc.DetachedInstanceError)


async def _internal_error(request: Any, exc: Exception) -> Any:
    from fastapi.responses import JSONResponse

    if _retryable(exc):
        return JSONResponse(content={"exception_message": "Service Unavailable"},
                            status_code=503)
    _logger().error("Encountered exception in request:", exc_info=True)
    return JSONResponse(content={"exception_message": "Internal Server Error"},
                        status_code=500)


async def _invalid_request(request: Any, exc: Any) -> Any:
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=422, content=jsonable_encoder({
        "exception_message": "Invalid request received.",
        "exception_detail": exc.errors(),
        "request_body": exc.body,
    }))


async def _integrity_error(request: Any, exc: Exception) -> Any:
    from fastapi.responses import JSONResponse

    _logger().error("Encountered exception in request:", exc_info=True)
    return JSONResponse(status_code=409, content={"detail": (
        "Data integrity conflict. This usually means a unique or foreign key constraint was "
        "violated. See server logs for details."
    )})


async def _not_found(request: Any, exc: Exception) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(content={"exception_message": str(exc)}, status_code=404)


class _RequestLimit:
    """At most `limit` requests handled at once (Prefect's RequestLimitMiddleware)."""

    def __init__(self, app: Any, limit: float) -> None:
        import anyio

        self.app = app
        self._limiter = anyio.CapacityLimiter(limit)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with self._limiter:
            await self.app(scope, receive, send)


def _services() -> list[Any]:
    """The services a flow run needs: task runs and their states are recorded from the
    client's events, and the events themselves are stored (as Prefect's own server does)."""
    from prefect.server.events.services.event_persister import EventPersister
    from prefect.server.services.task_run_recorder import TaskRunRecorder

    return [service for service in (TaskRunRecorder, EventPersister) if service.enabled()]


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:  # noqa: ARG001
    """Start the services before serving; at shutdown, stop them, so that the recorder writes
    the last task run states it holds."""
    running = {}
    for service_class in _services():
        service = service_class()
        running[service] = asyncio.create_task(service.start())
    try:
        yield
    finally:
        await asyncio.gather(*(service.stop() for service in running))
        await asyncio.gather(*running.values(), return_exceptions=True)
