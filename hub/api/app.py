"""The FastAPI application: health, devices, refusals, metrics (and the routers of other parts)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import console
from hub.accounts.audit import AuditLog
from hub.accounts.store import AccountStore, LoginThrottle
from hub.api import accounts as account_routes
from hub.api import alarms as alarm_routes
from hub.api import auth, events, limits, security
from hub.api import devices as device_routes
from hub.api import patrol as patrol_routes
from hub.api.scope import filter_sites, policy, require_site, sites_of
from hub.cluster import api as cluster_routes
from hub.runtime import Hub

_SITE_TAG = re.compile(r",site=((?:[^,\\ ]|\\.)+)")
SCOPED_SCAN = 5000  # rows a scoped caller's refusals or dead letters are picked from


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _audit_token_changes(log: AuditLog, table: auth.TokenTable) -> None:
    """An audit row when HUB_API_TOKENS differs from the last start (names, never tokens)."""
    fingerprint = table.fingerprint()
    last, _ = log.query(action="config.tokens", limit=1)
    if last and (last[0]["detail"] or {}).get("fingerprint") == fingerprint:
        return
    log.record("config", "config.tokens", target="HUB_API_TOKENS", source="environment",
               detail={"fingerprint": fingerprint,
                       "tokens": [u.public() for u in table.users()]})


def create_app(hub: Hub, *, stop_hub_on_shutdown: bool = False) -> FastAPI:
    """Build the API for a hub; optionally stop the hub when the server shuts down."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if stop_hub_on_shutdown:
            # uvicorn re-raises SIGTERM after shutdown: stop here, while we still can.
            hub.stop()

    settings = hub.settings
    docs_open = settings.api_docs == "open"
    app = FastAPI(title="Safety hub", version="0.1.0", lifespan=lifespan,
                  docs_url="/docs" if docs_open else None,
                  redoc_url="/redoc" if docs_open else None,
                  openapi_url="/openapi.json" if docs_open else None)
    app.state.hub = hub
    app.state.alarms = hub.alarms
    accounts = hub.extensions.get("accounts")
    if not isinstance(accounts, AccountStore):
        accounts = AccountStore(hub.engine, session_ttl_s=settings.session_ttl_s,
                                throttle=LoginThrottle(settings.login_max_failures,
                                                       settings.login_lockout_s,
                                                       settings.login_lockout_s))
        hub.extensions["accounts"] = accounts
    table = auth.install(app.state, settings.api_tokens, accounts)
    unknown = sorted({s for u in table.users() for s in (u.sites or ())} - set(hub.sites.sites))
    if unknown:
        raise ValueError(f"HUB_API_TOKENS names unknown sites {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(hub.sites.sites)) or 'none'})")
    audit_log = hub.extensions.get("audit")
    if not isinstance(audit_log, AuditLog):
        audit_log = hub.extensions["audit"] = AuditLog(hub.engine)
    app.state.audit = audit_log
    _audit_token_changes(audit_log, table)
    security.install(app, settings.api_docs)  # headers; /docs behind a token when asked
    app.include_router(account_routes.router)  # login, logout, me, users, audit
    app.include_router(device_routes.router)  # onboarding: devices and checkpoints
    app.include_router(alarm_routes.router)
    app.include_router(cluster_routes.router)  # GET /api/cluster (hub/cluster)
    app.include_router(patrol_routes.router)  # rounds, hazards, KPIs, reports (hub/patrol)
    events.install(app, hub)  # GET /api/events: live alarm and device updates (SSE)
    from hub.api import notify as notify_routes

    notify_routes.install(app, hub.notify)  # silences, duty; notifications of an alarm
    app.state.notify_standin = hub.extensions.get("notify_standin")  # hub demo only
    console.install(app)  # the duty console at /, /alarms/{id}; GET /api/me
    read = [Depends(auth.viewer)]

    @app.get("/api/health")
    @policy("public")
    def health(request: Request) -> JSONResponse:
        """Broker, store, spool depth; 200 when all is well, 503 when degraded."""
        body = _hub(request).health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/api/devices", dependencies=read)
    @policy("sites")
    def devices(
        request: Request,
        site: str | None = None,
        kind: str | None = None,
        model: str | None = None,
        online: bool | None = None,
        registered: bool | None = None,
        limit: int = Query(1000, ge=1, le=100_000),
        offset: int = Query(0, ge=0, le=limits.MAX_OFFSET),
    ) -> dict[str, Any]:
        """Registered and seen devices with their state; ``site=unassigned`` lists strangers."""
        states = _hub(request).states
        scope = sites_of(request)
        items = []
        ids = list(states.sites.devices) if registered else states.device_ids()
        for device_id in ids:
            view = states.describe(device_id)
            if view is None:
                continue
            if scope is not None and view.get("site") not in scope:
                continue
            if site is not None and view.get("site") != site:
                continue
            if kind is not None and view.get("kind") != kind:
                continue
            if model is not None and view.get("model") != model:
                continue
            if online is not None and view.get("online") is not online:
                continue
            if registered is not None and view.get("registered") is not registered:
                continue
            items.append(view)
        return {"total": len(items), "items": items[offset : offset + limit]}

    @app.get("/api/devices/counts", dependencies=read)
    @policy("sites")
    def device_counts(request: Request) -> dict[str, Any]:
        """Devices per site and kind: total, online, offline, never seen (counts, no list)."""
        scope = sites_of(request)
        groups = _hub(request).states.group_counts()
        return {"items": [g for g in groups if scope is None or g["site"] in scope]}

    @app.get("/api/devices/{device_id}", dependencies=read)
    @policy("sites")
    def device(request: Request, device_id: str) -> dict[str, Any]:
        """One device: latest normalized values, online, last seen."""
        view = _hub(request).states.describe(device_id)
        if view is None:
            raise HTTPException(404, f"unknown device {device_id!r}")
        require_site(request, view.get("site"), "device", device_id)
        return view

    @app.get("/api/refusals", dependencies=read)
    @policy("sites")
    def refusals(
        request: Request, reason: str | None = None, limit: int = Query(100, ge=1, le=5000)
    ) -> dict[str, Any]:
        """The newest refused messages with their reasons, and counts per reason.

        A caller of some sites sees the refusals of their sites' registered devices, picked
        from the newest 5,000, with counts over those.
        """
        hub = _hub(request)
        log = hub.refusals
        scope = sites_of(request)
        if scope is None:
            return {"counts": log.counts(), "items": log.recent(limit, reason)}
        registry = hub.sites.devices
        mine = []
        for item in log.recent(SCOPED_SCAN, reason):
            placed = registry.get(item.get("device_id") or "")
            if placed is not None and placed.site.site in scope:
                mine.append(item)
        counts: dict[str, int] = {}
        for item in mine:
            counts[item["reason"]] = counts.get(item["reason"], 0) + 1
        return {"counts": counts, "items": mine[:limit]}

    @app.get("/api/dead-letters", dependencies=read)
    @policy("sites")
    def dead_letters(request: Request, limit: int = Query(100, ge=1, le=5000)) -> dict[str, Any]:
        """Points the store refused for good, with its reason (a scoped caller: its sites')."""
        log = _hub(request).dead_letters
        if sites_of(request) is None:
            return {"items": log.recent(limit)}
        items = []
        for item in log.recent(SCOPED_SCAN):
            found = _SITE_TAG.search(item["line"])
            items.append({**item, "site": found.group(1).replace("\\", "") if found else None})
        return {"items": [{k: v for k, v in i.items() if k != "site"}
                          for i in filter_sites(request, items)][:limit]}

    @app.get("/metrics")
    @policy("public")
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
