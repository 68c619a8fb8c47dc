"""Line protocol: exact examples, the escaping policy, property round trips (also via InfluxDB)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.ingest import lineproto
from hub.ingest.lineproto import encode_point, encode_points, parse_line, series_key
from hub.model import Point
from hub.store.influx import InfluxV1Store
from tests.support.services import InfluxDatabase

T = 1_700_000_000_123_456_789


def pt(measurement: str, tags: dict[str, str], fields: dict[str, object], t: int = T) -> Point:
    return Point(measurement, tuple(tags.items()), tuple(fields.items()), t)  # type: ignore[arg-type]


# -- exact examples --------------------------------------------------------------------------


def test_types_and_order() -> None:
    p = pt(
        "flashing_light",
        {"site": "xinhe", "device_id": "fl-1", "model": "acme"},
        {"battery_v": 12.0, "count": 37, "charging": True, "mode": "flash", "tiny": 1.5e-7},
    )
    assert encode_point(p) == (
        b"flashing_light,device_id=fl-1,model=acme,site=xinhe "
        b'battery_v=12.0,count=37i,charging=true,mode="flash",tiny=1.5e-07 '
        b"1700000000123456789"
    )


def test_bool_is_not_int_and_float_keeps_a_dot() -> None:
    line = encode_point(pt("m", {}, {"a": False, "b": 0, "c": 0.0, "d": 1e16, "e": -3}))
    assert line == b"m a=false,b=0i,c=0.0,d=1e+16,e=-3i 1700000000123456789"
    parsed = parse_line(line)
    assert [type(v) for _, v in parsed.fields] == [bool, int, float, float, int]


def test_escaping() -> None:
    p = pt(
        "my meas,x=1",
        {"tag key,=": "va lue,=x", "empty": ""},
        {"f k=,": 'say "hi" \\ there', "n": 1},
    )
    line = encode_point(p)
    assert line == (
        rb"my\ meas\,x=1,tag\ key\,\==va\ lue\,\=x "
        rb'f\ k\=\,="say \"hi\" \\ there",n=1i 1700000000123456789'
    )
    assert parse_line(line) == pt("my meas,x=1", {"tag key,=": "va lue,=x"}, dict(p.fields))


def test_unicode_names() -> None:
    p = pt("消防站", {"社区": "新河 村"}, {"温度_c": 21.5, "备注": "正常"})
    assert parse_line(encode_point(p)) == p
    assert encode_point(p).decode().startswith("消防站,社区=新河\\ 村 ")


def test_newline_policy_one_line_always() -> None:
    p = pt("m\nx", {"t\nk": "a\nb"}, {"f\n": "line1\nline2", "g": "C:\\new"})
    line = encode_point(p)
    assert b"\n" not in line
    assert line == rb'm\nx,t\nk=a\nb f\n="line1\nline2",g="C:\\new" 1700000000123456789'
    assert parse_line(line) == p


def test_backslash_policy() -> None:
    # Kept as is where InfluxDB stores it faithfully, doubled where it would read as an escape.
    assert encode_point(pt("m", {"t": r"C:\dir"}, {"f": 1})).startswith(rb"m,t=C:\dir ")
    assert encode_point(pt("m", {"t": "a\\,b"}, {"f": 1})).startswith(rb"m,t=a\\\,b ")
    assert encode_point(pt("m", {"t": "a\\nb"}, {"f": 1})).startswith(rb"m,t=a\\nb ")
    for tag in (r"C:\dir", "a\\,b", "a\\nb", "a\\\\b", "a\\\nb"):
        p = pt("m", {"t": tag}, {"f": 1})
        assert parse_line(encode_point(p)) == p


@pytest.mark.parametrize(
    "point",
    [
        pt("m", {}, {}),
        pt("", {}, {"f": 1}),
        pt("m", {"": "v"}, {"f": 1}),
        pt("m", {}, {"": 1}),
        pt("m", {}, {"f": math.nan}),
        pt("m", {}, {"f": math.inf}),
        pt("m", {}, {"f": -math.inf}),
        pt("m", {}, {"f": 2**63}),
        pt("m", {}, {"f": -(2**63) - 1}),
        pt("m\\", {}, {"f": 1}),
        pt("m", {"t": "v\\"}, {"f": 1}),
        pt("m", {}, {"f\\": 1}),
        pt("#m", {}, {"f": 1}),
        pt("\tm", {}, {"f": 1}),
        pt("m\x00", {}, {"f": 1}),
        pt("m", {"t\x00": "v"}, {"f": 1}),
        pt("m", {}, {"\x00": 1}),
        pt("m", {}, {"f": None}),
        Point("m", (("t", "a"), ("t", "b")), (("f", 1),), T),
    ],
)
def test_refused(point: Point) -> None:
    with pytest.raises(ValueError):
        encode_point(point)


def test_time_must_be_int() -> None:
    with pytest.raises(ValueError):
        encode_point(Point("m", (), (("f", 1),), 1.5))  # type: ignore[arg-type]


def test_series_key() -> None:
    line = encode_point(pt("a b", {"t": "x y"}, {"f": "v w"}))
    assert series_key(line) == rb"a\ b,t=x\ y"
    assert series_key(b"m f=1 1") == b"m"


def test_parse_foreign_forms() -> None:
    p = parse_line(b"m,t=a f=1,g=T,h=FALSE,i=-5i,j=2u 42")
    assert p == Point(
        "m", (("t", "a"),), (("f", 1.0), ("g", True), ("h", False), ("i", -5), ("j", 2)), 42
    )
    for bad in (b"m", b"m f=1", b"m f= 1", b'm f="x 1', b"m,t f=1 1", b"m f=nan 1", b" f=1 1"):
        with pytest.raises(ValueError):
            parse_line(bad)


def test_encode_points() -> None:
    ps = [pt("m", {}, {"f": i}, i) for i in range(3)]
    assert [parse_line(x) for x in encode_points(ps)] == ps


# -- property tests --------------------------------------------------------------------------

tag_values = st.text(min_size=1, max_size=12).filter(lambda s: not s.endswith("\\"))
names = tag_values.filter(lambda s: "\x00" not in s)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=20),
)


@st.composite
def points(
    draw: st.DrawFn,
    key: st.SearchStrategy[str] = names,
    tag_value: st.SearchStrategy[str] = tag_values,
    window: bool = False,
) -> Point:
    measurement = draw(key.filter(lambda s: s[0] not in "#\t"))
    tag_keys = draw(st.lists(key, max_size=4, unique=True))
    values_of_tags = draw(st.lists(tag_value, min_size=len(tag_keys), max_size=len(tag_keys)))
    field_keys = draw(
        st.lists(key.filter(lambda k: k not in tag_keys), min_size=1, max_size=4, unique=True)
    )
    field_values = draw(st.lists(values, min_size=len(field_keys), max_size=len(field_keys)))
    if window:
        t = draw(st.integers(min_value=T, max_value=T + 3 * 86_400 * 10**9))
    else:
        t = draw(st.integers(min_value=-(2**63) + 2, max_value=2**63 - 2))
    return Point(
        measurement,
        tuple(sorted(zip(tag_keys, values_of_tags, strict=True))),
        tuple(zip(field_keys, field_values, strict=True)),
        t,
    )


@given(points())
@settings(max_examples=500)
def test_roundtrip_property(p: Point) -> None:
    line = encode_point(p)
    assert b"\n" not in line
    assert parse_line(line) == p
    assert line.startswith(series_key(line) + b" ")


# Names without backslashes: InfluxDB cannot store every backslash faithfully (see the module
# docstring and test_influx_backslash_forms); everything else in Unicode is fair game.
influx_tag_values = st.text(min_size=1, max_size=10).filter(lambda s: "\\" not in s)
# Nor tabs in names: InfluxDB 1.6 reads the field key "\t" back as "val0" (its scanner takes a
# tab for the separator). Profile names are identifiers, so the hub never writes one.
influx_names = influx_tag_values.filter(lambda s: "\x00" not in s and "\t" not in s
                                        and s != "time")
_db_counter = itertools.count()


def influx_view(s: str) -> str:
    """What InfluxDB stores for a text this encoder wrote: a newline reads back as ``\\n``."""
    return s.replace("\n", "\\n")


@pytest.mark.services
def test_roundtrip_through_influxdb(influx_db: InfluxDatabase) -> None:
    server = influx_db.server

    @given(st.lists(points(influx_names, influx_tag_values, window=True), min_size=1, max_size=3))
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def check(batch: list[Point]) -> None:
        # One measurement per point: a field's type is fixed per measurement in InfluxDB.
        batch = [
            Point(f"{p.measurement}_{i}", p.tags, p.fields, p.time_ns) for i, p in enumerate(batch)
        ]
        db = f"rt_{next(_db_counter)}"
        server.create_database(db)
        store = InfluxV1Store(server.url, db)
        try:
            result = store.write_lines(encode_points(batch))
            assert result.rejected == []
            for p in batch:
                got = store.read_points(influx_view(p.measurement))
                want_tags = tuple(sorted((influx_view(k), influx_view(v)) for k, v in p.tags))
                want_fields = {
                    influx_view(k): influx_view(v) if isinstance(v, str) else v for k, v in p.fields
                }
                assert len(got) == 1, got
                assert got[0].tags == want_tags
                assert dict(got[0].fields) == want_fields
                assert [type(v) for _, v in sorted(got[0].fields)] == [
                    type(want_fields[k]) for k, _ in sorted(got[0].fields)
                ]
                assert got[0].time_ns == p.time_ns
        finally:
            store.close()
            server.drop_database(db)

    check()


@pytest.mark.services
def test_influx_backslash_forms(influx_db: InfluxDatabase) -> None:
    """The documented table: what InfluxDB 1.x stores for backslashes this encoder writes."""
    store = InfluxV1Store(influx_db.url, influx_db.name)
    cases = {
        r"C:\dir": r"C:\dir",  # faithful
        "a\\,b": "a\\\\,b",  # before an escapable character: stored doubled
        "a\\nb": "a\\\\nb",  # before an n: doubled, so it cannot read as a newline
        "a\nb": "a\\nb",  # a newline: stored as the two characters \n
    }
    lines = [
        encode_point(pt("bs", {"t": tag}, {"f": i, "s": tag}, T + i)) for i, tag in enumerate(cases)
    ]
    assert store.write_lines(lines).rejected == []
    got = {p.field("f"): p for p in store.read_points("bs")}
    for i, (tag, stored) in enumerate(cases.items()):
        assert got[i].tag("t") == stored, tag
        assert got[i].field("s") == influx_view(tag)  # string fields: only the newline differs
    store.close()


def test_series_cache_pauses_when_the_fleet_outgrows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet with more series than the cache holds gets no hits: caching pauses (memory)."""
    monkeypatch.setattr(lineproto, "_CACHE_MAX", 10)
    monkeypatch.setattr(lineproto, "_SERIES_PAUSE", 25)
    monkeypatch.setattr(lineproto, "_series_cache", {})
    monkeypatch.setattr(lineproto, "_series_hits", 0)
    monkeypatch.setattr(lineproto, "_series_pause", 0)

    def line(device: int) -> bytes:
        return encode_point(Point("m", (("device_id", f"d{device}"),), (("v", 1.0),), 1))

    for device in range(5):  # a small fleet, seen again and again: kept, and hit
        assert line(device) == line(device) == f"m,device_id=d{device} v=1.0 1".encode()
    assert len(lineproto._series_cache) == 5
    for device in range(5, 10):  # more series than fit, each seen once: fills, few hits
        line(device)
    assert len(lineproto._series_cache) == 10
    line(10)  # full with fewer hits (5) than entries (10): emptied, and caching pauses
    assert lineproto._series_cache == {} and lineproto._series_pause == 25
    for device in range(11, 36):
        assert line(device) == f"m,device_id=d{device} v=1.0 1".encode()  # same lines
    assert lineproto._series_cache == {} and lineproto._series_pause == 0
    line(36)  # tried again
    assert len(lineproto._series_cache) == 1


def test_series_cache_kept_while_it_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full cache whose entries were hit is emptied and refilled, never paused."""
    monkeypatch.setattr(lineproto, "_CACHE_MAX", 4)
    monkeypatch.setattr(lineproto, "_series_cache", {})
    monkeypatch.setattr(lineproto, "_series_hits", 0)
    monkeypatch.setattr(lineproto, "_series_pause", 0)
    for _ in range(3):
        for device in range(4):
            encode_point(Point("m", (("device_id", f"d{device}"),), (("v", 1),), 1))
    encode_point(Point("m", (("device_id", "d4"),), (("v", 1),), 1))
    assert lineproto._series_pause == 0 and len(lineproto._series_cache) == 1
