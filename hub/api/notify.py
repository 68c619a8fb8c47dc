"""HTTP API of notifications: silences, who is on duty, the demo's stand-in robot messages.

``POST /api/silences`` (officer) ``{match, starts_at?, ends_at, comment}`` -> 201 ``{id, ...}``;
``GET /api/silences?site=&all=`` (viewer); ``DELETE /api/silences/{id}`` (officer).
``GET /api/duty?site=`` (viewer): on duty now and next, per site with a roster.
``GET /api/notify/received`` (viewer): what the demo's stand-in receiver got.
An alarm's ``notifications`` are added to ``GET /api/alarms/{id}`` (``alarm_view``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from hub.api.accounts import audit
from hub.api.auth import caller_of, officer, require, viewer
from hub.api.scope import filter_sites, policy
from hub.notify.config import Match

if TYPE_CHECKING:
    from hub.notify.service import NotifyService

router = APIRouter(tags=["notifications"])
Viewer = Annotated[str, Depends(viewer)]
Officer = Annotated[str, Depends(officer)]
CountyViewer = Annotated[str, Depends(require("viewer", all_sites=True))]
MAX_SILENCE_DAYS = 90


class SilenceBody(BaseModel):
    """A new silence: which alarms, from when (default now) until when, and why."""

    model_config = ConfigDict(extra="forbid")
    match: Match
    starts_at: datetime | None = None
    ends_at: datetime | None = Field(default=None, description="or duration_h")
    duration_h: float | None = Field(default=None, gt=0, description="hours from starts_at")
    comment: str = Field(min_length=1, max_length=2000)


def _service(request: Request) -> NotifyService:
    service = getattr(request.app.state, "notify", None)
    if service is None:
        raise HTTPException(404, detail={"error": "not_configured", "message":
                                         "notifications are off: set HUB_NOTIFY_FILE"})
    return service  # type: ignore[no-any-return]


def _sites_of(match: dict[str, Any]) -> list[str] | None:
    """The sites a silence's match names (None: every site)."""
    site = match.get("site")
    return None if site is None else [site] if isinstance(site, str) else list(site)


def _may_touch(request: Request, match: dict[str, Any]) -> bool:
    """True when the caller sees every site the match covers (a county-wide one: all sites)."""
    user = caller_of(request)
    sites = _sites_of(match)
    return user.sites is None or (sites is not None and set(sites) <= user.sites)


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


@router.post("/api/silences", status_code=201)
@policy("sites")
def create_silence(request: Request, body: SilenceBody, user: Officer) -> dict[str, Any]:
    """Silence the alarms a match selects, until ``ends_at`` (at most 90 days)."""
    service = _service(request)
    if not _may_touch(request, body.match.model_dump()):
        raise HTTPException(403, detail={"error": "forbidden", "message":
                                         f"{user} may silence only its own sites: name them "
                                         "in match.site"})
    if not any(v is not None for v in body.match.model_dump().values()):
        raise HTTPException(422, detail={"error": "invalid", "message":
                                         "match must name at least one of site, severity, "
                                         "kind, rule, device_id"})
    now = service.clock()
    starts = _ns(body.starts_at) if body.starts_at is not None else now
    if body.ends_at is not None:
        ends = _ns(body.ends_at)
    elif body.duration_h is not None:
        ends = starts + int(body.duration_h * 3600 * 1e9)
    else:
        raise HTTPException(422, detail={"error": "invalid",
                                         "message": "give ends_at (or duration_h)"})
    if ends - starts > MAX_SILENCE_DAYS * 86400 * 10**9:
        raise HTTPException(422, detail={"error": "invalid", "message":
                                         f"a silence lasts at most {MAX_SILENCE_DAYS} days"})
    try:
        silence = service.silences.create(body.match, starts, ends, body.comment, user, now)
    except ValueError as exc:
        raise HTTPException(422, detail={"error": "invalid", "message": str(exc)}) from None
    data = silence.to_json(now)
    sites = _sites_of(data["match"])
    audit(request, user, "silence.create", target=silence.id,
          site=sites[0] if sites and len(sites) == 1 else None,
          detail={"match": data["match"], "ends_at": data["ends_at"], "comment": body.comment})
    return data


@router.get("/api/silences")
@policy("sites")
def list_silences(request: Request, user: Viewer, site: str | None = None,
                  all_: bool = Query(False, alias="all", description="also ended and deleted"),
                  limit: int = Query(200, ge=1, le=1000)) -> list[dict[str, Any]]:
    """Silences in force or to come (``all=true``: also the ended ones), newest first."""
    service = _service(request)
    now = service.clock()
    return [s.to_json(now) for s in service.silences.list(
        site=site, include_ended=all_, now_ns=now, limit=limit)
        if _may_touch(request, s.to_json(now)["match"])]


@router.delete("/api/silences/{silence_id}")
@policy("sites")
def delete_silence(request: Request, silence_id: str, user: Officer) -> dict[str, Any]:
    """End a silence now."""
    service = _service(request)
    now = service.clock()
    found = service.silences.get(silence_id)
    silence = None
    if found is not None and _may_touch(request, found.to_json(now)["match"]):
        silence = service.silences.delete(silence_id, user, now)
    if silence is None:
        raise HTTPException(404, detail={"error": "not_found",
                                         "message": f"no silence {silence_id!r}"})
    data = silence.to_json(now)
    sites = _sites_of(data["match"])
    audit(request, user, "silence.delete", target=silence.id,
          site=sites[0] if sites and len(sites) == 1 else None, detail={"match": data["match"]})
    return data


@router.get("/api/duty")
@policy("sites")
def duty(request: Request, user: Viewer, site: str | None = None) -> list[dict[str, Any]]:
    """Who is on duty now and who comes next, per site (``site=`` for one)."""
    return filter_sites(request, _service(request).duty(site))


@router.get("/api/notify/received")
@policy("all_sites")
def received(request: Request, user: CountyViewer,
             limit: int = Query(50, ge=1, le=200)) -> list[dict[str, Any]]:
    """Messages the demo's stand-in robot receiver got, newest first (404 outside the demo)."""
    standin = getattr(request.app.state, "notify_standin", None)
    if standin is None:
        raise HTTPException(404, detail={"error": "not_running", "message":
                                         "no stand-in receiver: it runs in `hub demo` only"})
    items: list[dict[str, Any]] = standin.recent(limit)
    return [{**m, "at": datetime.fromtimestamp(m["at"], UTC).isoformat()} for m in items]


def alarm_view(service: NotifyService) -> Any:
    """The decorator of alarm JSON: ``notifications`` (one alarm) and ``silenced``."""

    def decorate(alarm: dict[str, Any], full: bool) -> None:
        alarm["silenced"] = service.is_silenced(alarm)
        if full:
            alarm["notifications"] = service.notifications(alarm["id"])

    return decorate


def install(app: FastAPI, service: NotifyService | None) -> None:
    """Mount the routes; with a service, decorate alarm JSON with its notifications."""
    app.state.notify = service
    app.include_router(router)
    if service is not None:
        app.state.alarm_views = [*getattr(app.state, "alarm_views", []), alarm_view(service)]
