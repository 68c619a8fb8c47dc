"""The small named registries profiles refer to: value converters, derived values, lookups.

A profile names these; adding a vendor needs no Python unless it needs a new kind of
conversion, which then goes here, once, with a test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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

# Values computed by the hub, not read from the payload (see hub.ingest.normalize).
DERIVED: frozenset[str] = frozenset({"late_s"})

# Site lookups a point may ask for (see hub.ingest.normalize); each adds tags.
LOOKUPS: frozenset[str] = frozenset({"patrol_checkpoint"})
