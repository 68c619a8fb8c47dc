"""Decode a message with its profile and normalize it into the canonical schema.

Profiles are compiled once into small closures, so the per-message work is a dictionary walk
and a few conversions. Every refusal carries a short reason code (for metrics) and a sentence an
operator can read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from hub.ingest.router import TopicRoute, TopicRouter
from hub.model import FieldValue, InboundMessage, Point, Reading, Refusal
from hub.profiles.converters import CONVERTERS
from hub.profiles.schema import MessageSpec, PointSpec, Profile, TimeSpec, ValueSpec
from hub.sites.registry import UNASSIGNED_SITE, UNKNOWN_CHECKPOINT, SiteRegistry

EARLIEST_PLAUSIBLE_NS = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
MAX_AHEAD_NS = 300 * 1_000_000_000
_ABSENT = object()
# A device's base tags, sorted by key: (community?, device_id, model, site)
BaseTags = tuple[tuple[str, str], ...]
_NO_GROUPS: dict[str, str] = {}  # the key-pattern groups of a point without ``each_key``
# Tag values (device id, payload tags) that line protocol cannot carry: encode_point refuses
# them; refused here, the operator reads why (the pipeline's catch-all would say "internal").
_BACKSLASH_END = "a backslash, which InfluxDB cannot store in a tag"


class Refused(Exception):
    """A message cannot be normalized; ``reason`` is a short code, the text is for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------- value compilation

Getter = Callable[[Any, dict[str, str]], Any]


def _path_getter(path: str) -> Getter:
    if path == ".":
        return lambda item, groups: item
    parts = path.split(".")
    if len(parts) == 1:
        key = parts[0]
        return lambda item, groups: item.get(key, _ABSENT) if isinstance(item, dict) else _ABSENT

    def get(item: Any, groups: dict[str, str]) -> Any:
        for part in parts:
            if not isinstance(item, dict):
                return _ABSENT
            item = item.get(part, _ABSENT)
            if item is _ABSENT:
                return _ABSENT
        return item

    return get


def _raw_text(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def _coerce(name: str, kind: str, value: Any, from_text: bool) -> FieldValue:
    """Turn a raw value into the declared type, refusing wrong types."""
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            result = float(value)
        elif from_text and isinstance(value, str):
            try:
                result = float(value)
            except ValueError:
                raise Refused("bad_type", f"{name}: {value!r} is not a number") from None
        else:
            raise Refused("bad_type", f"{name}: expected a number, got {value!r}")
        if result != result or result in (float("inf"), float("-inf")):
            raise Refused("bad_value", f"{name}: {value!r} is not a finite number")
        return result
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if from_text and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise Refused("bad_type", f"{name}: {value!r} is not an integer") from None
        raise Refused("bad_type", f"{name}: expected an integer, got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str):
            try:
                return bool(CONVERTERS["truthy_text"](value))
            except ValueError:
                pass
        raise Refused("bad_type", f"{name}: expected true/false, got {value!r}")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _raw_text(value)
    raise Refused("bad_type", f"{name}: expected text, got {value!r}")


ValueFn = Callable[[Any, dict[str, str], "_Context"], Any]


def _compile_value(name: str, spec: ValueSpec, from_text: bool) -> ValueFn:
    """Compile a ValueSpec into fn(item, groups, ctx) -> canonical value or _ABSENT."""
    if spec.const is not None:
        const = spec.const
        return lambda item, groups, ctx: const
    if spec.derived is not None:
        derived = DERIVED_VALUES[spec.derived]
        return lambda item, groups, ctx: derived(ctx)
    getter: Getter
    if spec.group is not None:
        group = spec.group
        getter = lambda item, groups: groups.get(group, _ABSENT)  # noqa: E731
    else:
        assert spec.path is not None
        getter = _path_getter(spec.path)
    absent = {_raw_text(v) for v in spec.absent_if} if spec.absent_if else None
    mapping = {str(k): v for k, v in spec.map.items()} if spec.map is not None else None
    converter = CONVERTERS[spec.converter] if spec.converter else None
    kind = spec.type
    divisor: float | None = None
    scale = spec.scale
    if scale is not None and scale != 0:
        inverse = 1 / scale
        if abs(inverse - round(inverse)) < 1e-9:
            divisor, scale = float(round(inverse)), None
    offset = spec.offset
    allowed = set(spec.allowed) if spec.allowed is not None else None
    low, high = spec.min, spec.max
    required = spec.required

    plain = absent is None and mapping is None and converter is None
    scaled = divisor is not None or scale is not None or offset is not None
    key = spec.path if spec.group is None and spec.path and "." not in spec.path else None

    def value(item: Any, groups: dict[str, str], ctx: _Context) -> Any:
        raw = getter(item, groups)
        if raw is _ABSENT or raw is None:
            if required:
                raise Refused("missing_field", f"{name}: missing from the payload")
            return _ABSENT
        if isinstance(raw, (dict, list)):
            raise Refused("bad_type", f"{name}: expected a value, got a {type(raw).__name__}")
        if absent is not None and _raw_text(raw) in absent:
            return _ABSENT
        if mapping is not None:
            key = _raw_text(raw)
            if key not in mapping:
                raise Refused("bad_value", f"{name}: unexpected value {raw!r}")
            raw = mapping[key]
        elif converter is not None:
            try:
                raw = converter(raw)
            except (ValueError, TypeError):
                raise Refused("bad_value", f"{name}: cannot convert {raw!r}") from None
        result = _coerce(name, kind, raw, from_text)
        if divisor is not None or scale is not None or offset is not None:
            if not isinstance(result, (int, float)) or isinstance(result, bool):
                raise Refused("bad_type", f"{name}: cannot scale {raw!r}")
            number = float(result)
            if divisor is not None:
                number /= divisor
            elif scale is not None:
                number *= scale
            if offset is not None:
                number += offset
            result = round(number) if kind == "int" else number
        if allowed is not None and result not in allowed:
            raise Refused(
                "bad_value", f"{name}: {result!r} is not one of {sorted(map(str, allowed))}"
            )
        if isinstance(result, (int, float)) and (
            (low is not None and result < low) or (high is not None and result > high)
        ):
            raise Refused("out_of_range", f"{name}: {result!r} outside [{low}, {high}]")
        return result

    if not plain or key is None or (allowed is not None and scaled):
        return value
    # The common case, compiled lean: a top-level key holding a value of the declared type
    # (a JSON number for float/int, a string for str, a bool for bool). Anything else takes
    # the general path above, which gives the same result or the same refusal.
    lo = -float("inf") if low is None else low
    hi = float("inf") if high is None else high
    finite = (float("-inf"), float("inf"))

    if kind == "float":

        def fast_float(item: Any, groups: dict[str, str], ctx: _Context) -> Any:
            if type(item) is dict:
                raw: Any = item.get(key)
                t = type(raw)
                if t is float or t is int:
                    number = float(raw)
                    if number == number and number not in finite:
                        if divisor is not None:
                            number /= divisor
                        elif scale is not None:
                            number *= scale
                        if offset is not None:
                            number += offset
                        if lo <= number <= hi and (allowed is None or number in allowed):
                            return number
            return value(item, groups, ctx)

        return fast_float
    if kind == "int" and not scaled:

        def fast_int(item: Any, groups: dict[str, str], ctx: _Context) -> Any:
            if type(item) is dict:
                raw = item.get(key)
                if type(raw) is int and lo <= raw <= hi and (allowed is None or raw in allowed):
                    return raw
            return value(item, groups, ctx)

        return fast_int
    if kind == "str" and not scaled:

        def fast_str(item: Any, groups: dict[str, str], ctx: _Context) -> Any:
            if type(item) is dict:
                raw = item.get(key)
                if type(raw) is str and (allowed is None or raw in allowed):
                    return raw
            return value(item, groups, ctx)

        return fast_str
    if kind == "bool" and not scaled:

        def fast_bool(item: Any, groups: dict[str, str], ctx: _Context) -> Any:
            if type(item) is dict:
                raw = item.get(key)
                if type(raw) is bool and lo <= raw <= hi and (allowed is None or raw in allowed):
                    return raw
            return value(item, groups, ctx)

        return fast_bool
    return value


# ---------------------------------------------------------------- time


def _compile_time(spec: TimeSpec | None) -> Callable[[Any], int | None]:
    """Compile a TimeSpec into fn(payload) -> device time in ns, or None when unreadable."""
    if spec is None:
        return lambda payload: None
    getter = _path_getter(spec.path)
    fmt = spec.format
    zone = ZoneInfo(spec.zone) if spec.zone else UTC

    def number(raw: Any) -> float | None:
        if isinstance(raw, bool):
            return None
        if isinstance(raw, (int, float)):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                return None
        return None

    if fmt in ("epoch_s", "epoch_ms"):
        factor = 1_000_000_000 if fmt == "epoch_s" else 1_000_000

        def epoch(payload: Any) -> int | None:
            raw = getter(payload, {})
            if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) < 10**15:
                return raw * factor  # exact for integer epochs, no float rounding
            value = number(raw)
            if value is None or value != value or abs(value) > 1e15:
                return None
            return int(value * factor)

        return epoch

    def parse(payload: Any) -> int | None:
        raw = getter(payload, {})
        if not isinstance(raw, str):
            return None
        try:
            if fmt == "iso8601":
                parsed = datetime.fromisoformat(raw)
            else:
                parsed = datetime.strptime(raw, fmt)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        seconds = int(parsed.timestamp())
        return seconds * 1_000_000_000 + parsed.microsecond * 1000

    return parse


# ---------------------------------------------------------------- context, derived, lookups


class _Context:
    """What a message's values may depend on besides the payload."""

    __slots__ = ("device_id", "device_time_ns", "received_ns", "site", "sites")

    def __init__(
        self,
        device_id: str,
        site: str,
        sites: SiteRegistry,
        received_ns: int,
        device_time_ns: int | None,
    ) -> None:
        self.device_id = device_id
        self.site = site
        self.sites = sites
        self.received_ns = received_ns
        self.device_time_ns = device_time_ns


def _late_s(ctx: _Context) -> Any:
    if ctx.device_time_ns is None:
        return _ABSENT
    return max(0, (ctx.received_ns - ctx.device_time_ns) // 1_000_000_000)


DERIVED_VALUES: dict[str, Callable[[_Context], Any]] = {"late_s": _late_s}


def _patrol_checkpoint(ctx: _Context, fields: dict[str, FieldValue]) -> list[tuple[str, str]]:
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


LOOKUP_FUNCTIONS: dict[str, Callable[[_Context, dict[str, FieldValue]], list[tuple[str, str]]]] = {
    "patrol_checkpoint": _patrol_checkpoint
}


# ---------------------------------------------------------------- points


class _CompiledPoint:
    """A PointSpec compiled for speed."""

    def __init__(self, spec: PointSpec, from_text: bool) -> None:
        self.measurement = spec.measurement
        self.each = _path_getter(spec.each) if spec.each else None
        self.each_key = re.compile(spec.each_key) if spec.each_key else None
        self.tags = [(n, _compile_value(n, s, from_text)) for n, s in spec.tags.items()]
        self.fields = [(n, _compile_value(n, s, from_text)) for n, s in spec.fields.items()]
        self.lookups = [LOOKUP_FUNCTIONS[name] for name in spec.lookups]
        # one point per message with only the base tags (most models): no item list, no tag sort
        self.simple = (
            self.each is None and self.each_key is None and not self.tags and not self.lookups
        )

    def items(self, payload: Any) -> list[tuple[Any, dict[str, str]]]:
        """The items this point spec yields a point for, with their key-pattern groups."""
        if self.each is not None:
            items = self.each(payload, {})
            if items is _ABSENT or items is None:
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
        self, payload: Any, ctx: _Context, base_tags: BaseTags, time_ns: int
    ) -> list[tuple[Point, dict[str, FieldValue]]]:
        """Build this spec's points from a payload (``base_tags`` sorted by key)."""
        if self.simple:
            fields: dict[str, FieldValue] = {}
            for name, fn in self.fields:
                value = fn(payload, _NO_GROUPS, ctx)
                if value is not _ABSENT:
                    fields[name] = value
            if not fields:
                return []
            return [(Point(self.measurement, base_tags, tuple(fields.items()), time_ns), fields)]
        built = []
        for item, groups in self.items(payload):
            fields = {}
            for name, fn in self.fields:
                value = fn(item, groups, ctx)
                if value is not _ABSENT:
                    fields[name] = value
            if not fields:
                continue
            tags = list(base_tags)
            for name, fn in self.tags:
                value = fn(item, groups, ctx)
                if value is not _ABSENT:
                    text = str(value)
                    if text.endswith("\\"):
                        raise Refused("bad_value", f"{name}: {text!r} ends with {_BACKSLASH_END}")
                    tags.append((name, text))
            for lookup in self.lookups:
                tags.extend(lookup(ctx, fields))
            tags.sort()
            point = Point(self.measurement, tuple(tags), tuple(fields.items()), time_ns)
            built.append((point, fields))
        return built


class _CompiledMessage:
    """A MessageSpec compiled for speed."""

    def __init__(self, profile: Profile, name: str, spec: MessageSpec) -> None:
        self.profile = profile
        self.name = name
        self.spec = spec
        from_text = spec.decoder == "csv"
        self.points = [_CompiledPoint(p, from_text) for p in spec.points]
        self.time = _compile_time(spec.time)
        self.device_id_getter = _path_getter(spec.device_id_path) if spec.device_id_path else None
        self.id_pattern = (
            re.compile(profile.device_id_pattern) if profile.device_id_pattern else None
        )
        self.implies = spec.implies

    def decode(self, payload: bytes) -> Any:
        """Decode the payload bytes with this message's decoder."""
        spec = self.spec
        if spec.decoder == "json":
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise Refused("bad_json", f"not valid JSON: {exc}") from None
            if not isinstance(data, dict):
                raise Refused("bad_json", f"expected a JSON object, got {type(data).__name__}")
            return data
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise Refused("not_text", "payload is not UTF-8 text") from None
        if spec.decoder == "status":
            return text
        assert spec.csv is not None
        csv = spec.csv
        values = [v.strip() for v in text.split(csv.delimiter)]
        needed = csv.min_columns or len(csv.columns)
        if len(values) < needed:
            raise Refused(
                "bad_csv", f"expected {len(csv.columns)} columns, got {len(values)} (cut short?)"
            )
        if len(values) > len(csv.columns):
            raise Refused("bad_csv", f"expected {len(csv.columns)} columns, got {len(values)}")
        row = dict(zip(csv.columns, values, strict=False))
        for column, expected in csv.expect.items():
            if row.get(column) != expected:
                raise Refused(
                    "bad_csv", f"column {column}: expected {expected!r}, got {row.get(column)!r}"
                )
        return row


# ---------------------------------------------------------------- the normalizer


class Normalizer:
    """Turns inbound messages into Readings (or Refusals) using profiles and site data."""

    def __init__(
        self, profiles: list[Profile], sites: SiteRegistry, max_payload_bytes: int = 256 * 1024
    ) -> None:
        self.profiles = {p.model: p for p in profiles}
        self.router = TopicRouter(profiles)
        self.sites = sites
        self.max_payload_bytes = max_payload_bytes
        self._compiled: dict[int, _CompiledMessage] = {
            id(route): _CompiledMessage(route.profile, route.message_name, route.spec)
            for route in self.router.routes
        }
        # unregistered devices' (device_id, model, site) tags; registered devices' model, site
        # and community tags per (model, site, community)
        self._device_tags: dict[str, BaseTags] = {}
        self._group_tags: dict[tuple[str, str, str | None], tuple[BaseTags, BaseTags]] = {}
        self._shared_tags: dict[tuple[str, str], tuple[str, str]] = {}

    def process(self, message: InboundMessage) -> Reading | Refusal:
        """Normalize one message; never raises for bad input."""
        try:
            return self._process(message)
        except Refused as exc:
            return self.refusal(message, exc.reason, exc.detail)
        except Exception as exc:  # one bad message never stops the loop
            return self.refusal(message, "internal", f"{type(exc).__name__}: {exc}")

    def refusal(self, message: InboundMessage, reason: str, detail: str) -> Refusal:
        """A refusal of ``message`` with its topic's model and device id where they are known."""
        matched = self.router.match(message.topic)
        return Refusal(
            topic=message.topic,
            received_ns=message.received_ns,
            reason=reason,
            detail=detail,
            head=message.payload[:64],
            device_id=matched[1] if matched else None,
            model=matched[0].profile.model if matched else None,
        )

    def _site_of(self, device_id: str, profile: Profile) -> tuple[str, str, BaseTags]:
        """(site, device id, base tags sorted by key: community?, device_id, model, site)."""
        device = self.sites.devices.get(device_id)
        if device is not None:
            # registered: built per message from the registry (no per-device cache: 100,000
            # devices), the model, site and community tags shared; the id string is the
            # registry's, one object per device (memory)
            site = device.site
            group = (profile.model, site.site, device.community if site.tag_community else None)
            shared = self._group_tags.get(group)
            if shared is None:
                shared = self._group_tags[group] = self._base_group(*group)
            before, after = shared
            return site.site, device.id, (*before, ("device_id", device.id), *after)
        cached = self._device_tags.get(device_id)
        if cached is not None:
            return UNASSIGNED_SITE, cached[0][1], cached  # no community: device_id first
        before, after = self._base_group(profile.model, UNASSIGNED_SITE, None)
        tags = (*before, ("device_id", device_id), *after)
        if len(self._device_tags) < 1_000_000:
            self._device_tags[device_id] = tags
        return UNASSIGNED_SITE, device_id, tags

    def _base_group(self, model: str, site: str, community: str | None) -> tuple[
            BaseTags, BaseTags]:
        """The shared tags that sort before and after ``device_id``."""
        before: BaseTags = (self._shared_tag("community", community),) if community else ()
        return before, (self._shared_tag("model", model), self._shared_tag("site", site))

    def _shared_tag(self, key: str, value: str) -> tuple[str, str]:
        """One tuple per distinct (key, value) of model, site and community tags."""
        tag = (key, value)
        return self._shared_tags.setdefault(tag, tag)

    def _process(self, message: InboundMessage) -> Reading:
        matched = self.router.match(message.topic)
        if matched is None:
            raise Refused("no_profile", f"no device profile handles topic {message.topic!r}")
        route, device_id = matched
        compiled = self._compiled[id(route)]
        profile = route.profile
        size = len(message.payload)
        if size > self.max_payload_bytes:
            raise Refused("too_large", f"payload of {size} bytes exceeds {self.max_payload_bytes}")
        if size == 0:
            raise Refused("empty", "empty payload (a cleared retained message?)")
        if compiled.id_pattern is not None and not compiled.id_pattern.match(device_id):
            raise Refused("bad_device_id", f"device id {device_id!r} does not fit {profile.model}")
        if device_id[-1] == "\\":
            raise Refused("bad_device_id", f"device id {device_id!r} ends with {_BACKSLASH_END}")
        payload = compiled.decode(message.payload)
        site, device_id, base_tags = self._site_of(device_id, profile)
        if route.spec.decoder == "status":
            return self._status(message, route, device_id, site, base_tags, payload)
        if compiled.device_id_getter is not None:
            claimed = compiled.device_id_getter(payload, {})
            if claimed is not _ABSENT and str(claimed) != device_id:
                raise Refused(
                    "device_mismatch", f"payload says device {claimed!r}, topic says {device_id!r}"
                )
        received = message.received_ns
        device_time = compiled.time(payload)
        extra_fields: list[tuple[str, FieldValue]] = []
        if device_time is not None and (
            device_time < EARLIEST_PLAUSIBLE_NS or device_time > received + MAX_AHEAD_NS
        ):
            extra_fields.append(("device_time_s", device_time / 1e9))
            device_time = None
        time_ns = device_time if device_time is not None else received
        ctx = _Context(device_id, site, self.sites, received, device_time)
        points: list[Point] = []
        values: dict[str, FieldValue] = {}
        for index, point_spec in enumerate(compiled.points):
            for point, fields in point_spec.build(payload, ctx, base_tags, time_ns):
                if index == 0 and not values:
                    values = fields
                    if extra_fields:
                        point = Point(
                            point.measurement,
                            point.tags,
                            point.fields + tuple(extra_fields),
                            point.time_ns,
                        )
                points.append(point)
        if not points:
            raise Refused("no_fields", "the payload has none of the profile's fields")
        if compiled.implies is not None:
            key = values.get(compiled.implies.field)
            implied = compiled.implies.values.get(str(key)) if key is not None else None
            if implied:
                values = {**values, **implied}
        return Reading(
            device_id=device_id,
            model=profile.model,
            kind=profile.kind,
            site=site,
            message=route.message_name,
            time_ns=time_ns,
            received_ns=received,
            points=tuple(points),
            values=values,
        )

    def _status(
        self,
        message: InboundMessage,
        route: TopicRoute,
        device_id: str,
        site: str,
        base_tags: BaseTags,
        text: str,
    ) -> Reading:
        spec = route.spec.status
        online_words = spec.online if spec else ["online"]
        offline_words = spec.offline if spec else ["offline"]
        word = text.lower()
        if word in online_words:
            online, reason = True, "message"
        elif word in offline_words:
            online, reason = False, "lwt"
        else:
            raise Refused("bad_status", f"status {text[:40]!r} is neither online nor offline")
        point = status_point(base_tags, route.profile.kind, online, reason, message.received_ns)
        return Reading(
            device_id=device_id,
            model=route.profile.model,
            kind=route.profile.kind,
            site=site,
            message="status",
            time_ns=message.received_ns,
            received_ns=message.received_ns,
            points=(point,),
            values={"online": online},
            online=online,
            status_reason=reason,
        )

    def base_tags(self, device_id: str, model: str) -> tuple[str, BaseTags]:
        """Return (site, base tags) of a device, for points the hub makes itself."""
        site, _device_id, tags = self._site_of(device_id, self.profiles[model])
        return site, tags


def status_point(
    base_tags: BaseTags, kind: str, online: bool, reason: str, time_ns: int
) -> Point:
    """Build a device_status point."""
    tags = tuple(sorted([*base_tags, ("kind", kind)]))
    return Point("device_status", tags, (("online", online), ("reason", reason)), time_ns)
