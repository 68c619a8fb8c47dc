"""InfluxDB 1.x line protocol: encode points (the hot path) and parse them back.

Escaping policy (a public interface: golden files and the embedded store rely on it):

- measurement: ``,`` and space are escaped with a backslash; tag keys, tag values and field
  keys: ``,``, ``=`` and space.
- a newline anywhere (names, tag values, string fields) is written as the two characters
  ``\\n``, so an encoded point is always exactly one line. InfluxDB stores those two
  characters as they are (it has no newline escape); ``parse_line`` turns them back into a
  newline, so ``parse_line(encode_point(p)) == p`` holds for every encodable point.
- string field values: ``\\`` and ``"`` are escaped (InfluxDB unescapes both).
- in names and tag values a backslash is written as it is, which InfluxDB stores faithfully,
  unless the next character is one of ``, = " \\ n``, a space or a newline: then it is doubled
  (InfluxDB keeps such a backslash doubled; nothing else could be told apart).
- ``ValueError`` for what InfluxDB cannot store at all: an empty measurement, tag key or field
  key, a name or tag value ending in a backslash, a measurement starting with ``#`` (a comment)
  or a tab (stripped), a NUL in a measurement, tag key or field key (InfluxDB strips or renames
  it), duplicate tag keys, a point without fields, a non-finite float, an integer outside
  int64. Empty tag values are omitted; tag values and strings may hold any other character.
- tags are sorted by key; fields keep their order; time is integer nanoseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable

from hub.model import FieldValue, Point

_INT64_MIN = -(2**63)
_isfinite = math.isfinite
_STRING_SPECIALS = re.compile(r'[\\"\n]')  # what _escape_string escapes in a string field
_INT64_MAX = 2**63 - 1
_CACHE_MAX = 50_000

# A backslash followed by one of these would read as an escape, so it is doubled.
_BACKSLASH_TRIGGERS = frozenset(',= "\\n\n')
_NAME_UNESCAPES = {",": ",", " ": " ", "=": "=", '"': '"', "\\": "\\", "n": "\n"}
_STRING_UNESCAPES = {'"': '"', "\\": "\\", "n": "\n"}
_BOOLS = {
    "t": True,
    "T": True,
    "true": True,
    "True": True,
    "TRUE": True,
    "f": False,
    "F": False,
    "false": False,
    "False": False,
    "FALSE": False,
}

_series_cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_series_hits = 0  # since the series cache was last emptied
_series_pause = 0  # misses left before caching series is tried again
# When the cache fills with fewer hits than entries, the fleet has more series than fit (each
# device is seen again only after the cache is cleared): caching then only costs an insert and
# ~300 bytes a series (15 MB at 100,000 devices), so it pauses for this many misses.
_SERIES_PAUSE = 10 * _CACHE_MAX
_field_key_cache: dict[str, str] = {}
_tag_key_cache: dict[str, str] = {}  # key -> ",key=" escaped
# (key, value) -> ",key=value" escaped, for the first tags seen: model, site, kind and community
# tags repeat in every device's series, so a device's first point escapes only its own id
# (bench/pipeline_micro.py --messages 10000 --devices 10000, first round). Never cleared, and
# filled only up to a bound, so device ids cannot grow it.
_tag_part_cache: dict[tuple[str, str], str] = {}
_TAG_PARTS_MAX = 1024
# Whether a name needs escaping at all: one regex search in C instead of a generator over the
# special characters (a series-cache miss escapes every tag, and each device's first message
# misses: bench/pipeline_micro.py --messages 10000 --devices 10000, first round).
_NEEDS_ESCAPE: dict[str, Callable[[str], re.Match[str] | None]] = {}


def _needs_escape(specials: str) -> Callable[[str], re.Match[str] | None]:
    found = _NEEDS_ESCAPE.get(specials)
    if found is None:
        found = _NEEDS_ESCAPE[specials] = re.compile(
            "[" + re.escape("\\\n" + specials) + "]").search
    return found


def _escape_name(s: str, specials: str, what: str) -> str:
    if not s:
        raise ValueError(f"empty {what}")
    if s[-1] == "\\":
        raise ValueError(f"{what} {s!r} ends with a backslash, which InfluxDB cannot store")
    if not (_NEEDS_ESCAPE.get(specials) or _needs_escape(specials))(s):
        return s
    out: list[str] = []
    last = len(s) - 1
    for i, c in enumerate(s):
        if c == "\\":
            out.append("\\\\" if i < last and s[i + 1] in _BACKSLASH_TRIGGERS else "\\")
        elif c == "\n":
            out.append("\\n")
        elif c in specials:
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def _escape_key(s: str, specials: str, what: str) -> str:
    if "\x00" in s:
        raise ValueError(f"{what} {s!r} contains NUL, which InfluxQL cannot name")
    return _escape_name(s, specials, what)


def _escape_measurement(s: str) -> str:
    if s and s[0] in "#\t":
        raise ValueError(f"measurement {s!r} starts with a character InfluxDB drops")
    return _escape_key(s, ", ", "measurement")


def _escape_string(s: str) -> str:
    if "\\" in s:
        s = s.replace("\\", "\\\\")
    if '"' in s:
        s = s.replace('"', '\\"')
    if "\n" in s:
        s = s.replace("\n", "\\n")
    return s


def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    global _series_hits
    cache_key = (measurement, tags)
    prefix = _series_cache.get(cache_key)
    if prefix is not None:
        _series_hits += 1
        return prefix
    parts = [_escape_measurement(measurement)]
    previous = None
    keys = _tag_key_cache
    known = _tag_part_cache
    for tag in sorted(tags):
        key, value = tag
        if key == previous:
            raise ValueError(f"duplicate tag key {key!r}")
        previous = key
        if value:
            part = known.get(tag)
            if part is None:
                escaped = keys.get(key)
                if escaped is None:  # a handful of keys; every device's first point misses here
                    escaped = "," + _escape_key(key, ",= ", "tag key") + "="
                    if len(keys) >= _CACHE_MAX:
                        keys.clear()
                    keys[key] = escaped
                part = escaped + _escape_name(value, ",= ", "tag value")
                if len(known) < _TAG_PARTS_MAX:
                    known[tag] = part
            parts.append(part)
    prefix = "".join(parts)
    _remember_series(cache_key, prefix)
    return prefix


def _remember_series(key: tuple[str, tuple[tuple[str, str], ...]], prefix: str) -> None:
    global _series_hits, _series_pause
    if _series_pause:
        _series_pause -= 1
        return
    if len(_series_cache) >= _CACHE_MAX:
        if _series_hits < len(_series_cache):
            _series_pause = _SERIES_PAUSE
        _series_cache.clear()
        _series_hits = 0
        if _series_pause:
            return
    _series_cache[key] = prefix


def _field_key(key: str) -> str:
    escaped = _field_key_cache.get(key)
    if escaped is None:
        escaped = _escape_key(key, ",= ", "field key") + "="
        if len(_field_key_cache) >= _CACHE_MAX:
            _field_key_cache.clear()
        _field_key_cache[key] = escaped
    return escaped


def _field_value(value: FieldValue) -> str:
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError(f"non-finite float {value!r}")
        return repr(value)
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer {value!r} outside int64")
        return f"{value}i"
    if type(value) is str:
        return f'"{_escape_string(value)}"'
    # Subclasses (IntEnum, StrEnum, numpy scalars...) take the slow path.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _field_value(int(value))
    if isinstance(value, float):
        return _field_value(float(value))
    if isinstance(value, str):
        return _field_value(str(value))
    raise ValueError(f"unsupported field value type {type(value).__name__}")


def encode_point(p: Point) -> bytes:
    """Encode one point as one line of line protocol (no trailing newline)."""
    if not p.fields:
        raise ValueError(f"point of {p.measurement!r} has no fields")
    if type(p.time_ns) is not int:
        raise ValueError(f"time_ns must be an int, not {type(p.time_ns).__name__}")
    # The common cases inline (a cached key; a finite float, an int64, a bool, a string with
    # nothing to escape): this runs per field of every reading (bench/pipeline_micro.py);
    # everything else takes the general path with its checks.
    keys = _field_key_cache
    parts = []
    for key, value in p.fields:
        escaped = keys.get(key) or _field_key(key)
        if type(value) is float and _isfinite(value):
            parts.append(escaped + repr(value))
        elif type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
            parts.append(f"{escaped}{value}i")
        elif type(value) is str and not _STRING_SPECIALS.search(value):
            parts.append(f'{escaped}"{value}"')
        elif type(value) is bool:
            parts.append(escaped + ("true" if value else "false"))
        else:
            parts.append(escaped + _field_value(value))
    return f"{_series(p.measurement, p.tags)} {','.join(parts)} {p.time_ns}".encode()


def encode_points(points: Iterable[Point]) -> list[bytes]:
    """Encode many points, one line each."""
    return [encode_point(p) for p in points]


def series_key(line: bytes) -> bytes:
    """Return the measurement-and-tags part of an encoded line (what identifies its series)."""
    i = line.find(b" ")
    while i > 0 and line[i - 1] == 0x5C:
        i = line.find(b" ", i + 1)
    if i <= 0:
        raise ValueError(f"not a line-protocol line: {line[:80]!r}")
    return line[:i]


def _scan_name(s: str, i: int, stops: str) -> tuple[int, str]:
    """Read a name or tag value from ``i`` up to an unescaped stop character."""
    n = len(s)
    start = i
    while i < n and s[i] not in stops and s[i] != "\\":
        i += 1
    if i >= n or s[i] != "\\":
        return i, s[start:i]
    out = [s[start:i]]
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in _NAME_UNESCAPES:
            out.append(_NAME_UNESCAPES[s[i + 1]])
            i += 2
            continue
        if c in stops:
            break
        out.append(c)
        i += 1
    return i, "".join(out)


def _scan_string(s: str, i: int) -> tuple[int, str]:
    """Read a quoted string field starting at the opening quote; return the index after it."""
    n = len(s)
    i += 1
    out: list[str] = []
    while i < n:
        c = s[i]
        if c == '"':
            return i + 1, "".join(out)
        if c == "\\" and i + 1 < n and s[i + 1] in _STRING_UNESCAPES:
            out.append(_STRING_UNESCAPES[s[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    raise ValueError("unterminated string field")


def _parse_value(token: str) -> FieldValue:
    if not token:
        raise ValueError("missing field value")
    last = token[-1]
    if last in "iu" and token[:-1].lstrip("-").isascii() and token[:-1].lstrip("-").isdigit():
        return int(token[:-1])
    boolean = _BOOLS.get(token)
    if boolean is not None:
        return boolean
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"non-finite float {token!r}")
    return value


def parse_line(line: bytes) -> Point:
    """Parse one line of line protocol into a Point (the inverse of ``encode_point``)."""
    s = line.decode("utf-8")
    n = len(s)
    i, measurement = _scan_name(s, 0, ", ")
    if not measurement:
        raise ValueError("missing measurement")
    tags: list[tuple[str, str]] = []
    while i < n and s[i] == ",":
        i, key = _scan_name(s, i + 1, "=, ")
        if i >= n or s[i] != "=" or not key:
            raise ValueError(f"bad tag at {i}")
        i, value = _scan_name(s, i + 1, ", ")
        tags.append((key, value))
    if i >= n or s[i] != " ":
        raise ValueError(f"expected fields at {i}")
    fields: list[tuple[str, FieldValue]] = []
    while True:
        i, key = _scan_name(s, i + 1, "=, ")
        if i >= n or s[i] != "=" or not key:
            raise ValueError(f"bad field at {i}")
        i += 1
        if i < n and s[i] == '"':
            i, value = _scan_string(s, i)
            fields.append((key, value))
        else:
            start = i
            while i < n and s[i] not in ", ":
                i += 1
            fields.append((key, _parse_value(s[start:i])))
        if i >= n:
            raise ValueError("missing timestamp")
        if s[i] == " ":
            break
        if s[i] != ",":
            raise ValueError(f"unexpected {s[i]!r} at {i}")
    stamp = s[i + 1 :].strip()
    if not stamp.lstrip("-").isdigit():
        raise ValueError(f"bad timestamp {stamp!r}")
    return Point(measurement, tuple(tags), tuple(fields), int(stamp))
