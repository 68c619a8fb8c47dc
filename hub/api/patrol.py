"""HTTP API of cloud patrol: rounds, hazards, KPIs, daily reports (docs/patrol-api.md).

The service is the hub's ``PatrolService`` (``app.state.hub.patrol``). Viewers read; officers
create hazards and move them through their lifecycle; the actor of every step is the token's
user name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Request,
    Response,
)
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from hub.api import limits
from hub.api.auth import officer, viewer
from hub.api.scope import policy, refuse_write, require_site, sites_of
from hub.evidence.errors import TooLarge, UnsupportedEvidence
from hub.evidence.service import EvidenceService
from hub.patrol import periodic, reports
from hub.patrol.departments import UnknownDepartment
from hub.patrol.hazards import (
    EvidenceRequired,
    HazardNotFound,
    InvalidHazardTransition,
)
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
    grade: Literal["general", "major"] = "general"


class DispatchBody(BaseModel):
    """Hand a hazard to a department of the site's register (id or name)."""

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


class GradeBody(BaseModel):
    """An officer changes the grade; the deadline follows."""

    model_config = ConfigDict(extra="forbid")
    grade: Literal["general", "major"]
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


def _scope(request: Request, user: str) -> Collection[str] | None:
    """The sites the caller may see (None: all); every hazard lookup passes it on."""
    return sites_of(request)


def _not_found(hazard_id: str) -> HTTPException:
    return HTTPException(404, detail={"error": "not_found",
                                      "message": f"no hazard {hazard_id!r}"})


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(422, detail={"error": "bad_request", "message": message})


def _evidence(request: Request) -> EvidenceService:
    service = getattr(getattr(request.app.state, "hub", None), "evidence", None)
    if not isinstance(service, EvidenceService):
        raise HTTPException(503, detail={"error": "unavailable",
                                         "message": "the evidence store is not running"})
    return service


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
def hazards(request: Request, user: Viewer, site: str | None = None,
            status: str | None = None, category: str | None = None,
            overdue: bool | None = None,
            grade: Literal["general", "major"] | None = None,
            department: str | None = None,
            supervised: bool | None = None,
            limit: int = Query(500, ge=1, le=5000, description="page size (at most 5000)"),
            offset: int = Query(0, ge=0, le=1_000_000)) -> list[dict[str, Any]]:
    """Hazards, newest first, filtered by site, status, category, grade, department, 督办."""
    return _service(request).hazards.search(
        site=site, status=status, category=category, overdue=overdue, grade=grade,
        department=department, supervised=supervised, scope=_scope(request, user),
        limit=limit, offset=offset)


@router.get("/api/departments")
@policy("sites")
def departments(request: Request, _user: Viewer, site: str) -> list[dict[str, Any]]:
    """The site's register of departments hazards are handed to."""
    service = _service(request)
    require_site(request, site)
    _site(service, site)
    return [d.model_dump() for d in service.departments.of_site(site)]


@router.post("/api/hazards", status_code=201)
@policy("sites")
def create_hazard(request: Request, user: Officer, body: NewHazard) -> dict[str, Any]:
    """An officer enters a hazard (reported by them)."""
    service = _service(request)
    refuse_write(request, body.site)
    _site(service, body.site)
    try:
        created = service.hazards.create(body.site, body.category, body.note,
                                         body.checkpoint_id, body.photo_ref, user,
                                         grade=body.grade)
    except ValueError as exc:
        raise HTTPException(422, detail={"error": "bad_request", "message": str(exc)}) from None
    assert created is not None
    return created


@router.get("/api/hazards/{hazard_id}")
@policy("sites")
def hazard(request: Request, user: Viewer, hazard_id: str) -> dict[str, Any]:
    """One hazard with its history and evidence."""
    try:
        return _service(request).hazards.get(hazard_id, scope=_scope(request, user))
    except HazardNotFound:
        raise _not_found(hazard_id) from None


def _act(request: Request, hazard_id: str, action: str, user: str,
         **kwargs: Any) -> dict[str, Any]:
    try:
        return _service(request).hazards.act(hazard_id, action, user,
                                             scope=_scope(request, user), **kwargs)
    except HazardNotFound:
        raise _not_found(hazard_id) from None
    except InvalidHazardTransition as exc:  # also FourEyes: the rectifier verifying
        raise HTTPException(409, detail={"error": "conflict", "message": str(exc)}) from None
    except (EvidenceRequired, UnknownDepartment) as exc:
        raise _unprocessable(str(exc)) from None


@router.post("/api/hazards/{hazard_id}/grade")
@policy("sites")
def grade(request: Request, user: Officer, hazard_id: str, body: GradeBody) -> dict[str, Any]:
    """Change a hazard's grade (general or major); the deadline follows, history kept."""
    try:
        return _service(request).hazards.set_grade(hazard_id, body.grade, user, body.note,
                                                   scope=_scope(request, user))
    except HazardNotFound:
        raise _not_found(hazard_id) from None


async def _read_upload(evidence: EvidenceService, file: UploadFile) -> bytes:
    """The upload's bytes, reading no more than one byte past the limit (413 beyond)."""
    if file.size is not None and file.size > evidence.max_bytes:
        raise HTTPException(413, detail={"error": "too_large",
                                         "message": str(evidence.too_large(file.size))})
    data = await file.read(evidence.max_bytes + 1)
    if len(data) > evidence.max_bytes:
        raise HTTPException(413, detail={"error": "too_large",
                                         "message": str(evidence.too_large(len(data)))})
    return data


def _store(request: Request, evidence: EvidenceService, data: bytes, name: str | None,
           user: str, site: str) -> dict[str, Any]:
    try:
        return evidence.add(data, name, user, _service(request).now(site))
    except TooLarge as exc:
        raise HTTPException(413, detail={"error": "too_large", "message": str(exc)}) from None
    except UnsupportedEvidence as exc:
        raise HTTPException(415, detail={"error": "unsupported_media_type",
                                         "message": str(exc)}) from None


FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the small fields


class _BoundedUpload(APIRoute):
    """An upload route that refuses a body over the evidence limit before reading it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler behind a Content-Length check (411 without, 413 over)."""
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            limit = _evidence(request).max_bytes
            length = request.headers.get("content-length", "")
            if not length.isdigit():
                raise HTTPException(411, detail={
                    "error": "length_required",
                    "message": f"uploads need a Content-Length (at most {limit} bytes of "
                               f"evidence, HUB_EVIDENCE_MAX_BYTES)"})
            if int(length) > limit + FORM_OVERHEAD:
                raise HTTPException(413, detail={
                    "error": "too_large",
                    "message": f"evidence is limited to {limit} bytes ({limit / 1024**2:g} "
                               f"MiB, HUB_EVIDENCE_MAX_BYTES); this request has {length}"})
            return await handler(request)

        return bounded


uploads = APIRouter(route_class=_BoundedUpload)


def _multipart(fields: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    """The OpenAPI request body of a multipart upload (the form is read by the handler)."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": required, "properties": fields}}}}}


async def _form(request: Request) -> tuple[UploadFile, dict[str, str]]:
    """The upload's file and text fields; 422 naming what is missing."""
    form = await request.form(max_files=1, max_fields=8)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise _unprocessable("file: a multipart file field named 'file' is required")
    texts = {k: v for k, v in form.items() if isinstance(v, str)}
    return file, texts


def _text(texts: dict[str, str], name: str, limit: int, default: str | None = None) -> str | None:
    value = texts.get(name, default)
    if value is not None and len(value) > limit:
        raise _unprocessable(f"{name}: at most {limit} characters")
    return value


FILE_FIELD = {"type": "string", "format": "binary"}


@uploads.post("/api/hazards/{hazard_id}/evidence", status_code=201, openapi_extra=_multipart(
    {"file": FILE_FIELD, "kind": {"type": "string", "enum": ["before", "after"]},
     "note": {"type": "string", "maxLength": 400}}, ["file"]))
@policy("sites")
async def add_evidence(request: Request, user: Officer, hazard_id: str) -> dict[str, Any]:
    """Attach a photo or document (JPEG, PNG, WebP, PDF) as before or after evidence."""
    service, evidence = _service(request), _evidence(request)
    scope = _scope(request, user)
    try:  # another site's hazard is 404 before anything is read
        site = service.hazards.site_of(hazard_id, scope)
    except HazardNotFound:
        raise _not_found(hazard_id) from None
    file, texts = await _form(request)
    kind = _text(texts, "kind", 16, "before") or "before"
    if kind not in ("before", "after"):
        raise _unprocessable("kind: use before or after")
    note = _text(texts, "note", 400)
    data = await _read_upload(evidence, file)
    # decoding, hashing and writing run off the event loop
    stored = await run_in_threadpool(_store, request, evidence, data, file.filename, user, site)
    link = await run_in_threadpool(service.hazards.attach, hazard_id, stored["sha256"], kind,
                                   user, scope, note)
    return {**stored, "hazard_id": hazard_id, "kind": kind, "linked": link["new"]}


@uploads.post("/api/evidence", status_code=201, openapi_extra=_multipart(
    {"file": FILE_FIELD, "device_id": {"type": "string", "maxLength": 128},
     "photo_ref": {"type": "string", "maxLength": 400}}, ["file", "device_id", "photo_ref"]))
@policy("sites")
async def upload_photo(request: Request, user: Officer) -> dict[str, Any]:
    """A reader's photo by the ``photo_ref`` its hazard message named (before or after it)."""
    service, evidence = _service(request), _evidence(request)
    form = await request.form(max_files=1, max_fields=8)
    device_id = form.get("device_id")
    device_id = device_id if isinstance(device_id, str) else ""
    device = service.sites.devices.get(device_id)
    scope = _scope(request, user)
    if scope is not None and (device is None or device.site.site not in scope):
        raise HTTPException(404, detail={"error": "not_found",
                                         "message": f"no reader {device_id[:128]!r}"})
    file, texts = await _form(request)
    photo_ref = _text(texts, "photo_ref", 400)
    if not device_id or len(device_id) > 128 or not photo_ref:
        raise _unprocessable("device_id (at most 128 characters) and photo_ref are required")
    site = device.site.site if device is not None else next(iter(service.sites.sites), "")
    data = await _read_upload(evidence, file)
    stored = await run_in_threadpool(_store, request, evidence, data, file.filename, user, site)
    linked = await run_in_threadpool(service.hazards.photo_uploaded, device_id, photo_ref,
                                     stored["sha256"], user, service.now(site))
    return {**stored, "device_id": device_id, "photo_ref": photo_ref, "hazards": linked}


router.include_router(uploads)


@router.get("/api/evidence/{sha256}")
@policy("sites")
def get_evidence(request: Request, user: Viewer, sha256: str,
                 variant: Literal["served", "thumb"] = "served") -> Response:
    """Stored evidence (EXIF stripped) or its thumbnail; seen by whoever sees its hazard."""
    evidence = _evidence(request)
    scope = _scope(request, user)
    missing = HTTPException(404, detail={"error": "not_found",
                                         "message": f"no evidence {sha256!r}"})
    if scope is not None and not _service(request).hazards.evidence_sites(sha256) & set(scope):
        raise missing
    found = evidence.content(sha256, variant)
    if found is None:
        raise missing
    data, media_type = found
    return Response(data, media_type=media_type, headers={
        "Cache-Control": "private, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff", "Content-Disposition": "inline"})


@router.get("/api/evidence/{sha256}/info")
@policy("sites")
def evidence_info(request: Request, user: Viewer, sha256: str) -> dict[str, Any]:
    """What is known of stored evidence: type, size, GPS, time taken, uploader."""
    scope = _scope(request, user)
    info = _evidence(request).info(sha256)
    if info is None or (scope is not None and not _service(request).hazards.evidence_sites(
            sha256) & set(scope)):
        raise HTTPException(404, detail={"error": "not_found",
                                         "message": f"no evidence {sha256!r}"})
    return info


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
        raise _unprocessable(f"format: use {', '.join(reports.FORMATS)}")
    day = _day(service, site, date)
    body = reports.render(reports.daily_report(service, site, day), format)
    headers = {}
    if format != "html":
        headers["Content-Disposition"] = \
            f'attachment; filename="patrol-{site}-{day.isoformat()}.{format}"'
    return Response(body, media_type=reports.MEDIA_TYPES[format], headers=headers)


def _period_report(request: Request, user: str, site: str, period: periodic.Period | None,
                   format: str) -> Response:
    service = _service(request)
    require_site(request, site)
    _site(service, site)
    if format not in reports.FORMATS:
        raise _unprocessable(f"format: use {', '.join(reports.FORMATS)}")
    if period is None:
        today = local_date(service.site(site), service.now(site))
        period = periodic.month(f"{today.year:04d}-{today.month:02d}")
    evidence = getattr(getattr(request.app.state, "hub", None), "evidence", None)
    try:
        data = periodic.period_report(service, site, period,
                                      evidence if isinstance(evidence, EvidenceService) else None)
    except periodic.BadPeriod as exc:
        raise _unprocessable(str(exc)) from None
    body = reports.render_period(data, format)
    headers = {}
    if format != "html":
        headers["Content-Disposition"] = \
            f'attachment; filename="hazards-{site}-{period.label}.{format}"'
    return Response(body, media_type=reports.MEDIA_TYPES[format], headers=headers)


def _parse(parse: Any, text: str | None) -> periodic.Period | None:
    if text is None or not text.strip():
        return None
    try:
        found: periodic.Period = parse(text)
    except periodic.BadPeriod as exc:
        raise _unprocessable(str(exc)) from None
    return found


@router.get("/api/reports/monthly")
@policy("sites")
def monthly_report(request: Request, user: Viewer, site: str, month: str | None = None,
                   format: str = "html") -> Response:
    """The monthly hazard report (YYYY-MM, default this month) as HTML, XLSX or PDF."""
    return _period_report(request, user, site, _parse(periodic.month, month), format)


@router.get("/api/reports/quarterly")
@policy("sites")
def quarterly_report(request: Request, user: Viewer, site: str, quarter: str | None = None,
                     format: str = "html") -> Response:
    """The quarterly hazard report (YYYY-Qn, default this quarter) as HTML, XLSX or PDF."""
    if quarter is None or not quarter.strip():
        service = _service(request)
        require_site(request, site)
        _site(service, site)
        today = local_date(service.site(site), service.now(site))
        quarter = f"{today.year:04d}-Q{(today.month - 1) // 3 + 1}"
    return _period_report(request, user, site, _parse(periodic.quarter, quarter), format)
