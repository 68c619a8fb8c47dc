"""The FastAPI application: health, devices, refusals, metrics (and the routers of other parts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import console
from hub.api import alarms as alarm_routes
from hub.api import auth, events
from hub.api import patrol as patrol_routes
from hub.runtime import Hub


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def create_app(hub: Hub, *, stop_hub_on_shutdown: bool = False) -> FastAPI:
    """Build the API for a hub; optionally stop the hub when the server shuts down."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if stop_hub_on_shutdown:
            # uvicorn re-raises SIGTERM after shutdown: stop here, while we still can.
            hub.stop()

    app = FastAPI(title="Safety hub", version="0.1.0", lifespan=lifespan)
    app.state.hub = hub
    app.state.alarms = hub.alarms
    auth.install(app.state, hub.settings.api_tokens)
    app.include_router(alarm_routes.router)
    app.include_router(patrol_routes.router)  # rounds, hazards, KPIs, reports (hub/patrol)
    events.install(app, hub)  # GET /api/events: live alarm and device updates (SSE)
    from hub.api import notify as notify_routes

    notify_routes.install(app, hub.notify)  # silences, duty; notifications of an alarm
    app.state.notify_standin = hub.extensions.get("notify_standin")  # hub demo only
    console.install(app)  # the duty console at /, /alarms/{id}; GET /api/me
    read = [Depends(auth.viewer)]

    @app.get("/api/health")
    def health(request: Request) -> JSONResponse:
        """Broker, store, spool depth; 200 when all is well, 503 when degraded."""
        body = _hub(request).health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/api/devices", dependencies=read)
    def devices(
        request: Request,
        site: str | None = None,
        kind: str | None = None,
        model: str | None = None,
        online: bool | None = None,
        limit: int = Query(1000, ge=1, le=100_000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """Registered and seen devices with their state; ``site=unassigned`` lists strangers."""
        states = _hub(request).states
        items = []
        for device_id in states.device_ids():
            view = states.describe(device_id)
            if view is None:
                continue
            if site is not None and view.get("site") != site:
                continue
            if kind is not None and view.get("kind") != kind:
                continue
            if model is not None and view.get("model") != model:
                continue
            if online is not None and view.get("online") is not online:
                continue
            items.append(view)
        return {"total": len(items), "items": items[offset : offset + limit]}

    @app.get("/api/devices/{device_id}", dependencies=read)
    def device(request: Request, device_id: str) -> dict[str, Any]:
        """One device: latest normalized values, online, last seen."""
        view = _hub(request).states.describe(device_id)
        if view is None:
            raise HTTPException(404, f"unknown device {device_id!r}")
        return view

    @app.get("/api/refusals", dependencies=read)
    def refusals(
        request: Request, reason: str | None = None, limit: int = Query(100, ge=1, le=5000)
    ) -> dict[str, Any]:
        """The newest refused messages with their reasons, and counts per reason."""
        log = _hub(request).refusals
        return {"counts": log.counts(), "items": log.recent(limit, reason)}

    @app.get("/api/dead-letters", dependencies=read)
    def dead_letters(request: Request, limit: int = Query(100, ge=1, le=5000)) -> dict[str, Any]:
        """Points the store refused for good, with its reason."""
        return {"items": _hub(request).dead_letters.recent(limit)}

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
