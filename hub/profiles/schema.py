"""Pydantic models of a device profile file (``device_profiles/*.yaml``)."""

from __future__ import annotations

import re
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.profiles.functions import CONVERTERS, DERIVED, LOOKUPS

FieldType = Literal["float", "int", "str", "bool"]
_IDENT = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueSpec(_Strict):
    """Where a value comes from in the decoded payload and how it becomes canonical."""

    path: str | None = Field(
        default=None, description="dotted path in the payload, '.' for the item itself"
    )
    group: str | None = Field(default=None, description="a named group of the item key pattern")
    const: str | float | int | bool | None = None
    derived: str | None = Field(default=None, description="a value the hub computes, e.g. late_s")
    type: FieldType = "float"
    scale: float | None = None
    offset: float | None = None
    map: dict[str, str | float | int | bool] | None = Field(
        default=None, description="raw value (as text) -> canonical value"
    )
    allowed: list[str | float | int | bool] | None = None
    converter: str | None = None
    absent_if: list[str | float | int | bool] | None = Field(
        default=None, description="raw values that mean 'no reading' (the field stays absent)"
    )
    min: float | None = None
    max: float | None = None
    required: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ValueSpec:
        sources = [s for s in (self.path, self.group, self.const, self.derived) if s is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of path, group, const, derived")
        if self.converter is not None and self.converter not in CONVERTERS:
            raise ValueError(
                f"unknown converter {self.converter!r}; known: {', '.join(sorted(CONVERTERS))}"
            )
        if self.derived is not None and self.derived not in DERIVED:
            raise ValueError(
                f"unknown derived value {self.derived!r}; known: {', '.join(sorted(DERIVED))}"
            )
        if self.map is not None and self.converter is not None:
            raise ValueError("use map or converter, not both")
        return self


class PointSpec(_Strict):
    """One point a message yields: measurement, extra tags, fields."""

    measurement: str = Field(pattern=_IDENT)
    each: str | None = Field(default=None, description="path to an array: one point per item")
    each_key: str | None = Field(
        default=None, description="regex over the payload's keys: one point per matching key"
    )
    tags: dict[str, ValueSpec] = Field(default_factory=dict)
    lookups: list[str] = Field(default_factory=list, description="named site lookups adding tags")
    fields: dict[str, ValueSpec] = Field(min_length=1)

    @field_validator("each_key")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    @field_validator("lookups")
    @classmethod
    def _lookups_known(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in LOOKUPS:
                raise ValueError(f"unknown lookup {name!r}; known: {', '.join(sorted(LOOKUPS))}")
        return value

    @model_validator(mode="after")
    def _iteration(self) -> PointSpec:
        if self.each is not None and self.each_key is not None:
            raise ValueError("use each or each_key, not both")
        for name, spec in [*self.tags.items(), *self.fields.items()]:
            if spec.group is not None and self.each_key is None:
                raise ValueError(f"{name}: 'group' needs each_key")
            if not re.match(_IDENT, name):
                raise ValueError(f"{name!r}: names are lower_snake_case")
        return self


class TimeSpec(_Strict):
    """Where the device's timestamp is and how to read it."""

    path: str
    format: str = Field(
        description="epoch_s, epoch_ms, iso8601, or a strptime format such as %Y%m%dT%H%M%S"
    )
    zone: str | None = Field(default=None, description="IANA zone for times without an offset")

    @field_validator("zone")
    @classmethod
    def _zone_exists(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class CsvSpec(_Strict):
    """Column names of a comma-separated payload, and columns with a fixed value."""

    columns: list[str] = Field(min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    expect: dict[str, str] = Field(default_factory=dict)
    min_columns: int | None = None


class StatusSpec(_Strict):
    """Payload texts of a status topic."""

    online: list[str] = Field(default_factory=lambda: ["online"])
    offline: list[str] = Field(default_factory=lambda: ["offline"])


class ImpliesSpec(_Strict):
    """State values an enumerated field implies (e.g. event door_open -> door_open true)."""

    field: str
    values: dict[str, dict[str, str | float | int | bool]]


class MessageSpec(_Strict):
    """One kind of message a model sends on one topic pattern."""

    topic: str = Field(description="topic with {device_id} for the id level")
    decoder: Literal["json", "csv", "status"]
    qos: int = Field(default=1, ge=0, le=2)
    device_id_path: str | None = Field(
        default=None, description="payload path that must equal the topic's device id"
    )
    time: TimeSpec | None = None
    csv: CsvSpec | None = None
    status: StatusSpec | None = None
    points: list[PointSpec] = Field(default_factory=list)
    implies: ImpliesSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MessageSpec:
        levels = self.topic.split("/")
        if levels.count("{device_id}") != 1:
            raise ValueError("topic needs exactly one level that is {device_id}")
        if any(("+" in lv or "#" in lv) for lv in levels):
            raise ValueError("topic is a pattern with {device_id}, not an MQTT wildcard")
        if self.decoder == "csv" and self.csv is None:
            raise ValueError("decoder csv needs a csv section")
        if self.decoder != "csv" and self.csv is not None:
            raise ValueError("csv section given but decoder is not csv")
        if self.decoder == "status":
            if self.points:
                raise ValueError("a status message yields device_status, give no points")
        elif not self.points:
            raise ValueError("give at least one point")
        return self


class Profile(_Strict):
    """A device model: its kind, how often it reports, and the messages it sends."""

    model: str = Field(min_length=1)
    vendor: str | None = None
    kind: str = Field(pattern=_IDENT, description="device kind, e.g. flashing_light")
    description: str | None = None
    report_interval_s: float = Field(gt=0)
    last_will: bool = False
    device_id_pattern: str | None = None
    messages: dict[str, MessageSpec] = Field(min_length=1)

    @field_validator("device_id_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value
