"""HTTP API of cloud patrol: rounds, hazards, KPIs, daily reports (docs/patrol-api.md).

The service is the hub's ``PatrolService`` (``app.state.hub.patrol``). Viewers read; officers
create hazards and move them through their lifecycle; the actor of every step is the token's
user name.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hub.api import limits
from hub.api.auth import officer, viewer
from hub.api.scope import filter_sites, policy, refuse_write, require_site
from hub.patrol import reports
from hub.patrol.hazards import HazardNotFound, InvalidHazardTransition
from hub.patrol.schedule import local_date
from hub.patrol.service import PatrolService, UnknownSite
from hub.settings import Settings

router = APIRouter(tags=["patrol"])

Viewer = Annotated[str, Depends(viewer)]
Officer = Annotated[str, Depends(officer)]


class NewHazard(BaseModel):
    """A hazard entered by an officer (e.g. seen on camera)."""

    model_config = ConfigDict(extra="forbid")
    site: str
    category: str = Field(min_length=1, max_length=64)
    note: str = Field(min_length=1, max_length=4000)
    checkpoint_id: str | None = None
    photo_ref: str | None = Field(default=None, max_length=400)


class DispatchBody(BaseModel):
    """Hand a hazard to a department; the due time defaults by category."""

    model_config = ConfigDict(extra="forbid")
    department: str = Field(min_length=1, max_length=200)
    due_at: datetime | None = None


class RectifyBody(BaseModel):
    """The department reports the fix."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=4000)
    evidence_ref: str | None = Field(default=None, max_length=400)


class VerifyBody(BaseModel):
    """The re-check confirms the fix."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=4000)


class ReopenBody(BaseModel):
    """The re-check rejects the fix."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=4000)


def _service(request: Request) -> PatrolService:
    service = getattr(getattr(request.app.state, "hub", None), "patrol", None)
    if not isinstance(service, PatrolService):
        raise HTTPException(503, detail={"error": "unavailable",
                                         "message": "the patrol service is not running"})
    return service


def _hub_settings(request: Request) -> Settings:
    settings = getattr(getattr(request.app.state, "hub", None), "settings", None)
    return settings if isinstance(settings, Settings) else Settings()


def _site(service: PatrolService, name: str) -> None:
    try:
        service.site(name)
    except UnknownSite:
        raise HTTPException(404, detail={"error": "not_found",
                                         "message": f"unknown site {name!r}"}) from None


def _day(service: PatrolService, site: str, text: str | None, name: str = "date") -> date:
    if text is None or not text.strip():
        return local_date(service.site(site), service.now(site))
    return limits.day(text, name)


def _ns(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return limits.time_ns(moment.isoformat(), "due_at")


@router.get("/api/patrol/rounds")
@policy("sites")
def rounds(request: Request, _user: Viewer, site: str, date: str | None = None,
           route: str | None = None) -> list[dict[str, Any]]:
    """The rounds of a site on a local date with per-checkpoint detail."""
    service = _service(request)
    require_site(request, site)
    _site(service, site)
    return service.rounds(site, _day(service, site, date), route)


@router.get("/api/kpi")
@policy("sites")
def kpi(request: Request, _user: Viewer, site: str,
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: str | None = None) -> dict[str, Any]:
    """Patrol coverage, on-time rate, hazards found, rectified, verified, times, overdue."""
    service = _service(request)
    require_site(request, site)
    _site(service, site)
    last = _day(service, site, to, "to")
    first = _day(service, site, from_, "from") if from_ else last
    limits.day_range(first, last, _hub_settings(request).kpi_max_days,
                     "KPI range (HUB_KPI_MAX_DAYS)")
    return service.kpi(site, first, last)


@router.get("/api/hazards")
@policy("sites")
def hazards(request: Request, _user: Viewer, site: str | None = None,
            status: str | None = None, category: str | None = None,
            overdue: bool | None = None) -> list[dict[str, Any]]:
    """Hazards, newest first."""
    found = _service(request).hazards.search(site=site, status=status, category=category,
                                             overdue=overdue)
    return filter_sites(request, found)


@router.post("/api/hazards", status_code=201)
@policy("sites")
def create_hazard(request: Request, user: Officer, body: NewHazard) -> dict[str, Any]:
    """An officer enters a hazard (reported by them)."""
    service = _service(request)
    refuse_write(request, body.site)
    _site(service, body.site)
    try:
        created = service.hazards.create(body.site, body.category, body.note,
                                         body.checkpoint_id, body.photo_ref, user)
    except ValueError as exc:
        raise HTTPException(422, detail={"error": "bad_request", "message": str(exc)}) from None
    assert created is not None
    return created


@router.get("/api/hazards/{hazard_id}")
@policy("sites")
def hazard(request: Request, _user: Viewer, hazard_id: str) -> dict[str, Any]:
    """One hazard with its history."""
    found = _visible_hazard(request, hazard_id)
    return found


def _visible_hazard(request: Request, hazard_id: str) -> dict[str, Any]:
    """The hazard if the caller sees its site; 404 otherwise (as for a missing one)."""
    try:
        found = _service(request).hazards.get(hazard_id)
    except HazardNotFound:
        raise HTTPException(404, detail={"error": "not_found",
                                         "message": f"no hazard {hazard_id!r}"}) from None
    require_site(request, found.get("site"), "hazard", hazard_id)
    return found


def _act(request: Request, hazard_id: str, action: str, user: str,
         **kwargs: Any) -> dict[str, Any]:
    _visible_hazard(request, hazard_id)
    try:
        return _service(request).hazards.act(hazard_id, action, user, **kwargs)
    except HazardNotFound:
        raise HTTPException(404, detail={"error": "not_found",
                                         "message": f"no hazard {hazard_id!r}"}) from None
    except InvalidHazardTransition as exc:
        raise HTTPException(409, detail={"error": "conflict", "message": str(exc)}) from None


@router.post("/api/hazards/{hazard_id}/dispatch")
@policy("sites")
def dispatch(request: Request, user: Officer, hazard_id: str,
             body: DispatchBody) -> dict[str, Any]:
    """reported/reopened -> dispatched, to a department, with a due time."""
    return _act(request, hazard_id, "dispatch", user, department=body.department,
                due_ns=_ns(body.due_at))


@router.post("/api/hazards/{hazard_id}/rectify")
@policy("sites")
def rectify(request: Request, user: Officer, hazard_id: str,
            body: RectifyBody) -> dict[str, Any]:
    """dispatched/reopened -> rectified, with a note and evidence."""
    return _act(request, hazard_id, "rectify", user, note=body.note,
                evidence_ref=body.evidence_ref)


@router.post("/api/hazards/{hazard_id}/verify")
@policy("sites")
def verify(request: Request, user: Officer, hazard_id: str,
           body: VerifyBody | None = None) -> dict[str, Any]:
    """rectified -> verified (closed); the verifier is the caller."""
    return _act(request, hazard_id, "verify", user, note=body.note if body else None)


@router.post("/api/hazards/{hazard_id}/reopen")
@policy("sites")
def reopen(request: Request, user: Officer, hazard_id: str,
           body: ReopenBody) -> dict[str, Any]:
    """rectified/verified -> reopened, with a new deadline."""
    return _act(request, hazard_id, "reopen", user, note=body.note)


@router.get("/api/reports/daily")
@policy("sites")
def daily_report(request: Request, _user: Viewer, site: str, date: str | None = None,
                 format: str = "html") -> Response:
    """The daily patrol report of a site as HTML or XLSX."""
    service = _service(request)
    require_site(request, site)
    _site(service, site)
    if format not in reports.FORMATS:
        raise HTTPException(422, detail={"error": "bad_request",
                                         "message": "format: use html or xlsx"})
    day = _day(service, site, date)
    body = reports.render(reports.daily_report(service, site, day), format)
    headers = {}
    if format != "html":
        headers["Content-Disposition"] = \
            f'attachment; filename="patrol-{site}-{day.isoformat()}.{format}"'
    return Response(body, media_type=reports.MEDIA_TYPES[format], headers=headers)
