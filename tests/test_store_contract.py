"""The PointStore contract, run against the real InfluxDB and the embedded SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.ingest.lineproto import encode_point
from hub.model import Point
from hub.store.base import PointStore, StoreUnavailable
from hub.store.embedded import EmbeddedStore
from hub.store.influx import InfluxV1Store
from tests.support.services import InfluxServer, free_port

T = 1_700_000_000_000_000_000


def pt(m: str, tags: dict[str, str], fields: dict[str, object], t: int = T) -> Point:
    return Point(m, tuple(sorted(tags.items())), tuple(sorted(fields.items())), t)  # type: ignore[arg-type]


@pytest.fixture(params=["influx", "embedded"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PointStore]:
    s: PointStore
    if request.param == "influx":
        db = request.getfixturevalue("influx_db")
        s = InfluxV1Store(db.url, db.name)
    else:
        s = EmbeddedStore(tmp_path / "telemetry.sqlite")
    yield s
    s.close()


def test_write_and_read(store: PointStore) -> None:
    a = pt(
        "fire_station",
        {"device_id": "fs-1", "site": "x"},
        {"temperature_c": 21.5, "door_open": False},
        T,
    )
    b = pt(
        "fire_station",
        {"device_id": "fs-2", "site": "x"},
        {"temperature_c": 22.0, "note": "ok"},
        T + 1,
    )
    c = pt(
        "fire_station",
        {"device_id": "fs-1", "site": "x"},
        {"temperature_c": 23.0, "count": 4},
        T + 2,
    )
    assert store.write_lines([encode_point(p) for p in (a, b, c)]).rejected == []
    assert store.read_points("fire_station") == [a, b, c]
    assert store.read_points("fire_station", {"device_id": "fs-1"}) == [a, c]
    assert store.read_points("fire_station", {"device_id": "nope"}) == []
    assert store.read_points("no_such_measurement") == []
    assert store.write_lines([]).rejected == []
    assert store.ping()


def test_idempotent_rewrite(store: PointStore) -> None:
    lines = [encode_point(pt("m", {"d": str(i % 3)}, {"v": float(i)}, T + i)) for i in range(10)]
    store.write_lines(lines)
    store.write_lines(lines)
    store.write_lines(lines[3:7])
    assert len(store.read_points("m")) == 10


def test_field_merge_new_values_win(store: PointStore) -> None:
    store.write_lines([encode_point(pt("m", {"d": "1"}, {"a": 1, "b": "x"}))])
    store.write_lines([encode_point(pt("m", {"d": "1"}, {"b": "y", "c": True}))])
    assert store.read_points("m") == [pt("m", {"d": "1"}, {"a": 1, "b": "y", "c": True})]


def test_escaping(store: PointStore) -> None:
    p = pt(
        "odd name,with=stuff",
        {"tag key": "va lue,=x", "社区": "新河 村", "q": 'say "hi"'},
        {"f k=,": 'quote " and \\ backslash', "温度": -0.5, "i": -(2**63)},
    )
    assert store.write_lines([encode_point(p)]).rejected == []
    assert store.read_points("odd name,with=stuff") == [p]
    assert store.read_points("odd name,with=stuff", {"tag key": "va lue,=x"}) == [p]


def test_newline_policy(store: PointStore) -> None:
    p = pt("nl", {"t": "a\nb"}, {"s": "line1\nline2"})
    assert store.write_lines([encode_point(p)]).rejected == []
    (got,) = store.read_points("nl")
    if isinstance(store, InfluxV1Store):
        # InfluxDB has no newline escape: it keeps the two characters the encoder wrote.
        assert got == pt("nl", {"t": "a\\nb"}, {"s": "line1\\nline2"})
    else:
        assert got == p


def test_type_conflict_rejected_alone(store: PointStore) -> None:
    store.write_lines([encode_point(pt("m", {"d": "1"}, {"v": 1}, T))])
    good1 = encode_point(pt("m", {"d": "2"}, {"v": 2}, T + 1))
    bad = encode_point(pt("m", {"d": "3"}, {"v": "three"}, T + 2))
    good2 = encode_point(pt("m", {"d": "4"}, {"v": 4, "w": 1.5}, T + 3))
    result = store.write_lines([good1, bad, good2])
    assert [line for line, _ in result.rejected] == [bad]
    reason = result.rejected[0][1]
    assert "field type conflict" in reason and '"v"' in reason, reason
    assert [p.tag("d") for p in store.read_points("m")] == ["1", "2", "4"]


def test_conflict_within_one_batch(store: PointStore) -> None:
    first = encode_point(pt("fresh", {}, {"v": 1.5}, T))
    second = encode_point(pt("fresh", {}, {"v": True}, T + 1))
    result = store.write_lines([first, second])
    assert [line for line, _ in result.rejected] == [second]
    assert len(store.read_points("fresh")) == 1


def test_unparsable_and_reserved_lines_rejected_alone(store: PointStore) -> None:
    good = encode_point(pt("m", {}, {"v": 1}, T))
    garbage = b"m v= 12"
    reserved = b"m time=1i 5"
    result = store.write_lines([garbage, good, reserved])
    rejected = dict(result.rejected)
    assert set(rejected) == {garbage, reserved}
    assert "unable to parse" in rejected[garbage]
    assert "time" in rejected[reserved]
    assert len(store.read_points("m")) == 1


# -- InfluxDB specifics ----------------------------------------------------------------------


@pytest.mark.services
def test_influx_creates_missing_database(influx_db) -> None:  # type: ignore[no-untyped-def]
    name = influx_db.name + "_auto"
    store = InfluxV1Store(influx_db.url, name)
    try:
        assert store.write_lines([encode_point(pt("m", {}, {"v": 1}))]).rejected == []
        assert len(store.read_points("m")) == 1
    finally:
        store.close()
        influx_db.server.drop_database(name)


def test_influx_unreachable_raises() -> None:
    store = InfluxV1Store(f"http://127.0.0.1:{free_port()}", "hub", timeout_s=1.0)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.write_lines([b"m v=1 1"])
    assert not store.ping()
    store.close()


class _AuthInflux(InfluxServer):
    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text()
        self.config_path.write_text(text.replace("[http]\n", "[http]\n  auth-enabled = true\n"))


@pytest.mark.services
def test_influx_auth_errors_keep_data(tmp_path: Path) -> None:
    from conftest import require_binary

    server = _AuthInflux(tmp_path / "influx", binary=require_binary("influxd"))
    server.start()
    try:
        admin = InfluxV1Store(server.url, "hub", username="admin", password="s3cret")
        admin.query("CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES")
        line = encode_point(pt("m", {}, {"v": 1}))
        assert admin.write_lines([line]).rejected == []  # creates the database, then writes
        wrong = InfluxV1Store(server.url, "hub", username="admin", password="wrong")
        with pytest.raises(StoreUnavailable, match="refused the credentials"):
            wrong.write_lines([line])
        anonymous = InfluxV1Store(server.url, "hub")
        with pytest.raises(StoreUnavailable, match="credentials"):
            anonymous.write_lines([line])
        assert len(admin.read_points("m")) == 1
        for s in (admin, wrong, anonymous):
            s.close()
    finally:
        server.close()
