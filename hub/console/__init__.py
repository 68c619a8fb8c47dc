"""The duty console: pages, htmx partials and static files served by the hub's API."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from hub.console.routes import INTERNAL_BASE, STATIC_DIR, router


class _QuietInProcessCalls(logging.Filter):
    """Drop httpx's INFO line for each in-process API call of a console partial."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record except those about the in-process base URL."""
        return INTERNAL_BASE not in record.getMessage()


def install(app: FastAPI) -> None:
    """Mount the console (``/``, ``/alarms/{id}``, ``/console/...``)."""
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _QuietInProcessCalls) for f in httpx_log.filters):
        httpx_log.addFilter(_QuietInProcessCalls())
