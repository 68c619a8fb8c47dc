"""The compiled fast paths of profile values give what the general path gives, or its refusal.

The general path is forced by an ``absent_if`` that never matches (``plain`` is then False), so
both compile from one spec; the inputs are JSON values and CSV columns (text).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest.normalize.context import MessageContext
from hub.ingest.normalize.refused import Refused
from hub.ingest.normalize.values import compile_value
from hub.profiles.schema import ValueSpec
from hub.sites import SiteRegistry

CTX = MessageContext("D1", "s", SiteRegistry([]), 0, None)
SPECS = [
    {"path": "v", "type": "float", "scale": 0.01, "min": 0, "max": 60},
    {"path": "v", "type": "float", "min": -40, "max": 125},
    {"path": "v", "type": "float", "scale": 0.1, "offset": -40},
    {"path": "v", "type": "int", "min": 0, "max": 100000},
    {"path": "v", "type": "int"},
]
TEXT = st.one_of(
    st.from_regex(r"\A\s?-?[0-9]{1,6}(\.[0-9]{0,3})?(e[0-9]{1,3})?\s?\Z"),
    st.sampled_from(["", "nan", "inf", "-inf", "1_000", "0x10", "1e400", " 7 ", "١٢", "+3"]),
    st.text(max_size=8),
)
JSON = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.booleans(),
                 st.none(), st.text(max_size=5))


def outcome(fn: Any, item: dict[str, Any]) -> Any:
    try:
        result = fn(item, {}, CTX)
    except Refused as exc:
        return ("refused", exc.reason)
    return (type(result).__name__, result)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("from_text", [True, False])
@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(TEXT, JSON))
def test_fast_path_equals_general_path(spec: dict[str, Any], from_text: bool, raw: Any) -> None:
    fast = compile_value("v", ValueSpec.model_validate(spec), from_text)
    general = compile_value("v", ValueSpec.model_validate(
        {**spec, "absent_if": ["never-sent"]}), from_text)
    item = {"v": raw}
    assert outcome(fast, item) == outcome(general, item)
