"""Point specs compiled for speed: the items a payload yields and the points built from them."""

from __future__ import annotations

import re
from typing import Any

from hub.ingest.normalize.context import BaseTags, MessageContext
from hub.ingest.normalize.refused import BACKSLASH_END, Refused
from hub.ingest.normalize.values import compile_value, path_getter
from hub.model import FieldValue, Point
from hub.profiles.functions import ABSENT, LOOKUPS
from hub.profiles.schema import PointSpec

_NO_GROUPS: dict[str, str] = {}  # the key-pattern groups of a point without ``each_key``


class CompiledPoint:
    """A PointSpec compiled for speed."""

    def __init__(self, spec: PointSpec, from_text: bool) -> None:
        self.measurement = spec.measurement
        self.each = path_getter(spec.each) if spec.each else None
        self.each_key = re.compile(spec.each_key) if spec.each_key else None
        self.tags = [(n, compile_value(n, s, from_text, is_tag=True))
                     for n, s in spec.tags.items()]
        self.fields = [(n, compile_value(n, s, from_text)) for n, s in spec.fields.items()]
        self.lookups = [LOOKUPS[name] for name in spec.lookups]
        # only derived values and lookups read the message context
        self.uses_context = bool(self.lookups) or any(
            v.derived is not None for v in (*spec.tags.values(), *spec.fields.values()))
        # one point per message with only the base tags (most models): no item list, no tag sort
        self.simple = (
            self.each is None and self.each_key is None and not self.tags and not self.lookups
        )

    def items(self, payload: Any) -> list[tuple[Any, dict[str, str]]]:
        """The items this point spec yields a point for, with their key-pattern groups."""
        if self.each is not None:
            items = self.each(payload, {})
            if items is ABSENT or items is None:
                return []
            if not isinstance(items, list):
                raise Refused("bad_type", f"{self.measurement}: expected a list")
            return [(item, {}) for item in items]
        if self.each_key is not None:
            if not isinstance(payload, dict):
                return []
            found = []
            for key, value in payload.items():
                match = self.each_key.match(key)
                if match:
                    found.append((value, match.groupdict()))
            return found
        return [(payload, {})]

    def build(
        self, payload: Any, ctx: MessageContext, base_tags: BaseTags, time_ns: int
    ) -> list[tuple[Point, dict[str, FieldValue]]]:
        """Build this spec's points from a payload (``base_tags`` sorted by key)."""
        if self.simple:
            fields: dict[str, FieldValue] = {}
            for name, fn in self.fields:
                value = fn(payload, _NO_GROUPS, ctx)
                if value is not ABSENT:
                    fields[name] = value
            if not fields:
                return []
            return [(Point(self.measurement, base_tags, tuple(fields.items()), time_ns), fields)]
        built = []
        for item, groups in self.items(payload):
            fields = {}
            for name, fn in self.fields:
                value = fn(item, groups, ctx)
                if value is not ABSENT:
                    fields[name] = value
            if not fields:
                continue
            tags = list(base_tags)
            for name, fn in self.tags:
                value = fn(item, groups, ctx)
                if value is not ABSENT:
                    text = str(value)
                    if text.endswith("\\"):
                        raise Refused("bad_value", f"{name}: {text!r} ends with {BACKSLASH_END}")
                    tags.append((name, text))
            for lookup in self.lookups:
                tags.extend(lookup(ctx, fields))
            tags.sort()
            point = Point(self.measurement, tuple(tags), tuple(fields.items()), time_ns)
            built.append((point, fields))
        return built

