"""Message specs compiled for speed: decoding the payload bytes (json, csv, status text)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from hub.ingest.normalize.points import CompiledPoint
from hub.ingest.normalize.refused import Refused
from hub.ingest.normalize.timestamps import compile_time
from hub.ingest.normalize.values import path_getter
from hub.profiles.schema import MessageSpec, Profile


class CompiledMessage:
    """A MessageSpec compiled for speed."""

    def __init__(self, profile: Profile, name: str, spec: MessageSpec) -> None:
        self.profile = profile
        self.name = name
        self.spec = spec
        from_text = spec.decoder == "csv"
        self.points = [CompiledPoint(p, from_text) for p in spec.points]
        self.uses_context = any(p.uses_context for p in self.points)
        self.time = compile_time(spec.time)
        self.device_id_getter = path_getter(spec.device_id_path) if spec.device_id_path else None
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

