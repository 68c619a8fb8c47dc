"""Checks of an onboarded device or checkpoint against the profiles and the site, every error
named (``id: ...``, ``community: ...``), and the CSV reader of ``POST .../import``."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection, Mapping
from typing import Any

from hub.onboarding.tables import CHECKPOINT_FIELDS, DEVICE_FIELDS, ID_MAX, NAME_MAX
from hub.sites import Site, SiteRegistry

FORBIDDEN = set("+#/$\x00 \t\r\n")  # an id is an MQTT user name and a topic level
IMPORT_MAX_ROWS = 10_000
IMPORT_MAX_BYTES = 4 * 1024 * 1024


def _text(value: Any, name: str, limit: int, errors: list[str],
          required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.append(f"{name}: required")
        return None
    if not isinstance(value, str):
        errors.append(f"{name}: expected text, got {type(value).__name__}")
        return None
    text = value.strip()
    if len(text) > limit:
        errors.append(f"{name}: at most {limit} characters, got {len(text)}")
    if not text.isprintable():
        errors.append(f"{name}: control characters are not allowed")
    return text


def _number(value: Any, name: str, low: float, high: float, errors: list[str]) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors.append(f"{name}: expected a number, got {value!r}")
        return None
    if not math.isfinite(number) or not low <= number <= high:
        errors.append(f"{name}: must be between {low:g} and {high:g}, got {value!r}")
        return None
    return number


def check_id(value: Any, errors: list[str], reserved: Collection[str]) -> str | None:
    """A device or checkpoint id that can be an MQTT user and topic level, or errors."""
    ident = _text(value, "id", ID_MAX, errors, required=True)
    if ident is None:
        return None
    bad = sorted(FORBIDDEN & set(ident))
    if bad:
        errors.append(f"id: {ident!r} has characters an MQTT user or topic level cannot "
                      f"hold: {' '.join(repr(c) for c in bad)}")
    if ident in reserved:
        errors.append(f"id: {ident!r} is the name of a broker user of the hub (reserved)")
    return ident


def device_fields(raw: Mapping[str, Any], registry: SiteRegistry, models: Collection[str],
                  reserved: Collection[str]) -> tuple[dict[str, Any], list[str]]:
    """Clean fields of one device and the list of what is wrong with them."""
    errors: list[str] = []
    unknown = sorted(set(raw) - set(DEVICE_FIELDS))
    if unknown:
        errors.append(f"unknown fields {', '.join(unknown)} (use {', '.join(DEVICE_FIELDS)})")
    fields: dict[str, Any] = {"id": check_id(raw.get("id"), errors, reserved)}
    model = _text(raw.get("model"), "model", 64, errors, required=True)
    if model is not None and model not in models:
        errors.append(f"model: no profile {model!r} (known: {', '.join(sorted(models))})")
    fields["model"] = model
    site_id = _text(raw.get("site"), "site", 64, errors, required=True)
    site = registry.sites.get(site_id or "")
    if site_id is not None and site is None:
        known = ", ".join(sorted(registry.sites))
        errors.append(f"site: unknown site {site_id!r} (known: {known})")
    fields["site"] = site_id
    fields["community"] = _community(raw.get("community"), site, errors)
    fields["name"] = _text(raw.get("name"), "name", NAME_MAX, errors)
    fields["place"] = _text(raw.get("place"), "place", 64, errors)
    fields["lat"] = _number(raw.get("lat"), "lat", -90, 90, errors)
    fields["lon"] = _number(raw.get("lon"), "lon", -180, 180, errors)
    return fields, errors


def _community(value: Any, site: Site | None, errors: list[str]) -> str | None:
    community = _text(value, "community", 64, errors)
    if community is not None and site is not None:
        known = [c.id for c in site.communities]
        if community not in known:
            errors.append(f"community: {site.site} has no community {community!r} "
                          f"(known: {', '.join(known) or 'none'})")
    return community


def checkpoint_fields(raw: Mapping[str, Any], registry: SiteRegistry,
                      reserved: Collection[str]) -> tuple[dict[str, Any], list[str]]:
    """Clean fields of one checkpoint and the list of what is wrong with them."""
    errors: list[str] = []
    unknown = sorted(set(raw) - set(CHECKPOINT_FIELDS))
    if unknown:
        errors.append(f"unknown fields {', '.join(unknown)} "
                      f"(use {', '.join(CHECKPOINT_FIELDS)})")
    fields: dict[str, Any] = {"id": check_id(raw.get("id"), errors, reserved)}
    site_id = _text(raw.get("site"), "site", 64, errors, required=True)
    site = registry.sites.get(site_id or "")
    if site_id is not None and site is None:
        known = ", ".join(sorted(registry.sites))
        errors.append(f"site: unknown site {site_id!r} (known: {known})")
    fields["site"] = site_id
    tag = _text(raw.get("tag_uid"), "tag_uid", 64, errors, required=True)
    if tag is not None:
        if not all(c in "0123456789abcdefABCDEF" for c in tag) or len(tag) % 2:
            errors.append(f"tag_uid: expected hex bytes (e.g. 04A1B2C3D4E5F6), got {tag!r}")
        owner = registry.checkpoint_for_tag(tag)
        if owner is not None and (owner[0].site, owner[1].id) != (site_id, fields["id"]):
            errors.append(f"tag_uid: {tag} is fixed at checkpoint {owner[1].id} of "
                          f"{owner[0].site} already")
        tag = tag.upper()
    fields["tag_uid"] = tag
    route = _text(raw.get("route"), "route", 64, errors)
    if route is not None and site is not None and route not in [r.id for r in site.routes]:
        errors.append(f"route: {site.site} has no route {route!r} "
                      f"(known: {', '.join(r.id for r in site.routes) or 'none'})")
    fields["route"] = route
    fields["name"] = _text(raw.get("name"), "name", NAME_MAX, errors, required=True)
    fields["community"] = _community(raw.get("community"), site, errors)
    fields["lat"] = _number(raw.get("lat"), "lat", -90, 90, errors)
    fields["lon"] = _number(raw.get("lon"), "lon", -180, 180, errors)
    return fields, errors


def read_csv(data: bytes, columns: tuple[str, ...]) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of a CSV upload (header row naming the columns), and errors about its shape."""
    if len(data) > IMPORT_MAX_BYTES:
        return [], [f"file: at most {IMPORT_MAX_BYTES} bytes, got {len(data)}"]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [f"file: not UTF-8 ({exc.reason} at byte {exc.start})"]
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    errors = []
    missing = [c for c in ("id",) if c not in header]
    unknown = [h for h in header if h not in columns]
    if missing:
        errors.append(f"header: missing column {', '.join(missing)}")
    if unknown:
        errors.append(f"header: unknown columns {', '.join(unknown)} (use {', '.join(columns)})")
    if errors:
        return [], errors
    rows = []
    for number, row in enumerate(reader, start=2):
        if number - 1 > IMPORT_MAX_ROWS:
            return [], [f"file: at most {IMPORT_MAX_ROWS} rows"]
        if None in row:
            errors.append(f"line {number}: more values than columns")
            continue
        cleaned = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        rows.append({k: v for k, v in cleaned.items() if v != ""})
    return rows, errors
