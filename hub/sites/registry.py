"""Site files: communities, the device registry, patrol checkpoints, routes and schedules."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from datetime import date, time
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TextIO

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import core_schema
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

UNASSIGNED_SITE = "unassigned"
UNKNOWN_CHECKPOINT = "unknown"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Community(_Strict):
    """A community (社区), village or district inside a site."""

    id: str
    name: str
    name_en: str | None = None
    lat: float | None = None
    lon: float | None = None


class ActiveHours(_Strict):
    """Daily local-time window in which a device is expected to be active."""

    start: time
    end: time


class _DeviceFields(_Strict):
    """What a site file may say of one device: validated here, then kept as a ``Device``."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Device")

    id: str
    model: str
    community: str | None = None
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    place: str | None = Field(default=None, description="e.g. sharp_bend, school_gate, junction")
    active_hours: ActiveHours | None = None
    rules: dict[str, Any] = Field(default_factory=dict, description="per-device rule overrides")


_HOURS: dict[tuple[time, time], ActiveHours] = {}


class _Record:
    """A read-only record in slots, validated by pydantic through a ``_Strict`` model first.

    The registry holds one per device (100,000 in a county): a pydantic instance costs ~750
    bytes more (its ``__dict__`` and fields-set). Same fields, same validation errors (with the
    same ``devices.N.field`` locations) as the model; a record passes validation as it is.
    """

    __slots__ = ()
    _model: ClassVar[type[BaseModel]]
    _names: ClassVar[tuple[str, ...]]

    def __init__(self, **data: Any) -> None:
        self._fill(self._model(**data))

    @classmethod
    def _from_fields(cls, fields: Any) -> Self:
        record = cls.__new__(cls)
        record._fill(fields)
        return record

    def _fill(self, fields: Any) -> None:
        for name in self._names:
            object.__setattr__(self, name, getattr(fields, name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot delete {name!r}")

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._names)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(getattr(self, self._names[0]))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._names
                          if n == self._names[0] or getattr(self, n))
        return f"{type(self).__name__}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), {n: getattr(self, n) for n in self._names}))

    @classmethod
    def _or_raw(cls, raw: Any) -> Any:
        """A record of ``raw`` if it is valid, else ``raw`` as it is (its errors come later)."""
        try:
            return cls._from_fields(cls._model.model_validate(raw))
        except ValidationError:
            return raw

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate as the model (a record of this class passes as it is), keep a record."""

        def validate(value: Any, inner: core_schema.ValidatorFunctionWrapHandler) -> Any:
            if isinstance(value, cls):
                return value
            return cls._from_fields(inner(value))

        return core_schema.no_info_wrap_validator_function(
            validate, handler.generate_schema(cls._model)
        )


def _rebuild(cls: type[_Record], data: dict[str, Any]) -> _Record:
    return cls(**data)


class Device(_Record):
    """One registered field device (read-only; validated as ``_DeviceFields``).

    ``site`` is the site it is registered in, set by ``SiteRegistry`` (unset until then): the
    registry then maps an id to the device alone, without a ``(site, device)`` tuple per device
    (~6 MB at 100,000 devices; the slot itself fits in the object's allocation size class).
    """

    __slots__ = ("_rules", "active_hours", "community", "id", "lat", "lon", "model", "name",
                 "place", "site")
    _model = _DeviceFields
    _names = tuple(_DeviceFields.model_fields)

    id: str
    model: str
    community: str | None
    name: str | None
    lat: float | None
    lon: float | None
    place: str | None
    active_hours: ActiveHours | None
    _rules: dict[str, Any] | None
    site: Site

    def _fill(self, fields: Any) -> None:
        f: _DeviceFields = fields
        intern = sys.intern
        put = object.__setattr__
        put(self, "id", f.id)
        put(self, "model", intern(f.model))
        put(self, "community", None if f.community is None else intern(f.community))
        put(self, "name", f.name)
        put(self, "lat", f.lat)
        put(self, "lon", f.lon)
        put(self, "place", None if f.place is None else intern(f.place))
        hours = f.active_hours
        if hours is not None:  # one object per distinct window
            hours = _HOURS.setdefault((hours.start, hours.end), hours)
        put(self, "active_hours", hours)
        put(self, "_rules", f.rules or None)

    @property
    def rules(self) -> dict[str, Any]:
        """Per-device rule overrides (empty when none)."""
        return self._rules if self._rules is not None else {}


class _CheckpointFields(_Strict):
    """What a site file may say of one patrol checkpoint: validated here, kept as a record."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Checkpoint")

    id: str
    tag_uid: str
    name: str
    community: str | None = None
    lat: float | None = None
    lon: float | None = None


class Checkpoint(_Record):
    """A patrol checkpoint with its NFC tag (read-only; validated as ``_CheckpointFields``)."""

    __slots__ = ("community", "id", "lat", "lon", "name", "tag_uid")
    _model = _CheckpointFields
    _names = tuple(_CheckpointFields.model_fields)

    id: str
    tag_uid: str
    name: str
    community: str | None
    lat: float | None
    lon: float | None

    def _fill(self, fields: Any) -> None:
        super()._fill(fields)
        if self.community is not None:
            object.__setattr__(self, "community", sys.intern(self.community))


class Inspector(_Strict):
    """A patrol inspector (巡查员)."""

    id: str
    name: str
    community: str | None = None


class RoundTime(_Strict):
    """One scheduled round: local start time and window length."""

    start: time
    window_min: int = Field(default=90, gt=0, le=24 * 60)


class Route(_Strict):
    """A patrol route: ordered checkpoints, who walks it and when."""

    id: str
    name: str
    community: str | None = None
    order: Literal["strict", "any"] = "any"
    checkpoints: list[str] = Field(min_length=1)
    readers: list[str] = Field(default_factory=list)
    inspectors: list[str] = Field(default_factory=list)
    rounds: list[RoundTime] = Field(default_factory=list)
    weekdays: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4, 5, 6], description="0 = Monday"
    )
    skip_dates: list[date] = Field(default_factory=list)


class Site(_Strict):
    """One township office's site file."""

    site: str = Field(pattern=r"^[a-z0-9_-]+$")
    name: str
    name_en: str | None = None
    timezone: str = "Asia/Shanghai"
    tag_community: bool = Field(default=True, description="add the community tag to points")
    communities: list[Community] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    inspectors: list[Inspector] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    rules: dict[str, Any] = Field(default_factory=dict, description="per-site rule overrides")

    @model_validator(mode="after")
    def _references_resolve(self) -> Site:
        communities = {c.id for c in self.communities}
        checkpoints = {c.id for c in self.checkpoints}
        devices = {d.id for d in self.devices}
        inspectors = {i.id for i in self.inspectors}
        problems: list[str] = []
        for kind, ids in (
            ("device", [d.id for d in self.devices]),
            ("checkpoint", [c.id for c in self.checkpoints]),
            ("tag_uid", [c.tag_uid for c in self.checkpoints]),
            ("route", [r.id for r in self.routes]),
        ):
            seen: set[str] = set()
            for ident in ids:
                if ident in seen:
                    problems.append(f"duplicate {kind} {ident!r}")
                seen.add(ident)
        placed: list[Device | Checkpoint | Inspector | Route] = [
            *self.devices,
            *self.checkpoints,
            *self.inspectors,
            *self.routes,
        ]
        for item in placed:
            if item.community is not None and item.community not in communities:
                problems.append(f"{item.id}: unknown community {item.community!r}")
        for route in self.routes:
            problems += [
                f"route {route.id}: unknown checkpoint {c!r}"
                for c in route.checkpoints
                if c not in checkpoints
            ]
            problems += [
                f"route {route.id}: unknown reader {r!r}" for r in route.readers if r not in devices
            ]
            problems += [
                f"route {route.id}: unknown inspector {i!r}"
                for i in route.inspectors
                if i not in inspectors
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class SiteRegistry:
    """All sites loaded, with the lookups the pipeline needs."""

    def __init__(self, sites: Iterable[Site]) -> None:
        self.sites: dict[str, Site] = {}
        self.devices: dict[str, Device] = {}  # each knows its site: ``Device.site``
        self.tags: dict[str, tuple[Site, Checkpoint]] = {}
        self.checkpoint_routes: dict[tuple[str, str], list[Route]] = {}
        for site in sites:
            if site.site in self.sites:
                raise ValueError(f"site {site.site!r} is defined twice")
            self.sites[site.site] = site
            for device in site.devices:
                if device.id in self.devices:
                    raise ValueError(f"device {device.id!r} is in two sites")
                self.devices[device.id] = _placed(device, site)
            for checkpoint in site.checkpoints:
                self.tags[checkpoint.tag_uid.upper()] = (site, checkpoint)
            for route in site.routes:
                for cp in route.checkpoints:
                    self.checkpoint_routes.setdefault((site.site, cp), []).append(route)

    def device(self, device_id: str) -> tuple[Site, Device] | None:
        """Return the site and registry entry of a device, or None when unregistered."""
        device = self.devices.get(device_id)
        return None if device is None else (device.site, device)

    def checkpoint_for_tag(self, tag_uid: str) -> tuple[Site, Checkpoint] | None:
        """Return the checkpoint an NFC tag is fixed at, or None for an unknown tag."""
        return self.tags.get(tag_uid.upper())

    def routes_for_checkpoint(self, site: str, checkpoint_id: str) -> list[Route]:
        """Return the routes that include a checkpoint."""
        return self.checkpoint_routes.get((site, checkpoint_id), [])


def _placed(device: Device, site: Site) -> Device:
    """``device`` registered in ``site``: itself, or a copy if it is already in another site."""
    placed = getattr(device, "site", None)
    if placed is site:
        return device
    if placed is not None:  # one record in two sites' models (built in code, not from files)
        device = Device._from_fields(device)
    object.__setattr__(device, "site", site)
    return device


class _NotPlain(Exception):
    """The document needs PyYAML's full constructor (merge keys, tags on collections, ...)."""


_STR_TAG = "tag:yaml.org,2002:str"
_NO_KEY = object()


def _stream_yaml(handle: TextIO, items: dict[str, Callable[[Any], Any]] | None = None) -> Any:
    """``yaml.safe_load`` built from parser events, without a node tree.

    PyYAML composes the whole document into nodes (with two position marks per scalar) before
    constructing it: for a site file of 100,000 devices that is ~250 MB of RSS that stays
    fragmented afterwards. Here each scalar is resolved and constructed by the same resolver and
    constructors as ``safe_load`` as its event arrives; merge keys, explicit tags on mappings or
    sequences and anything else unusual raise ``_NotPlain`` (then ``safe_load`` does it).

    ``items`` maps a key of the top-level mapping to a function applied to each item of its
    list as soon as the item is complete: a site file's devices become records one by one, so
    each device's parsed dict is garbage before the next is parsed and its memory is reused
    (~30 MB of partly used pools less after 100,000 devices).
    """
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(handle)
    try:
        constructors = loader.yaml_constructors
        resolve = loader.resolve
        get_event = loader.get_event
        stack: list[list[Any]] = []  # [container, pending mapping key, item function]
        anchors: dict[str, Any] = {}
        get_event()  # stream start
        if loader.check_event(StreamEndEvent):
            return None
        get_event()  # document start
        root: Any = None
        while True:
            event = get_event()
            kind = type(event)
            obj: Any
            if kind is ScalarEvent:
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(ScalarNode, event.value, event.implicit)
                if tag == _STR_TAG:
                    obj = event.value
                else:
                    construct = constructors.get(tag)
                    if construct is None or tag == "tag:yaml.org,2002:merge":
                        raise _NotPlain(tag)
                    obj = construct(loader, ScalarNode(tag, event.value, event.start_mark,
                                                       event.end_mark, style=event.style))
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if not event.implicit:
                    raise _NotPlain(event.tag)
                obj = {} if kind is MappingStartEvent else []
                if event.anchor is not None:
                    anchors[event.anchor] = obj
                convert = None
                if items and kind is SequenceStartEvent and len(stack) == 1 \
                        and type(stack[0][0]) is dict:
                    convert = items.get(stack[0][1])
                stack.append([obj, _NO_KEY, convert])
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                top = stack.pop()
                if top[1] is not _NO_KEY:
                    raise _NotPlain("mapping key without value")
                obj = top[0]
            elif kind is AliasEvent:
                obj = anchors[event.anchor]
            elif kind is DocumentEndEvent:
                break
            else:
                raise _NotPlain(kind.__name__)
            if kind is ScalarEvent and event.anchor is not None:
                anchors[event.anchor] = obj
            if not stack:
                root = obj
                continue
            top = stack[-1]
            container = top[0]
            if type(container) is list:
                container.append(obj if top[2] is None else top[2](obj))
            elif top[1] is _NO_KEY:
                if not isinstance(obj, str | int | float | bool | date | None):
                    raise _NotPlain("complex mapping key")
                top[1] = obj
            else:
                container[top[1]] = obj
                top[1] = _NO_KEY
        if not loader.check_event(StreamEndEvent):
            raise _NotPlain("more than one document")
        return root
    finally:
        loader.dispose()


_SITE_ITEMS: dict[str, Callable[[Any], Any]] = {
    "devices": Device._or_raw, "checkpoints": Checkpoint._or_raw}


def _load_yaml(path: Path, items: dict[str, Callable[[Any], Any]] | None = None) -> Any:
    with path.open(encoding="utf-8") as handle:
        try:
            return _stream_yaml(handle, items)
        except (_NotPlain, KeyError, TypeError):
            pass
    with path.open(encoding="utf-8") as handle:  # the general path, with PyYAML's own errors
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_site_file(path: Path) -> Site:
    """Load and validate one site file."""
    return Site.model_validate(_load_yaml(path, _SITE_ITEMS))


def load_sites(directory: Path | None) -> SiteRegistry:
    """Load every ``*.yaml`` site file of a directory (none when it is missing)."""
    if directory is None or not directory.is_dir():
        return SiteRegistry([])
    return SiteRegistry(load_site_file(p) for p in sorted(directory.glob("*.yaml")))
