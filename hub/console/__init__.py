"""The duty console: pages, htmx partials and static files served by the hub's API."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from hub.console.routes import STATIC_DIR, api_router, router


def install(app: FastAPI) -> None:
    """Mount the console (``/``, ``/alarms/{id}``, ``/console/...``) and ``GET /api/me``."""
    app.include_router(api_router)
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
