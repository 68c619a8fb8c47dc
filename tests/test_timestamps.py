"""Device timestamps: the fixed-width fast path gives strptime's answer, whatever the text."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest.normalize.timestamps import fixed_width_parser

FORMATS = ["%Y%m%dT%H%M%S", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M", "%Y-%m-%d"]


def strptime_or_error(raw: str, fmt: str) -> datetime | str:
    try:
        return datetime.strptime(raw, fmt)
    except ValueError:
        return "refused"


def fast_or_error(raw: str, fmt: str) -> datetime | str:
    parse = fixed_width_parser(fmt)
    assert parse is not None
    try:
        found = parse(raw)
    except ValueError:
        return "refused"
    return strptime_or_error(raw, fmt) if found is None else found  # None: strptime decides


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)))
def test_formatted_times_parse_as_strptime_parses_them(fmt: str, moment: datetime) -> None:
    raw = moment.strftime(fmt)
    assert fast_or_error(raw, fmt) == strptime_or_error(raw, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=300, deadline=None)
@given(raw=st.text(alphabet="0123456789T-/: ٣", max_size=20))
def test_any_text_is_accepted_or_refused_as_strptime_does(fmt: str, raw: str) -> None:
    assert fast_or_error(raw, fmt) == strptime_or_error(raw, fmt)


def test_edge_cases_and_formats_it_leaves_to_strptime() -> None:
    for raw in ("20260230T120000", "20261301T000000", "20261201T240000", "20261201T235960",
                "2026121T1234", "20261201T123456Z"):
        assert fast_or_error(raw, "%Y%m%dT%H%M%S") == strptime_or_error(raw, "%Y%m%dT%H%M%S")
    assert fixed_width_parser("%Y-%m-%dT%H:%M:%S.%f") is None  # %f: strptime only
    assert fixed_width_parser("%H:%M") is None  # no date
    assert fixed_width_parser("%Y %Y-%m-%d") is None  # a field twice
