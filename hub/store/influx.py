"""InfluxDB through the v1-compatible HTTP API (1.x natively, 2.x via DBRP, 3.x Core)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from hub.model import FieldValue, Point
from hub.store.base import StoreUnavailable, WriteResult

log = logging.getLogger(__name__)

# 400/422 texts that mean "some lines are bad", as opposed to a misconfigured request.
_LINE_ERRORS = (
    "partial write",
    "unable to parse",
    "field type conflict",
    "invalid field",
    "invalid tag",
    "invalid value",
    "duplicate tags",
    "points beyond retention policy",
    "max-values-per-tag",
    "parsing failed",
    "write buffer error",
)


class InfluxQueryError(Exception):
    """InfluxDB answered a query with an error (bad InfluxQL, unknown database...)."""


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier (measurement, tag or field key); not for CR or NUL."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def quote_literal(value: str) -> str:
    """Quote an InfluxQL string literal (a tag value in a WHERE clause); not for CR or NUL."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def exact_regex(text: str) -> str:
    """Return an InfluxQL regex literal matching exactly ``text`` (works for any character)."""
    out = []
    for c in text:
        if c.isalnum() or ord(c) > 0x7F:
            out.append(c)
        elif c == "/":
            out.append("\\/")
        elif ord(c) < 0x20 or c == "\x7f":
            out.append(f"\\x{{{ord(c):02x}}}")
        else:
            out.append("\\" + c)
    return "/^" + "".join(out) + "$/"


def _query_safe(text: str) -> bool:
    # InfluxQL's reader turns CR into LF and reads NUL as the end of the query.
    return "\r" not in text and "\x00" not in text


def _from(measurement: str) -> str:
    return quote_ident(measurement) if _query_safe(measurement) else exact_regex(measurement)


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)[:500]
    return str(body)[:500]


class InfluxV1Store:
    """A PointStore writing line protocol to ``/write`` and reading with InfluxQL."""

    name = "influxdb"

    def __init__(
        self,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        headers = {"Authorization": f"Token {token}"} if token else {}
        self._auth: dict[str, str] = {}
        if username is not None:
            self._auth = {"u": username, "p": password or ""}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    # -- writing ---------------------------------------------------------------------------
    def write_lines(self, lines: Sequence[bytes]) -> WriteResult:
        """Write lines; raise StoreUnavailable if down; return lines refused for good."""
        result = WriteResult()
        if lines:
            self._write(list(lines), result, create_tried=False)
        return result

    def _post_write(self, lines: list[bytes]) -> httpx.Response:
        params = {"db": self.database, "precision": "ns", **self._auth}
        try:
            return self._client.post("/write", params=params, content=b"\n".join(lines))
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} timed out: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {exc!r}") from exc

    def _write(self, lines: list[bytes], result: WriteResult, create_tried: bool) -> None:
        resp = self._post_write(lines)
        status = resp.status_code
        if status in (200, 204):
            return
        text = _error_text(resp)
        if status == 404 and "database not found" in text and not create_tried:
            self.ensure_database()
            self._write(lines, result, create_tried=True)
            return
        if status in (400, 422) and any(marker in text for marker in _LINE_ERRORS):
            self._find_rejected(lines, text, result)
            return
        if status == 413 and len(lines) > 1:
            self._find_rejected(lines, text, result)
            return
        raise StoreUnavailable(self._reason(status, text))

    def _find_rejected(self, lines: list[bytes], text: str, result: WriteResult) -> None:
        # Writes are idempotent, so halves of the batch are simply written again until each
        # refusing half is one line: 2*k*log2(n) requests for k bad lines instead of n.
        if len(lines) == 1:
            result.rejected.append((lines[0], text))
            return
        middle = len(lines) // 2
        for half in (lines[:middle], lines[middle:]):
            resp = self._post_write(half)
            if resp.status_code in (200, 204):
                continue
            half_text = _error_text(resp)
            line_error = resp.status_code in (400, 422) and any(
                marker in half_text for marker in _LINE_ERRORS
            )
            if line_error or resp.status_code == 413:
                self._find_rejected(half, half_text, result)
            else:
                raise StoreUnavailable(self._reason(resp.status_code, half_text))

    def _reason(self, status: int, text: str) -> str:
        if status in (401, 403):
            return (
                f"InfluxDB at {self.url} refused the credentials (HTTP {status}: {text}); "
                "check HUB_INFLUX_USERNAME/HUB_INFLUX_PASSWORD or HUB_INFLUX_TOKEN"
            )
        if status == 404:
            return f"InfluxDB at {self.url}: HTTP 404: {text}"
        return f"InfluxDB at {self.url} answered HTTP {status}: {text}"

    def ensure_database(self) -> None:
        """Create the database if needed; StoreUnavailable when that is impossible (2.x)."""
        try:
            self.query(f"CREATE DATABASE {quote_ident(self.database)}")
        except InfluxQueryError as exc:
            raise StoreUnavailable(
                f"database {self.database!r} not found on {self.url} and CREATE DATABASE "
                f"failed ({exc}); on InfluxDB 2.x create the bucket and the DBRP mapping "
                f"for database {self.database!r}"
            ) from exc

    # -- reading ---------------------------------------------------------------------------
    def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL (epoch=ns); return the series dicts (name, tags, columns, values)."""
        params = {"q": influxql, "db": self.database, "epoch": "ns", **self._auth}
        read_only = influxql.lstrip().upper().startswith(("SELECT", "SHOW"))
        try:
            if read_only:
                resp = self._client.get("/query", params=params)
            else:
                resp = self._client.post("/query", params=params)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {exc!r}") from exc
        if resp.status_code in (401, 403) or resp.status_code >= 500:
            raise StoreUnavailable(self._reason(resp.status_code, _error_text(resp)))
        try:
            body = resp.json()
        except ValueError as exc:
            raise InfluxQueryError(f"HTTP {resp.status_code}: {resp.text[:300]}") from exc
        if "error" in body:
            raise InfluxQueryError(str(body["error"]))
        series: list[dict[str, Any]] = []
        for statement in body.get("results", []):
            if "error" in statement:
                raise InfluxQueryError(str(statement["error"]))
            series.extend(statement.get("series", []))
        return series

    def field_types(self, measurement: str) -> dict[str, str]:
        """Return field key -> InfluxDB type (float, integer, string, boolean)."""
        rows = self.query(f"SHOW FIELD KEYS FROM {_from(measurement)}")
        return {
            key: kind
            for s in rows
            if s.get("name") == measurement
            for key, kind in s.get("values", [])
        }

    def read_points(self, measurement: str, tags: dict[str, str] | None = None) -> list[Point]:
        """Return the stored points of a measurement (optionally matching tags), oldest first."""
        types = self.field_types(measurement)
        if not types:
            return []
        where = ""
        wanted = tags or {}
        if wanted and all(_query_safe(k) and _query_safe(v) for k, v in wanted.items()):
            where = " WHERE " + " AND ".join(
                f"{quote_ident(k)} = {quote_literal(v)}" for k, v in sorted(wanted.items())
            )
        series = self.query(f"SELECT * FROM {_from(measurement)}{where} GROUP BY *")
        points: list[Point] = []
        for s in series:
            series_tags = {k: v for k, v in (s.get("tags") or {}).items() if v}
            if s.get("name") != measurement or any(
                series_tags.get(k) != v for k, v in wanted.items()
            ):
                continue
            point_tags = tuple(sorted(series_tags.items()))
            columns: list[str] = s["columns"]
            for row in s.get("values", []):
                fields: list[tuple[str, FieldValue]] = []
                for column, value in zip(columns[1:], row[1:], strict=True):
                    if value is None:
                        continue
                    if types.get(column) == "float":
                        value = float(value)
                    fields.append((column, value))
                if fields:
                    points.append(Point(measurement, point_tags, tuple(fields), int(row[0])))
        points.sort(key=lambda p: (p.time_ns, p.tags))
        return points

    def ping(self) -> bool:
        """Return True when InfluxDB answers /ping."""
        try:
            return self._client.get("/ping").status_code in (200, 204)
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
