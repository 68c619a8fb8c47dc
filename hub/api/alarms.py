"""HTTP API of alarms: list, get with history, ack, clear, assign, comment.

The service is ``app.state.alarms`` (an AlarmService). ``GET /api/alarms`` returns a JSON list
(newest page of the most severe first) with the total in the ``X-Total-Count`` header.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hub.alarms.model import AlarmNotFound, InvalidTransition
from hub.alarms.service import AlarmService
from hub.api import limits
from hub.api.auth import officer, viewer
from hub.api.scope import policy, require_site, site_query

router = APIRouter(prefix="/api/alarms", tags=["alarms"])

Viewer = Annotated[str, Depends(viewer)]
Officer = Annotated[str, Depends(officer)]


class ClearBody(BaseModel):
    """Optional note on a manual clear."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


class AssignBody(BaseModel):
    """Who the alarm is assigned to (null unassigns)."""

    model_config = ConfigDict(extra="forbid")
    assignee: str | None = Field(max_length=64)


class CommentBody(BaseModel):
    """A comment's text."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=4000)


def _service(request: Request) -> AlarmService:
    service = getattr(request.app.state, "alarms", None)
    if service is None:
        raise HTTPException(503, detail={"error": "unavailable",
                                         "message": "the alarm service is not running"})
    assert isinstance(service, AlarmService)
    return service


def _time_ns(text: str | None, name: str) -> int | None:
    return limits.time_ns(text, name)


def _visible(request: Request, alarm_id: str) -> dict[str, Any]:
    """The alarm if the caller sees its site; 404 otherwise (as for a missing one)."""
    found = _call(_service(request).get, alarm_id)
    require_site(request, found.get("site"), "alarm", alarm_id)
    return found


def _call(fn: Any, *args: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = fn(*args)
        return result
    except AlarmNotFound:
        raise HTTPException(404, detail={"error": "not_found",
                                         "message": f"no alarm {args[0]!r}"}) from None
    except InvalidTransition as exc:
        raise HTTPException(409, detail={"error": "conflict", "message": str(exc)}) from None
    except ValueError as exc:
        raise HTTPException(422, detail={"error": "invalid", "message": str(exc)}) from None


@router.get("")
@policy("sites")
def list_alarms(
    request: Request,
    response: Response,
    user: Viewer,
    state: str | None = Query(None, description="comma list; also active, cleared, unack, open"),
    severity: str | None = Query(None, description="comma list"),
    device_id: str | None = None,
    site: str | None = None,
    kind: str | None = None,
    rule: str | None = None,
    assignee: str | None = None,
    from_: str | None = Query(None, alias="from", description="raised at or after (ISO 8601)"),
    to: str | None = Query(None, description="raised at or before (ISO 8601)"),
    sort: str = Query("severity", pattern="^(severity|time)$"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=limits.MAX_OFFSET),
) -> list[dict[str, Any]]:
    """Alarms matching the filters, most severe then newest first (``sort=time``: newest)."""
    service = _service(request)
    since, until = _time_ns(from_, "from"), _time_ns(to, "to")
    scope = site_query(request, site)
    try:
        items, total = service.list(
            state=state, severity=severity, device_id=device_id,
            site=site if scope is None else None, kind=kind,
            rule=rule, assignee=assignee, since_ns=since, until_ns=until, sort=sort,
            limit=limit, offset=offset, sites=scope)
    except ValueError as exc:
        raise HTTPException(422, detail={"error": "invalid", "message": str(exc)}) from None
    response.headers["X-Total-Count"] = str(total)
    for view in getattr(request.app.state, "alarm_views", ()):
        for item in items:
            view(item, False)
    return items


@router.get("/{alarm_id}")
@policy("sites")
def get_alarm(request: Request, alarm_id: str, user: Viewer) -> dict[str, Any]:
    """One alarm with its history (every transition, who and when) and its notifications."""
    data = _visible(request, alarm_id)
    for view in getattr(request.app.state, "alarm_views", ()):
        view(data, True)
    data.setdefault("notifications", [])
    return data


@router.post("/{alarm_id}/ack")
@policy("sites")
def ack_alarm(request: Request, alarm_id: str, user: Officer) -> dict[str, Any]:
    """Acknowledge; ``acked_by`` is the token's user."""
    _visible(request, alarm_id)
    return _call(_service(request).ack, alarm_id, user)


@router.post("/{alarm_id}/clear")
@policy("sites")
def clear_alarm(request: Request, alarm_id: str, user: Officer,
                body: ClearBody | None = None) -> dict[str, Any]:
    """Clear by hand (the condition may still hold: a new breach reopens or raises again)."""
    note = body.note if body is not None else None
    _visible(request, alarm_id)
    return _call(_service(request).clear, alarm_id, user, note)


@router.post("/{alarm_id}/assign")
@policy("sites")
def assign_alarm(request: Request, alarm_id: str, body: AssignBody,
                 user: Officer) -> dict[str, Any]:
    """Assign to someone."""
    _visible(request, alarm_id)
    return _call(_service(request).assign, alarm_id, user, body.assignee)


@router.post("/{alarm_id}/comment")
@policy("sites")
def comment_alarm(request: Request, alarm_id: str, body: CommentBody,
                  user: Officer) -> dict[str, Any]:
    """Add a comment to the history."""
    _visible(request, alarm_id)
    return _call(_service(request).comment, alarm_id, user, body.text)
