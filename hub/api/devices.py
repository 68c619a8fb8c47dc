"""Live onboarding over HTTP: devices and checkpoints added, changed, retired, imported.

An admin of a site (or of all sites) may change that site's registry. Every invalid field is
named in ``errors`` (422). ``POST /api/devices`` answers 201 with the device and, when the broker
makes per-device credentials, ``mqtt_password`` (shown this once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request

from hub.api.accounts import audit
from hub.api.auth import User, require_caller
from hub.api.scope import filter_sites, policy, refuse_write, require_site
from hub.onboarding.service import BrokerRefused, Onboarding, OnboardingError
from hub.onboarding.tables import CHECKPOINT_FIELDS, DEVICE_FIELDS
from hub.onboarding.validate import read_csv

router = APIRouter(tags=["onboarding"])

Admin = Annotated[User, Depends(require_caller("admin"))]
Viewer = Annotated[User, Depends(require_caller("viewer"))]
Fields = Annotated[dict[str, Any], Body(description="device or checkpoint fields")]


def _onboarding(request: Request) -> Onboarding:
    service = getattr(request.app.state.hub, "onboarding", None)
    if not isinstance(service, Onboarding):
        raise HTTPException(503, detail={"error": "unavailable",
                                         "message": "live onboarding is not enabled"})
    return service


def _fail(exc: OnboardingError) -> HTTPException:
    return HTTPException(exc.status, detail={"error": "invalid" if exc.status == 422 else
                                             "not_found" if exc.status == 404 else "conflict",
                                             "message": str(exc), "errors": exc.errors})


def _broker_failed(exc: Exception) -> HTTPException:
    return HTTPException(502, detail={"error": "broker", "message": f"the broker refused the "
                                      f"change, nothing was changed: {exc}"})


def _call(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = fn(*args, **kwargs)
        return result
    except OnboardingError as exc:
        raise _fail(exc) from None
    except BrokerRefused as exc:
        raise _broker_failed(exc) from None


def _site_of_body(body: dict[str, Any]) -> str:
    site = body.get("site")
    if not isinstance(site, str) or not site:
        raise HTTPException(422, detail={"error": "invalid", "message": "site: required",
                                         "errors": ["site: required"]})
    return site


@router.post("/api/devices", status_code=201)
@policy("sites")
def add_device(request: Request, user: Admin, body: Fields) -> dict[str, Any]:
    """Onboard a device ``{id, model, site, community?, name?, lat?, lon?, place?}``."""
    refuse_write(request, _site_of_body(body))
    result = _call(_onboarding(request).add_device, body, user.name)
    audit(request, user.name, "device.add", target=result["id"], site=result["site"],
          detail={"model": result["model"]})
    return result


@router.patch("/api/devices/{device_id}")
@policy("sites")
def update_device(request: Request, user: Admin, device_id: str,
                  body: Fields) -> dict[str, Any]:
    """Change a device's fields (a move needs admin rights in both sites)."""
    service = _onboarding(request)
    existing = service.hub.sites.devices.get(device_id)
    require_site(request, existing.site.site if existing else None, "device", device_id)
    if "site" in body:
        refuse_write(request, _site_of_body(body))
    result = _call(service.update_device, device_id, body, user.name)
    audit(request, user.name, "device.update", target=device_id, site=result["site"],
          detail={k: body[k] for k in body if k in DEVICE_FIELDS})
    return result


@router.delete("/api/devices/{device_id}")
@policy("sites")
def retire_device(request: Request, user: Admin, device_id: str) -> dict[str, Any]:
    """Retire a device: off the registry, its broker credentials deleted."""
    service = _onboarding(request)
    existing = service.hub.sites.devices.get(device_id)
    require_site(request, existing.site.site if existing else None, "device", device_id)
    result = _call(service.retire_device, device_id, user.name)
    audit(request, user.name, "device.retire", target=device_id, site=result["site"])
    return result


@router.post("/api/devices/import", status_code=201)
@policy("sites")
async def import_devices(request: Request, user: Admin) -> dict[str, Any]:
    """CSV (header: id, model, site, community, name, lat, lon, place): all rows or none."""
    return await _import_csv(
        request, user, DEVICE_FIELDS, _onboarding(request).import_devices, "device.import",
        lambda result: {"added": result["added"], "updated": result["updated"]})


async def _import_csv(request: Request, user: User, fields: Any,
                      importer: Callable[..., dict[str, Any]], action: str,
                      detail: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Read a CSV body, refuse rows of another site (403), import all or none, audit it."""
    rows, errors = read_csv(await request.body(), fields)
    if errors:
        raise _fail(OnboardingError(errors))
    foreign = [f"line {n}: site {r.get('site')!r} is not yours"
               for n, r in enumerate(rows, start=2) if not user.sees(r.get("site"))]
    if foreign:
        raise HTTPException(403, detail={"error": "forbidden", "message": "; ".join(foreign),
                                         "errors": foreign})
    result = _call(importer, rows, user.name, user.sees)
    sites = sorted({r.get("site", "") for r in rows})
    audit(request, user.name, action, target=f"{len(rows)} rows",
          site=sites[0] if len(sites) == 1 else None, detail=detail(result))
    return result


# -- checkpoints -------------------------------------------------------------------------------


@router.get("/api/checkpoints")
@policy("sites")
def checkpoints(request: Request, _user: Viewer,
                site: str | None = Query(None)) -> list[dict[str, Any]]:
    """Patrol checkpoints with their tag, routes and place (a scoped caller: its sites)."""
    registry = _onboarding(request).hub.sites
    items = []
    for site_id, entry in registry.sites.items():
        if site is not None and site_id != site:
            continue
        for cp in entry.checkpoints:
            routes = [r.id for r in registry.routes_for_checkpoint(site_id, cp.id)]
            items.append({"id": cp.id, "site": site_id, "tag_uid": cp.tag_uid, "name": cp.name,
                          "community": cp.community, "lat": cp.lat, "lon": cp.lon,
                          "routes": routes})
    return filter_sites(request, items)


@router.post("/api/checkpoints", status_code=201)
@policy("sites")
def add_checkpoint(request: Request, user: Admin, body: Fields) -> dict[str, Any]:
    """Add a checkpoint ``{id, tag_uid, site, name, route?, community?, lat?, lon?}``."""
    refuse_write(request, _site_of_body(body))
    result = _call(_onboarding(request).add_checkpoint, body, user.name)
    audit(request, user.name, "checkpoint.add", target=result["id"], site=result["site"])
    return result


@router.post("/api/checkpoints/import", status_code=201)
@policy("sites")
async def import_checkpoints(request: Request, user: Admin) -> dict[str, Any]:
    """CSV (header: id, tag_uid, site, route, name, community, lat, lon): all rows or none."""
    return await _import_csv(request, user, CHECKPOINT_FIELDS,
                             _onboarding(request).import_checkpoints, "checkpoint.import",
                             lambda result: result)


def _checkpoint_site(request: Request, checkpoint_id: str, site: str | None) -> str:
    service = _onboarding(request)
    if site is None:
        found = service.find_checkpoint(checkpoint_id)
        site = found[0] if found else None
    require_site(request, site, "checkpoint", checkpoint_id)
    assert site is not None
    return site


@router.patch("/api/checkpoints/{checkpoint_id}")
@policy("sites")
def update_checkpoint(request: Request, user: Admin, checkpoint_id: str, body: Fields,
                      site: str | None = Query(None)) -> dict[str, Any]:
    """Change a checkpoint (``site`` names it when two sites use the same id)."""
    site_id = _checkpoint_site(request, checkpoint_id, site)
    service = _onboarding(request)
    current = next((c for c in service.hub.sites.sites[site_id].checkpoints
                    if c.id == checkpoint_id), None)
    if current is None:
        raise HTTPException(404, detail={"error": "not_found",
                                         "message": f"no checkpoint {checkpoint_id!r}"})
    merged = {"id": checkpoint_id, "site": site_id, "tag_uid": current.tag_uid,
              "name": current.name, "community": current.community, "lat": current.lat,
              "lon": current.lon, **{k: v for k, v in body.items() if k != "site"}}
    result = _call(service.add_checkpoint, merged, user.name, replace=True)
    audit(request, user.name, "checkpoint.update", target=checkpoint_id, site=site_id,
          detail={k: body[k] for k in body if k in CHECKPOINT_FIELDS})
    return result


@router.delete("/api/checkpoints/{checkpoint_id}")
@policy("sites")
def retire_checkpoint(request: Request, user: Admin, checkpoint_id: str,
                      site: str | None = Query(None)) -> dict[str, Any]:
    """Retire a checkpoint (not the last of a route)."""
    site_id = _checkpoint_site(request, checkpoint_id, site)
    result = _call(_onboarding(request).retire_checkpoint, site_id, checkpoint_id, user.name)
    audit(request, user.name, "checkpoint.retire", target=checkpoint_id, site=site_id)
    return result
