"""Value specs compiled into closures: path lookup, type coercion, maps, scale, range checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.ingest.normalize.context import MessageContext
from hub.ingest.normalize.refused import Refused
from hub.ingest.normalize.text import limit_of, rule_for
from hub.model import FieldValue
from hub.profiles.functions import ABSENT, CONVERTERS, DERIVED
from hub.profiles.schema import ValueSpec

Getter = Callable[[Any, dict[str, str]], Any]


def path_getter(path: str) -> Getter:
    """A getter for a dotted path into a decoded payload (``.`` is the payload itself)."""
    if path == ".":
        return lambda item, groups: item
    parts = path.split(".")
    if len(parts) == 1:
        key = parts[0]
        return lambda item, groups: item.get(key, ABSENT) if isinstance(item, dict) else ABSENT

    def get(item: Any, groups: dict[str, str]) -> Any:
        for part in parts:
            if not isinstance(item, dict):
                return ABSENT
            item = item.get(part, ABSENT)
            if item is ABSENT:
                return ABSENT
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


ValueFn = Callable[[Any, dict[str, str], "MessageContext"], Any]


def compile_value(name: str, spec: ValueSpec, from_text: bool, is_tag: bool = False) -> ValueFn:
    """Compile a ValueSpec into fn(item, groups, ctx) -> canonical value or ABSENT.

    Text values follow the boundary rule of their name (``text.rule_for``): refused, or
    cleaned and cut, so that whatever comes out fits every column it is written to.
    """
    if spec.const is not None:
        const = spec.const
        return lambda item, groups, ctx: const
    if spec.derived is not None:
        derived = DERIVED[spec.derived]
        return lambda item, groups, ctx: derived(ctx)
    getter: Getter
    if spec.group is not None:
        group = spec.group
        getter = lambda item, groups: groups.get(group, ABSENT)  # noqa: E731
    else:
        assert spec.path is not None
        getter = path_getter(spec.path)
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
    text_rule = rule_for(name, is_tag) if kind == "str" else None
    text_limit = limit_of(name, is_tag)

    plain = absent is None and mapping is None and converter is None
    scaled = divisor is not None or scale is not None or offset is not None
    key = spec.path if spec.group is None and spec.path and "." not in spec.path else None

    def value(item: Any, groups: dict[str, str], ctx: MessageContext) -> Any:
        raw = getter(item, groups)
        if raw is ABSENT or raw is None:
            if required:
                raise Refused("missing_field", f"{name}: missing from the payload")
            return ABSENT
        if isinstance(raw, (dict, list)):
            raise Refused("bad_type", f"{name}: expected a value, got a {type(raw).__name__}")
        if absent is not None and _raw_text(raw) in absent:
            return ABSENT
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
        if text_rule is not None and type(result) is str:
            return text_rule(result)
        return result

    if not plain or key is None or (allowed is not None and scaled):
        return value
    # The common case, compiled lean: a top-level key holding a value of the declared type
    # (a JSON number for float/int, a string for str, a bool for bool; a CSV column read as a
    # number). Anything else takes the general path above, which gives the same result or the
    # same refusal.
    lo = -float("inf") if low is None else low
    hi = float("inf") if high is None else high
    finite = (float("-inf"), float("inf"))

    if kind == "float":

        def fast_float(item: Any, groups: dict[str, str], ctx: MessageContext) -> Any:
            if type(item) is dict:
                raw: Any = item.get(key)
                t = type(raw)
                if t is float or t is int or (t is str and from_text):
                    try:
                        number = float(raw)  # a CSV column as _coerce reads it
                    except ValueError:
                        return value(item, groups, ctx)  # its refusal
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

        def fast_int(item: Any, groups: dict[str, str], ctx: MessageContext) -> Any:
            if type(item) is dict:
                raw = item.get(key)
                if from_text and type(raw) is str:
                    try:
                        raw = int(raw)  # a CSV column as _coerce reads it
                    except ValueError:
                        return value(item, groups, ctx)  # its refusal
                if type(raw) is int and lo <= raw <= hi and (allowed is None or raw in allowed):
                    return raw
            return value(item, groups, ctx)

        return fast_int
    if kind == "str" and not scaled and allowed is not None:

        def fast_enum(item: Any, groups: dict[str, str], ctx: MessageContext) -> Any:
            if type(item) is dict:
                raw = item.get(key)
                if type(raw) is str and raw in allowed:  # one of the profile's own values
                    return raw
            return value(item, groups, ctx)

        return fast_enum
    if kind == "str" and not scaled:

        def fast_str(item: Any, groups: dict[str, str], ctx: MessageContext) -> Any:
            if type(item) is dict:
                raw = item.get(key)
                if type(raw) is str and len(raw) <= text_limit and raw.isprintable():
                    return raw
            return value(item, groups, ctx)

        return fast_str
    if kind == "bool" and not scaled:

        def fast_bool(item: Any, groups: dict[str, str], ctx: MessageContext) -> Any:
            if type(item) is dict:
                raw = item.get(key)
                if type(raw) is bool and lo <= raw <= hi and (allowed is None or raw in allowed):
                    return raw
            return value(item, groups, ctx)

        return fast_bool
    return value

