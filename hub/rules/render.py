"""Alarm message templates: ``{name}`` placeholders filled from a device's latest values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class _Ctx(dict[str, Any]):
    """Values for a template; a name it does not have shows as ``?``."""

    def __missing__(self, key: str) -> str:
        return "?"


_PLACEHOLDER = re.compile(r"\{(\w+)(?:![rsa])?(?::[^{}]*)?\}")


def render(template: str, values: Mapping[str, Any], value: Any) -> str:
    """Fill a message template; a missing or badly typed value shows plainly, never raises."""
    ctx = _Ctx(values)
    ctx["value"] = "?" if value is None else value
    try:
        return template.format_map(ctx)
    except (ValueError, TypeError, IndexError, AttributeError, KeyError):
        return _PLACEHOLDER.sub(lambda m: str(ctx[m.group(1)]), template)
