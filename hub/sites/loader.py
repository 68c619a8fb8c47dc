"""Reading site files: an event-driven YAML reader that builds records as it parses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TextIO

import yaml
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

from hub.sites.registry import SiteRegistry
from hub.sites.schema import Checkpoint, Device, Site


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
