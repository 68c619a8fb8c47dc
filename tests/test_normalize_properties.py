"""Property tests of decoding and normalization (hypothesis)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.ingest.lineproto import encode_point
from hub.model import InboundMessage, Reading, Refusal
from tests.support.normalize_checks import NORMALIZER, NOW, check_outcome

TOPICS = [
    r.spec.topic.replace("{device_id}", dev)
    for r in NORMALIZER.router.routes
    for dev in ("GY-FL-0001", "861234567890123", "FP-R03", "LTP-MFS-01", "YK8-000231")
]
SHANGHAI = timezone(timedelta(hours=8))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


def process(topic: str, payload: bytes) -> Reading | Refusal:
    return NORMALIZER.process(InboundMessage(topic, payload, 1, False, NOW))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), payload=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(topic: str, payload: bytes) -> None:
    check_outcome(process(topic, payload))


@settings(max_examples=400)
@given(
    topic=st.sampled_from(TOPICS),
    body=st.dictionaries(
        st.sampled_from(
            [
                "ts",
                "mode",
                "lamp",
                "battery_mv",
                "tilt_deg",
                "env",
                "extinguishers",
                "reader",
                "tag_uid",
                "patroller",
                "sn",
                "time",
                "T",
                "EXT1",
                "EXT2",
                "station",
                "event",
                "hydrant",
                "x",
            ]
        ),
        json_values,
        max_size=10,
    ),
)
def test_arbitrary_json_objects_never_crash(topic: str, body: dict[str, object]) -> None:
    check_outcome(process(topic, json.dumps(body).encode()))


@settings(max_examples=300)
@given(fields=st.lists(st.text(alphabet="0123456789ABCDEFT,-.x", max_size=12), max_size=14))
def test_arbitrary_csv_never_crashes(fields: list[str]) -> None:
    check_outcome(process("hnbsd/861234567890123/up", ",".join(fields).encode()))


instants = st.datetimes(
    min_value=datetime(2021, 1, 1), max_value=datetime(2026, 11, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


@settings(max_examples=300)
@given(
    t=instants,
    battery=st.integers(0, 6000),
    solar=st.integers(0, 8000),
    tilt=st.integers(0, 1800),
    hz=st.integers(0, 200),
    veh=st.integers(0, 99999),
    mode=st.sampled_from("FSO"),
    lamp=st.sampled_from("10"),
)
def test_bsd3_csv_values_and_local_time(
    t: datetime, battery: int, solar: int, tilt: int, hz: int, veh: int, mode: str, lamp: str
) -> None:
    local = t.astimezone(SHANGHAI).strftime("%Y%m%dT%H%M%S")
    payload = f"BSD3,861234567890123,{local},{mode},{lamp},{battery},{solar},{tilt:03d},{hz},{veh}"
    reading = process("hnbsd/861234567890123/up", payload.encode())
    assert isinstance(reading, Reading), reading
    assert reading.time_ns == int(t.timestamp()) * 1_000_000_000
    v = reading.values
    assert math.isclose(v["battery_v"], battery / 100) and math.isclose(v["tilt_deg"], tilt / 10)
    assert math.isclose(v["solar_v"], solar / 100) and math.isclose(v["flash_hz"], hz / 10)
    assert v["vehicle_count"] == veh and v["lamp"] == ("ok" if lamp == "1" else "fail")


@settings(max_examples=300)
@given(
    t=instants,
    kpa=st.dictionaries(st.integers(1, 12), st.integers(0, 9999), max_size=6),
    temp=st.integers(-500, 9999),
    wp=st.integers(0, 5000),
)
def test_yk_slots_and_scaling(t: datetime, kpa: dict[int, int], temp: int, wp: int) -> None:
    body = {
        "sn": "YK8-000231",
        "time": t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
        "T": temp,
        "WP": wp,
        **{f"EXT{slot}": value for slot, value in kpa.items()},
    }
    reading = process("yk/YK8-000231/data", json.dumps(body).encode())
    assert isinstance(reading, Reading), reading
    assert math.isclose(reading.values["temperature_c"], temp / 10)
    assert math.isclose(reading.values["hydrant_pressure_mpa"], wp / 1000)
    slots = {
        p.tag("slot"): dict(p.fields) for p in reading.points if p.measurement == "extinguisher"
    }
    assert set(slots) == {str(s) for s in kpa}
    for slot, value in kpa.items():
        assert slots[str(slot)]["present"] is (value != 0)
        assert ("pressure_mpa" in slots[str(slot)]) is (value != 0)  # an empty slot has no pressure


@settings(max_examples=200)
@given(offset_s=st.integers(-(10**9), 10**9))
def test_device_time_used_only_when_plausible(offset_s: int) -> None:
    device_ms = NOW // 1_000_000 + offset_s * 1000
    body = {"ts": device_ms, "mode": "flash", "lamp": "ok", "battery_mv": 12000}
    reading = process("roadsafety/flashlight/GY-FL-0001/telemetry", json.dumps(body).encode())
    assert isinstance(reading, Reading)
    plausible = (
        device_ms * 1_000_000 >= int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()) * 10**9
        and device_ms * 1_000_000 <= NOW + 300 * 10**9
    )
    assert reading.time_ns == (device_ms * 1_000_000 if plausible else NOW)
    assert ("device_time_s" in dict(reading.points[0].fields)) is (not plausible)


# Found by bench/fuzz_decoders.py: a device id or payload tag ending in a backslash made a
# Reading that encode_point refuses (ValueError), which stopped the pipeline thread.
def test_tag_ending_in_backslash_is_refused() -> None:
    for route in NORMALIZER.router.routes:
        topic = route.spec.topic.replace("{device_id}", "GY-FL-0001\\")
        for payload in (b"offline", b'{"mode": "flash", "lamp": "ok", "battery_mv": 12000}'):
            result = process(topic, payload)
            assert isinstance(result, Refusal) and result.reason == "bad_device_id", result
    scan = {"reader": "FP-R03", "tag_uid": "04A1", "patroller": "P\\", "ts": 1764316800}
    station = {"station": "LTP-MFS-01", "extinguishers": [{"slot": "1\\", "present": True}]}
    for topic, body in [
        ("patrol/FP-R03/scan", scan),
        ("firestation/LTP-MFS-01/telemetry", station),
    ]:
        result = process(topic, json.dumps(body).encode())
        assert isinstance(result, Refusal) and result.reason == "bad_value", result
        assert "backslash" in result.detail
    ok = process("patrol/FP-R03/scan", json.dumps({**scan, "patroller": "P\\1"}).encode())
    assert isinstance(ok, Reading), ok
    assert all(encode_point(p) for p in ok.points)
