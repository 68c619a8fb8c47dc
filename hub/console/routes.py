"""The duty console: server-rendered pages and htmx partials, and ``GET /api/me``.

The pages (``/``, ``/alarms/{id}``) are shells that anyone may load; their panels are partials
under ``/console/p/`` that the browser fetches with the user's session cookie (or a bearer
token). A partial reads the hub through its own public HTTP API, called in process with the
caller's credentials, so the
console sees exactly what the API promises (docs/patrol-api.md for rounds, hazards and KPIs)
and the API's 401/403 answers reach the user unchanged. An API that answers 404 (a part of the
hub not installed yet) is shown as "not available" instead of failing the panel.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from hub.api.auth import ROLE_RANK, SESSION_COOKIE, User, caller_of, resolve
from hub.api.scope import policy
from hub.console import i18n
from hub.rules.readiness import ReadinessBook

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

router = APIRouter(include_in_schema=False)

SEVERITY_ORDER = ("critical", "major", "minor", "warning", "info")
ACTIVE = ("active_unack", "active_ack")
# open hazards under supervision (督办) have their own column, first: they need action most
HAZARD_COLUMNS = ("supervised", "reported", "dispatched", "rectified", "verified", "reopened")
HAZARD_OPEN = frozenset({"reported", "dispatched", "reopened"})
HAZARD_CARDS_PER_COLUMN = 8
GRAFANA_DASHBOARDS = {
    "flashing_light": "safety-hub-road",
    "fire_station": "safety-hub-fire",
    "patrol_reader": "safety-hub-patrol",
}
INTERNAL_BASE = "http://hub.internal"


class ApiError(Exception):
    """The in-process API call answered with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass(slots=True)
class Ctx:
    """What every partial template gets."""

    request: Request
    lang: str
    user: User
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def can_act(self) -> bool:
        """True when the user may acknowledge, clear, comment and move hazards."""
        return ROLE_RANK[self.user.role] >= ROLE_RANK["officer"]


class Api:
    """The hub's HTTP API called in process with the caller's Authorization header."""

    def __init__(self, request: Request) -> None:
        self._request = request
        auth = request.headers.get("authorization")
        self._headers = {"authorization": auth} if auth else {}
        self._cookies = {SESSION_COOKIE: request.cookies[SESSION_COOKIE]} \
            if not auth and request.cookies.get(SESSION_COOKIE) else {}

    async def get(self, path: str, *, optional: bool = False,
                  **params: Any) -> tuple[Any, httpx.Headers] | None:
        """GET a path; raise ApiError on an error status.

        With ``optional``, None when that part of the hub is missing: no such route (FastAPI's
        plain 404 "Not Found") or its service is not running (503).
        """
        clean = {k: v for k, v in params.items() if v is not None}
        transport = httpx.ASGITransport(app=self._request.app)
        async with httpx.AsyncClient(transport=transport, base_url=INTERNAL_BASE,
                                     cookies=self._cookies) as client:
            response = await client.get(path, params=clean, headers=self._headers)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text}
            missing = response.status_code == 404 and body == {"detail": "Not Found"}
            if optional and (missing or response.status_code == 503):
                return None
            raise ApiError(response.status_code, body)
        return response.json(), response.headers


def request_lang(request: Request) -> str:
    """The console language of a request (cookie, else Accept-Language)."""
    return i18n.normalize_lang(request.cookies.get(i18n.COOKIE),
                               request.headers.get("accept-language"))


def _sites(request: Request) -> Any:
    return request.app.state.hub.sites


def _site_name(request: Request, site_id: str | None, lang: str) -> str:
    if not site_id:
        return "?"
    site = _sites(request).sites.get(site_id)
    if site is None:
        return site_id
    return str(site.name if lang == "zh-CN" or not site.name_en else site.name_en)


def _community_name(request: Request, site_id: str | None, community: str | None,
                    lang: str) -> str:
    if not community:
        return ""
    site = _sites(request).sites.get(site_id or "")
    for item in getattr(site, "communities", []):
        if item.id == community:
            return str(item.name if lang == "zh-CN" or not item.name_en else item.name_en)
    return community


def _tz(request: Request, site_id: str | None) -> ZoneInfo:
    site = _sites(request).sites.get(site_id or "")
    try:
        return ZoneInfo(site.timezone if site is not None else "Asia/Shanghai")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _today(request: Request, site_id: str | None) -> str:
    return datetime.now(_tz(request, site_id)).date().isoformat()


def _filters(request: Request, lang: str) -> dict[str, Any]:
    t = i18n.translator(lang)

    def local_time(text: str | None, site_id: str | None = None, with_date: bool = True) -> str:
        moment = _parse_time(text)
        if moment is None:
            return "—"
        local = moment.astimezone(_tz(request, site_id))
        return local.strftime("%m-%d %H:%M:%S" if with_date else "%H:%M")

    def pct(value: Any) -> str:
        if value is None:
            return "—"
        return f"{float(value) * 100:.0f}%"

    def number(value: Any, digits: int = 2) -> str:
        if value is None:
            return "—"
        if isinstance(value, bool):
            return t("ok") if value else "✗"
        if isinstance(value, float):
            return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
        return str(value)

    def alarm_message(alarm: dict[str, Any]) -> str:
        if lang == "zh-CN" and alarm.get("message_zh"):
            return str(alarm["message_zh"])
        return str(alarm.get("message") or alarm.get("rule") or "")

    return {
        "t": t, "lang": lang, "local_time": local_time, "pct": pct, "number": number,
        "alarm_message": alarm_message,
        "site_name": lambda s: _site_name(request, s, lang),
        "community_name": lambda s, c: _community_name(request, s, c, lang),
        "category": lambda c: _category(request, c, lang),
    }


def _category(request: Request, name: str, lang: str) -> str:
    label = i18n.category_label(name, lang)
    if label != name:
        return label
    # a category only the patrol rules know (data): their names
    config = getattr(getattr(request.app.state.hub, "patrol", None), "config", None)
    found = config.hazard_categories.get(name) if config is not None else None
    if found is None:
        return label
    return str(found.zh if lang == "zh-CN" else found.en[:1].upper() + found.en[1:])


def _page(request: Request, template: str, **values: Any) -> HTMLResponse:
    lang = request_lang(request)
    t = i18n.translator(lang)
    script_labels = {key: t(key) for key in i18n.SCRIPT_KEYS}
    context = {"request": request, **_filters(request, lang), "script_labels": script_labels,
               **values}
    response = templates.TemplateResponse(request, template, context)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _partial(request: Request, template: str, build: Any, *args: Any) -> Response:
    lang = request_lang(request)
    user = resolve(request)
    ctx = Ctx(request, lang, user)
    try:
        await build(ctx, *args)
    except ApiError as exc:
        return JSONResponse(exc.body, status_code=exc.status)
    context = {"request": request, **_filters(request, lang), "user": user,
               "can_act": ctx.can_act, **ctx.values}
    response = templates.TemplateResponse(request, f"partials/{template}", context)
    response.headers["Cache-Control"] = "no-store"
    return response


# -- pages -------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
@policy("public")
def index(request: Request) -> HTMLResponse:
    """The duty console."""
    return _page(request, "index.html", page="index")


@router.get("/devices", response_class=HTMLResponse)
@policy("public")
def devices_page(request: Request) -> HTMLResponse:
    """Admins onboard, edit and retire devices (the panel needs an admin)."""
    return _page(request, "devices.html", page="devices")


@router.get("/reports", response_class=HTMLResponse)
@policy("public")
def reports_page(request: Request) -> HTMLResponse:
    """Monthly and quarterly hazard reports to download (the form is a partial: sites)."""
    return _page(request, "reports.html", page="reports")


@router.get("/alarms/{alarm_id}", response_class=HTMLResponse)
@policy("public")
def alarm_page(request: Request, alarm_id: str) -> HTMLResponse:
    """One alarm with its history (Grafana's alarm links point here)."""
    return _page(request, "alarm.html", page="alarm", alarm_id=alarm_id)


# -- partials ----------------------------------------------------------------------------------


async def _active_alarms(api: Api, **params: Any) -> list[dict[str, Any]]:
    got = await api.get("/api/alarms", state="active", limit=1000, **params)
    assert got is not None
    items: list[dict[str, Any]] = got[0]
    return items


def _worst_by_device(alarms: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    worst: dict[str, dict[str, Any]] = {}
    for alarm in alarms:  # the API lists the most severe first
        worst.setdefault(alarm["device_id"], alarm)
    return worst


async def _build_alarms(ctx: Ctx) -> None:
    api = Api(ctx.request)
    got = await api.get("/api/alarms", state="open", sort="severity", limit=50)
    assert got is not None
    items, headers = got
    ctx.values.update(alarms=items, total=int(headers.get("x-total-count", len(items))),
                      notify_on=_notify_on(ctx.request),
                      counts=Counter(a["severity"] for a in items if a["state"] in ACTIVE),
                      severities=SEVERITY_ORDER)


@router.get("/console/p/alarms")
@policy("sites")
async def p_alarms(request: Request) -> Response:
    """Open alarms, most severe then newest first, with the actions the role allows."""
    return await _partial(request, "alarms.html", _build_alarms)


async def _devices(api: Api, **params: Any) -> list[dict[str, Any]]:
    # registered devices only: their number is what the site files say, while unregistered
    # ids are whatever anyone publishes (the status panel counts those, it does not list them)
    got = await api.get("/api/devices", limit=100_000, registered="true", **params)
    assert got is not None
    items: list[dict[str, Any]] = got[0]["items"]
    return items


async def _build_status(ctx: Ctx) -> None:
    api = Api(ctx.request)
    got = await api.get("/api/devices/counts")
    assert got is not None
    alarmed = _worst_by_device(await _active_alarms(api))
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"total": 0, "online": 0, "offline": 0, "never": 0, "alarm": 0})
    for group in got[0]["items"]:
        row = rows[(group["site"] or "unassigned", group["kind"] or "unknown")]
        for count in ("total", "online", "offline", "never"):
            row[count] += group[count]
    registered = _sites(ctx.request).devices
    for device_id, alarm in alarmed.items():  # devices in alarm (not hazards, not routes)
        key = (alarm.get("site") or "unassigned", alarm.get("kind") or "unknown")
        if key in rows and (device_id in registered or key[0] == "unassigned"):
            rows[key]["alarm"] += 1
    sites: dict[str, list[tuple[str, dict[str, int]]]] = defaultdict(list)
    for (site, kind), row in sorted(rows.items()):
        sites[site].append((kind, row))
    totals = {k: sum(r[k] for r in rows.values()) for k in ("total", "online", "offline",
                                                             "never", "alarm")}
    ctx.values.update(sites=dict(sites), totals=totals)


@router.get("/console/p/status")
@policy("sites")
async def p_status(request: Request) -> Response:
    """Per site and device kind: online, offline, not seen, in alarm."""
    return await _partial(request, "status.html", _build_status)


@dataclass(slots=True)
class _Projection:
    lat0: float
    lon0: float
    scale: float
    width: float
    height: float
    pad: float

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        x = self.pad + (lon - self.lon0) * math.cos(math.radians(self.lat0)) * self.scale
        y = self.height - self.pad - (lat - self.lat0) * self.scale
        return round(x, 1), round(y, 1)


def _projection(points: list[tuple[float, float]], width: float = 320,
                height: float = 240, pad: float = 16) -> _Projection:
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    lat0, lon0 = min(lats), min(lons)
    coslat = math.cos(math.radians(lat0))
    span_x = max((max(lons) - lon0) * coslat, 1e-6)
    span_y = max(max(lats) - lat0, 1e-6)
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
    projection = _Projection(lat0, lon0, scale, width, height, pad)
    # centre the drawing
    used_w = span_x * scale
    used_h = span_y * scale
    projection.pad = pad
    projection.lon0 = lon0 - ((width - 2 * pad - used_w) / 2) / scale / coslat
    projection.lat0 = lat0 - ((height - 2 * pad - used_h) / 2) / scale
    return projection


async def _build_map(ctx: Ctx) -> None:
    api = Api(ctx.request)
    devices = await _devices(api)
    alarmed = _worst_by_device(await _active_alarms(api))
    registry = _sites(ctx.request)
    maps = []
    for site_id, site in registry.sites.items():
        if not ctx.user.sees(site_id):
            continue
        site_devices = [d for d in devices if d.get("site") == site_id
                        and d.get("lat") is not None and d.get("lon") is not None]
        checkpoints = [c for c in site.checkpoints if c.lat is not None and c.lon is not None]
        communities = [c for c in site.communities if c.lat is not None and c.lon is not None]
        coords = [(d["lat"], d["lon"]) for d in site_devices]
        coords += [(c.lat, c.lon) for c in checkpoints]
        if not coords:
            continue
        projection = _projection(coords)
        dots: list[dict[str, Any]] = []
        for device in site_devices:
            x, y = projection.xy(device["lat"], device["lon"])
            alarm = alarmed.get(device["device_id"])
            state = ("alarm" if alarm else "online" if device.get("online") else "offline")
            dots.append({"x": x, "y": y, "state": state, "device": device, "alarm": alarm})
        dots.sort(key=lambda d: {"offline": 0, "online": 1, "alarm": 2}[d["state"]])
        maps.append({
            "site": site_id,
            "dots": dots,
            "checkpoints": [{"xy": projection.xy(c.lat, c.lon), "cp": c} for c in checkpoints],
            "communities": [{"xy": projection.xy(c.lat, c.lon),
                             "name": c.name if ctx.lang == "zh-CN" or not c.name_en
                             else c.name_en.replace(" community", "").replace(" district", "")}
                            for c in communities],
            "counts": Counter(d["state"] for d in dots),
        })
    ctx.values.update(maps=maps)


@router.get("/console/p/map")
@policy("sites")
async def p_map(request: Request) -> Response:
    """One schematic SVG per site drawn from the registry's lat/lon (no tiles)."""
    return await _partial(request, "map.html", _build_map)


def _station(book: ReadinessBook, kind: str, device: dict[str, Any],
             alarms: list[dict[str, Any]]) -> dict[str, Any]:
    values = device.get("values") or {}
    readiness = book.of(kind, device.get("site"), device["device_id"])
    assert readiness is not None  # only kinds that declare a readiness are listed
    grade = readiness.grade({**values, "online": device.get("online")},
                            [(a["rule"], a["severity"]) for a in alarms])
    return {"device": device, "values": values, "readiness": grade.state,
            "extinguishers": grade.marks.get("extinguishers", "ok"), "alarms": alarms,
            "problems": sorted({a["rule"] for a in alarms}), "flagged": grade.flagged,
            "hydrant": values.get("hydrant_pressure_mpa")}


async def _build_stations(ctx: Ctx) -> None:
    api = Api(ctx.request)
    book: ReadinessBook = ctx.request.app.state.hub.readiness
    stations: list[dict[str, Any]] = []
    for kind in book.kinds:  # the kinds whose rule files declare a readiness
        devices = await _devices(api, kind=kind)
        active = await _active_alarms(api, kind=kind)
        by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for alarm in active:
            by_device[alarm["device_id"]].append(alarm)
        stations += [_station(book, kind, d, by_device.get(d["device_id"], [])) for d in devices]
    order = {"not_ready": 0, "degraded": 1, "ready": 2}
    stations.sort(key=lambda s: (order[s["readiness"]], s["device"]["device_id"]))
    ctx.values.update(stations=stations,
                      summary=Counter(s["readiness"] for s in stations))


@router.get("/console/p/stations")
@policy("sites")
async def p_stations(request: Request) -> Response:
    """Micro fire stations: extinguishers, hydrant pressure, mains, door; ready or not."""
    return await _partial(request, "stations.html", _build_stations)


def _patrol_sites(request: Request) -> list[str]:
    user = resolve(request)
    return [s for s, site in _sites(request).sites.items() if site.routes and user.sees(s)]


async def _build_patrol(ctx: Ctx) -> None:
    api = Api(ctx.request)
    rounds: list[dict[str, Any]] = []
    for site_id in _patrol_sites(ctx.request):
        got = await api.get("/api/patrol/rounds", optional=True, site=site_id,
                            date=_today(ctx.request, site_id))
        if got is None:
            ctx.values.update(unavailable="/api/patrol/rounds")
            return
        rounds.extend(got[0])
    # what needs the duty officer first: rounds under way, then those that went wrong
    order = {"in_progress": 0, "missed": 1, "incomplete": 1, "scheduled": 2, "completed": 3}
    rounds.sort(key=lambda r: (order.get(r.get("state") or "", 4),
                               r.get("window_start") or "", r.get("route_id") or ""))
    ctx.values.update(rounds=rounds, round_counts=Counter(r.get("state") for r in rounds))


@router.get("/console/p/patrol")
@policy("sites")
async def p_patrol(request: Request) -> Response:
    """Today's patrol rounds with checkpoint progress (GET /api/patrol/rounds)."""
    return await _partial(request, "patrol.html", _build_patrol)


def _hazard_actions(status: str) -> list[str]:
    return {
        "reported": ["dispatch", "evidence", "grade"],
        "reopened": ["dispatch", "evidence", "grade"],
        "dispatched": ["rectify", "evidence", "grade"],
        "rectified": ["verify", "reopen", "evidence"],
        "verified": ["reopen"],
    }.get(status, [])


def _hazard_column(hazard: dict[str, Any]) -> str:
    status = hazard.get("status") or "reported"
    return "supervised" if hazard.get("supervised") and status in HAZARD_OPEN else status


async def _departments(api: Api, sites: list[str]) -> dict[str, list[list[str]]]:
    """Per site the dispatch picker's [id, label] choices from the department register."""
    out: dict[str, list[list[str]]] = {}
    for site_id in sites:
        try:
            got = await api.get("/api/departments", optional=True, site=site_id)
        except ApiError as exc:
            if exc.status == 404:
                continue
            raise
        out[site_id] = [[d["id"], f'{d["name"]} · {d["contact"]} {d["phone"]}']
                        for d in (got[0] if got is not None else [])]
    return out


async def _build_hazards(ctx: Ctx) -> None:
    api = Api(ctx.request)
    query = ctx.request.query_params
    grade = query.get("grade") if query.get("grade") in ("general", "major") else None
    department = (query.get("department") or "").strip()[:64] or None
    got = await api.get("/api/hazards", optional=True, grade=grade, department=department)
    if got is None:
        ctx.values.update(unavailable="/api/hazards")
        hazards: list[dict[str, Any]] = []
    else:
        hazards = got[0]
    columns: dict[str, list[dict[str, Any]]] = {status: [] for status in HAZARD_COLUMNS}
    for hazard in sorted(hazards, key=lambda h: h.get("reported_at") or "", reverse=True):
        columns.setdefault(_hazard_column(hazard), []).append(hazard)
    sites = [*_patrol_sites(ctx.request), *(str(h["site"]) for h in hazards if h.get("site"))]
    departments = await _departments(api, list(dict.fromkeys(sites)))
    kpis: list[dict[str, Any]] = []
    kpi_unavailable = None
    kpi_sites = dict.fromkeys([*_patrol_sites(ctx.request),
                               *(h.get("site") for h in hazards if h.get("site"))])
    for site_id in kpi_sites:
        try:
            kpi = await api.get("/api/kpi", optional=True, site=site_id)
        except ApiError as exc:
            if exc.status == 404:  # a site the patrol service does not know
                continue
            raise
        if kpi is None:
            kpi_unavailable = "/api/kpi"
            break
        kpis.append(kpi[0])
    ctx.values.update(columns=columns, kpis=kpis, kpi_unavailable=kpi_unavailable,
                      actions=_hazard_actions, per_column=HAZARD_CARDS_PER_COLUMN,
                      departments=departments, grade=grade, department=department,
                      all_departments=sorted({(d[0], d[1].split(" · ")[0]) for deps in
                                              departments.values() for d in deps}))


async def _build_reports(ctx: Ctx) -> None:
    today = datetime.now(UTC)
    ctx.values.update(
        sites=[(s, _site_name(ctx.request, s, ctx.lang)) for s in _patrol_sites(ctx.request)],
        this_month=f"{today:%Y-%m}", this_quarter=f"{today.year}-Q{(today.month - 1) // 3 + 1}",
        quarters=[f"{today.year - y}-Q{q}" for y in (0, 1) for q in (4, 3, 2, 1)])


@router.get("/console/p/reports")
@policy("sites")
async def p_reports(request: Request) -> Response:
    """The report forms for the caller's patrol sites (GET /api/reports/monthly|quarterly)."""
    return await _partial(request, "reports.html", _build_reports)


@router.get("/console/p/hazards")
@policy("sites")
async def p_hazards(request: Request) -> Response:
    """Hazards as a board by lifecycle state, with the KPIs (GET /api/hazards, /api/kpi)."""
    return await _partial(request, "hazards.html", _build_hazards)


async def _build_devices(ctx: Ctx) -> None:
    is_admin = ROLE_RANK[ctx.user.role] >= ROLE_RANK["admin"]
    ctx.values.update(is_admin=is_admin)
    if not is_admin:
        return
    registry = _sites(ctx.request)
    sites = []
    for site_id, site in registry.sites.items():
        if ctx.user.sees(site_id):
            sites.append({"id": site_id, "name": _site_name(ctx.request, site_id, ctx.lang),
                          "communities": [{"id": c.id, "name": c.name} for c in site.communities]})
    devices = [d for d in await _devices(Api(ctx.request)) if d.get("registered")]
    devices.sort(key=lambda d: (d.get("site") or "", d["device_id"]))
    models = sorted(ctx.request.app.state.hub.normalizer.profiles)
    ctx.values.update(sites=sites, devices=devices, models=models)


@router.get("/console/p/devices")
@policy("sites")
async def p_devices(request: Request) -> Response:
    """The registered devices of the caller's sites with add, edit, retire and CSV import."""
    return await _partial(request, "devices.html", _build_devices)


def _grafana_links(request: Request, alarm: dict[str, Any]) -> list[tuple[str, str]]:
    base = getattr(request.app.state.hub.settings, "grafana_url", None)
    if not base:
        return []
    raised = _parse_time(alarm.get("raised_at")) or datetime.now(UTC)
    ended = _parse_time(alarm.get("cleared_at")) or datetime.now(UTC)
    window = {
        "from": int((raised - timedelta(hours=1)).timestamp() * 1000),
        "to": int((max(ended, raised) + timedelta(minutes=30)).timestamp() * 1000),
        "var-site": alarm.get("site"),
        "var-device": alarm.get("device_id"),
    }
    links = []
    uid = GRAFANA_DASHBOARDS.get(alarm.get("kind") or "")
    if uid:
        links.append((uid, f"{base.rstrip('/')}/d/{uid}/?{urlencode(window)}"))
    overview = {k: v for k, v in window.items() if k != "var-device"}
    links.append(("safety-hub-overview",
                  f"{base.rstrip('/')}/d/safety-hub-overview/?{urlencode(overview)}"))
    return links


async def _build_alarm(ctx: Ctx, alarm_id: str) -> None:
    api = Api(ctx.request)
    got = await api.get(f"/api/alarms/{alarm_id}")
    assert got is not None
    alarm = got[0]
    ctx.values.update(alarm=alarm, history=alarm.get("history", []),
                      notifications=alarm.get("notifications", []),
                      notify_on=_notify_on(ctx.request),
                      grafana=_grafana_links(ctx.request, alarm))


def _notify_on(request: Request) -> bool:
    return getattr(request.app.state, "notify", None) is not None


async def _build_duty(ctx: Ctx) -> None:
    api = Api(ctx.request)
    notify_on = _notify_on(ctx.request)
    ctx.values.update(notify_on=notify_on, duty=[], silences=[], received=None)
    if not notify_on:
        return
    duty = await api.get("/api/duty")
    silences = await api.get("/api/silences")
    received = None
    standin = getattr(ctx.request.app.state, "notify_standin", None)  # hub demo only
    if standin is not None and caller_of(ctx.request).sites is None:  # every site's messages
        received = await api.get("/api/notify/received", limit=20)
    ctx.values.update(duty=duty[0] if duty else [], silences=silences[0] if silences else [],
                      received=received[0] if received else None)


@router.get("/console/p/duty")
@policy("sites")
async def p_duty(request: Request) -> Response:
    """Who is on duty now and next, the silences in force, the demo's stand-in messages."""
    return await _partial(request, "duty.html", _build_duty)


@router.get("/console/p/alarm/{alarm_id}")
@policy("sites")
async def p_alarm(request: Request, alarm_id: str) -> Response:
    """One alarm's facts, actions, history and Grafana links."""
    return await _partial(request, "alarm.html", _build_alarm, alarm_id)
