"""The embedded telemetry store (SQLite) used when no InfluxDB is configured.

It keeps InfluxDB's semantics: a point is identified by its series key and time; writing the
same series and time again merges the fields, the new values winning; a field keeps the type
it was first written with in its measurement, and a line that conflicts (or cannot be parsed,
or uses ``time`` as a key) is refused alone with InfluxDB's wording while the rest lands.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from hub.ingest.lineproto import encode_point, parse_line, series_key
from hub.model import FieldValue, Point
from hub.store.base import StoreUnavailable, WriteResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    series BLOB NOT NULL,
    time_ns INTEGER NOT NULL,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (series, time_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_by_measurement ON points (measurement, time_ns);
CREATE TABLE IF NOT EXISTS field_types (
    measurement TEXT NOT NULL,
    field TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (measurement, field)
) WITHOUT ROWID;
"""

# Values are stored as type-prefixed strings so that json_patch() merges them verbatim.
_TYPE_NAMES = {"f": "float", "i": "integer", "s": "string", "b": "boolean"}

_UPSERT = (
    "INSERT INTO points (series, time_ns, measurement, tags, fields) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (series, time_ns) DO UPDATE SET fields = json_patch(fields, excluded.fields)"
)


def _pack(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "bT" if value else "bF"
    if isinstance(value, int):
        return f"i{value}"
    if isinstance(value, float):
        return f"f{value!r}"
    return f"s{value}"


def _unpack(packed: str) -> FieldValue:
    kind, text = packed[0], packed[1:]
    if kind == "f":
        return float(text)
    if kind == "i":
        return int(text)
    if kind == "b":
        return text == "T"
    return text


class EmbeddedStore:
    """A PointStore in one SQLite file (WAL), safe to share between threads."""

    name = "embedded"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._types: dict[tuple[str, str], str] = {
            (m, f): t
            for m, f, t in self._db.execute("SELECT measurement, field, type FROM field_types")
        }

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable(f"embedded store {self.path} is closed")
        return self._db

    def write_lines(self, lines: Sequence[bytes]) -> WriteResult:
        """Write lines; refuse unparsable or type-conflicting lines alone, with the reason."""
        result = WriteResult()
        rows: list[tuple[bytes, int, str, str, str]] = []
        with self._lock:
            db = self._conn()
            new_types: dict[tuple[str, str], str] = {}
            for line in lines:
                try:
                    point = parse_line(line)
                    key = series_key(encode_point(point))
                except (ValueError, UnicodeDecodeError) as exc:
                    result.rejected.append((line, f"unable to parse '{line[:200]!r}': {exc}"))
                    continue
                reason = self._check(point, new_types)
                if reason:
                    result.rejected.append((line, reason))
                    continue
                fields = {k: _pack(v) for k, v in point.fields}
                for name, packed in fields.items():
                    new_types.setdefault((point.measurement, name), packed[0])
                tags = json.dumps(sorted(t for t in point.tags if t[1]), ensure_ascii=False)
                rows.append(
                    (
                        key,
                        point.time_ns,
                        point.measurement,
                        tags,
                        json.dumps(fields, ensure_ascii=False),
                    )
                )
            fresh = [(m, f, t) for (m, f), t in new_types.items() if (m, f) not in self._types]
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(_UPSERT, rows)
                db.executemany("INSERT OR IGNORE INTO field_types VALUES (?, ?, ?)", fresh)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreUnavailable(f"embedded store {self.path}: {exc}") from exc
            self._types.update(new_types)
        return result

    def _check(self, point: Point, new_types: dict[tuple[str, str], str]) -> str | None:
        """Return InfluxDB's reason for refusing the point, or None."""
        m = point.measurement
        for key, _ in point.tags:
            if key == "time":
                return f'invalid tag key: input tag "time" on measurement "{m}" is invalid'
        for key, value in point.fields:
            if key == "time":
                return f'invalid field name: input field "time" on measurement "{m}" is invalid'
            kind = _pack(value)[0]
            known = self._types.get((m, key)) or new_types.get((m, key))
            if known is not None and known != kind:
                return (
                    f'field type conflict: input field "{key}" on measurement "{m}" is type '
                    f"{_TYPE_NAMES[kind]}, already exists as type {_TYPE_NAMES[known]}"
                )
        return None

    def _points(self, sql: str, params: Sequence[object]) -> list[Point]:
        with self._lock:
            rows = self._conn().execute(sql, params).fetchall()
        points = []
        for measurement, time_ns, tags, fields in rows:
            field_items = sorted((k, _unpack(v)) for k, v in json.loads(fields).items())
            tag_items = tuple((k, v) for k, v in json.loads(tags))
            points.append(Point(measurement, tag_items, tuple(field_items), time_ns))
        return points

    def read_points(self, measurement: str, tags: dict[str, str] | None = None) -> list[Point]:
        """Return the stored points of a measurement (optionally matching tags), oldest first."""
        points = self._points(
            "SELECT measurement, time_ns, tags, fields FROM points WHERE measurement = ? "
            "ORDER BY time_ns",
            (measurement,),
        )
        points.sort(key=lambda p: (p.time_ns, p.tags))
        if not tags:
            return points
        wanted = tags.items()
        return [p for p in points if all(p.tag(k) == v for k, v in wanted)]

    def latest_points(self, measurement: str, limit: int = 100) -> list[Point]:
        """Return the newest ``limit`` points of a measurement, newest first."""
        return self._points(
            "SELECT measurement, time_ns, tags, fields FROM points WHERE measurement = ? "
            "ORDER BY time_ns DESC LIMIT ?",
            (measurement, limit),
        )

    def ping(self) -> bool:
        """Return True while the store is open."""
        return self._db is not None

    def close(self) -> None:
        """Close the SQLite connection."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
