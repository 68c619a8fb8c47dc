"""The named functions profiles refer to: value converters, derived values, site lookups.

A profile names these (``converter:``, ``derived:``, ``lookups:``) and the profile schema
accepts exactly the keys of these registries; the normalizer calls the functions. Adding a
vendor needs no Python unless it needs a new kind of conversion, which then goes here, once,
with a test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from hub.sites import UNKNOWN_CHECKPOINT

if TYPE_CHECKING:
    from hub.ingest.normalize.context import MessageContext
    from hub.model import FieldValue

ABSENT: Final = object()  # what a value is when the payload (or a derived value) has none


def _nonzero(raw: Any) -> bool:
    """True when a number is not zero (e.g. a pressure reading of 0 means an empty slot)."""
    return float(raw) != 0.0


def _truthy_text(raw: Any) -> bool:
    """Read 1/0, true/false, on/off, yes/no as a bool."""
    text = str(raw).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _upper(raw: Any) -> str:
    """Upper-case text (tag UIDs are compared upper-case)."""
    return str(raw).strip().upper()


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "nonzero": _nonzero,
    "truthy_text": _truthy_text,
    "upper": _upper,
}


def _late_s(ctx: MessageContext) -> Any:
    """Seconds between the device's time and receipt (a patrol reader uploading late)."""
    if ctx.device_time_ns is None:
        return ABSENT
    return max(0, (ctx.received_ns - ctx.device_time_ns) // 1_000_000_000)


# Values computed by the hub, not read from the payload.
DERIVED: dict[str, Callable[[MessageContext], Any]] = {"late_s": _late_s}

def _patrol_checkpoint(ctx: MessageContext, fields: dict[str, FieldValue]) -> list[tuple[str, str]]:
    """Tags checkpoint_id and route_id from the scanned tag and the site's routes."""
    tag_uid = fields.get("tag_uid")
    found = ctx.sites.checkpoint_for_tag(str(tag_uid)) if tag_uid is not None else None
    reader_routes = [
        r
        for r in (ctx.sites.sites[ctx.site].routes if ctx.site in ctx.sites.sites else [])
        if ctx.device_id in r.readers
    ]
    if found is None:
        route = reader_routes[0].id if len(reader_routes) == 1 else UNKNOWN_CHECKPOINT
        return [("checkpoint_id", UNKNOWN_CHECKPOINT), ("route_id", route)]
    site, checkpoint = found
    routes = ctx.sites.routes_for_checkpoint(site.site, checkpoint.id)
    preferred = [r for r in routes if ctx.device_id in r.readers] or routes
    route_id = preferred[0].id if preferred else UNKNOWN_CHECKPOINT
    return [("checkpoint_id", checkpoint.id), ("route_id", route_id)]




# Site lookups a point may ask for; each adds tags.
LOOKUPS: dict[str, Callable[[MessageContext, dict[str, FieldValue]], list[tuple[str, str]]]] = {
    "patrol_checkpoint": _patrol_checkpoint
}
