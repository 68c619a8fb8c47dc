"""Simulators: datasheet-exact encoders, determinism, plausible physics, scenarios, a live run."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.sites import load_sites
from simulators import cli
from simulators.clock import SimClock
from simulators.fleet import Fleet
from simulators.message import SimMessage
from simulators.models.hn_bsd3 import Bsd3Report
from simulators.models.mfs_gw1 import Extinguisher, MfsEvent, MfsTelemetry
from simulators.models.pt_nfc1 import NfcHazard, NfcScan, photo_ref
from simulators.models.xs_fl200 import Fl200Telemetry
from simulators.models.yk_fs8 import Fs8Data
from simulators.mqtturl import parse_mqtt_url
from simulators.scenario import ScenarioError, builtin_scenarios, load_scenario

ROOT = Path(__file__).resolve().parent.parent
DATASHEET = Path("/work/shared/FIELD_DEVICES.md")
CST = timezone(timedelta(hours=8))
MODELS = {"XS-FL200", "HN-BSD3", "PT-NFC1", "MFS-GW1", "YK-FS8"}

# The examples of FIELD_DEVICES.md, each on one line (the datasheet wraps them).
XS_EXAMPLE = (
    '{"ts": 1764316800123, "mode": "flash", "lamp": "ok", "battery_mv": 12450, '
    '"solar_mv": 18020, "charging": true, "tilt_deg": 1.8, "flash_hz": 1.5, '
    '"veh_count": 37, "temp_c": 21.5, "fw": "2.3.1"}'
)
BSD3_EXAMPLE = "BSD3,861234567890123,20261128T080000,F,1,1245,1802,018,15,37"
SCAN_EXAMPLE = (
    '{"reader": "FP-R03", "tag_uid": "04A1B2C3D4E5F6", "patroller": "FP-P017", '
    '"ts": "2026-11-28T08:03:12+08:00", "lat": 29.0312, "lon": 111.6935, '
    '"battery_pct": 81}'
)
HAZARD_EXAMPLE = (
    '{"reader": "FP-R03", "patroller": "FP-P017", "tag_uid": "04A1B2C3D4E5F6", '
    '"ts": "2026-11-28T08:04:40+08:00", "category": "fire_exit_blocked", '
    '"note": "stairwell B blocked by goods", '
    '"photo_ref": "img/2026/11/28/0804-40.jpg"}'
)
EVENT_EXAMPLE = '{"ts": 1764316805, "event": "smoke_alarm", "zone": "store"}'
MFS_EXAMPLE = (
    '{"station": "LTP-MFS-02", "ts": 1764316800, '
    '"env": {"smoke": 0.02, "temp_c": 18.6, "humidity_pct": 64}, '
    '"hydrant": {"pressure_mpa": 0.32}, '
    '"extinguishers": [{"slot": 1, "present": true, "pressure_mpa": 1.18}, '
    '{"slot": 2, "present": true, "pressure_mpa": 0.72}], '
    '"door_open": false, "mains_power": true, "battery_pct": 97}'
)
YK_EXAMPLE = (
    '{"sn": "YK8-000231", "time": "2026-11-28 08:00:00", "T": 186, "H": 64, "SMK": 2, '
    '"WP": 320, "EXT1": 1180, "EXT2": 0, "DOOR": 0, "AC": 1, "BAT": 97}'
)


# -- encoders ------------------------------------------------------------------------------------
def test_xs_fl200_encoder_matches_datasheet() -> None:
    reading = Fl200Telemetry(
        ts_ms=1764316800123,
        mode="flash",
        lamp="ok",
        battery_mv=12450,
        solar_mv=18020,
        charging=True,
        tilt_deg=1.8,
        flash_hz=1.5,
        veh_count=37,
        temp_c=21.5,
        fw="2.3.1",
    )
    assert reading.encode() == XS_EXAMPLE.encode()
    bare = Fl200Telemetry(1764316800123, "off", "fail", 11000, 200, 80.04, 0.0).encode()
    assert json.loads(bare) == {
        "ts": 1764316800123,
        "mode": "off",
        "lamp": "fail",
        "battery_mv": 11000,
        "solar_mv": 200,
        "tilt_deg": 80.0,
        "flash_hz": 0.0,
    }


def test_hn_bsd3_encoder_matches_datasheet() -> None:
    report = Bsd3Report(
        "861234567890123", datetime(2026, 11, 28, 8, 0, 0), "F", True, 1245, 1802, 18, 15, 37
    )
    assert report.encode() == BSD3_EXAMPLE.encode()
    tilted = Bsd3Report(
        "861234567890123", datetime(2026, 11, 28, 8, 0, 0), "O", False, 1080, 3, 800, 0, 0
    )
    assert tilted.encode() == b"BSD3,861234567890123,20261128T080000,O,0,1080,3,800,0,0"


def test_pt_nfc1_encoders_match_datasheet() -> None:
    scan = NfcScan(
        "FP-R03",
        "04A1B2C3D4E5F6",
        "FP-P017",
        datetime(2026, 11, 28, 8, 3, 12, tzinfo=CST),
        29.0312,
        111.6935,
        81,
    )
    assert scan.encode() == SCAN_EXAMPLE.encode()
    at = datetime(2026, 11, 28, 8, 4, 40, tzinfo=CST)
    hazard = NfcHazard(
        "FP-R03",
        "FP-P017",
        "04A1B2C3D4E5F6",
        at,
        "fire_exit_blocked",
        "stairwell B blocked by goods",
        photo_ref(at),
    )
    assert hazard.encode() == HAZARD_EXAMPLE.encode()


def test_mfs_gw1_encoders_match_datasheet() -> None:
    telemetry = MfsTelemetry(
        "LTP-MFS-02",
        1764316800,
        0.02,
        18.6,
        64,
        0.32,
        (Extinguisher(1, True, 1.18), Extinguisher(2, True, 0.72)),
        False,
        True,
        97,
    )
    assert telemetry.encode() == MFS_EXAMPLE.encode()
    assert MfsEvent(1764316805, "smoke_alarm", "store").encode() == EVENT_EXAMPLE.encode()
    missing = MfsTelemetry(
        "LTP-MFS-02", 1, 0.0, 18.6, 64, 0.32, (Extinguisher(1, False),), False, True, 97
    )
    assert json.loads(missing.encode())["extinguishers"] == [{"slot": 1, "present": False}]


def test_yk_fs8_encoder_matches_datasheet() -> None:
    data = Fs8Data(
        "YK8-000231", datetime(2026, 11, 28, 8, 0, 0), 186, 64, 2, 320, (1180, 0), 0, 1, 97
    )
    assert data.encode() == YK_EXAMPLE.encode()


@pytest.mark.skipif(not DATASHEET.exists(), reason="datasheet not on this machine")
def test_examples_are_the_datasheets() -> None:
    text = DATASHEET.read_text(encoding="utf-8")
    blocks = [
        re.sub(r"\s*\n\s*", " ", b.strip())
        for b in re.findall(r"```(?:json)?\n(.*?)```", text, re.S)
    ]
    for example in (
        XS_EXAMPLE,
        BSD3_EXAMPLE,
        SCAN_EXAMPLE,
        HAZARD_EXAMPLE,
        MFS_EXAMPLE,
        YK_EXAMPLE,
    ):
        assert example in blocks
    assert EVENT_EXAMPLE in text


# -- the fleet -----------------------------------------------------------------------------------
START = datetime(2026, 11, 28, 7, 55, tzinfo=CST)


@pytest.fixture(scope="module")
def day() -> list[SimMessage]:
    """A full simulated day of all three sites."""
    return Fleet(ROOT / "sites", seed=7, start=START).run_for(24 * 3600)


def _digest(messages: list[SimMessage]) -> list[tuple[str, bytes, int, bool]]:
    return [(m.topic, m.payload, m.qos, m.retain) for m in messages]


def test_same_seed_same_bytes_however_sliced() -> None:
    one = Fleet(ROOT / "sites", seed=11, start=START).run_for(1800)
    fleet = Fleet(ROOT / "sites", seed=11, start=START)
    sliced: list[SimMessage] = []
    t = START
    while t < START + timedelta(seconds=1800):
        step = timedelta(seconds=47)
        end = min(t + step, START + timedelta(seconds=1800))
        sliced += fleet.events_between(t, end)
        t = end
    assert _digest(one) == _digest(sliced)
    replay = list(fleet.events_between(START, START + timedelta(seconds=1800)))
    assert _digest(replay) == _digest(one)
    other = Fleet(ROOT / "sites", seed=12, start=START).run_for(1800)
    assert _digest(other) != _digest(one)


def test_every_model_reports_at_its_interval(day: list[SimMessage]) -> None:
    counts = Counter(m.model for m in day)
    assert set(counts) == MODELS
    per_device = Counter(m.device for m in day if m.topic.endswith("/telemetry"))
    assert all(1439 <= n <= 1441 for d, n in per_device.items() if d.startswith("GY-FL"))
    assert all(2879 <= n <= 2881 for d, n in per_device.items() if d.startswith("LTP-MFS"))
    bsd = Counter(m.device for m in day if m.topic.startswith("hnbsd/"))
    assert len(bsd) == 120 and all(287 <= n <= 289 for n in bsd.values())


def test_lights_flash_in_active_hours_and_batteries_follow_the_sun(day: list[SimMessage]) -> None:
    site = load_sites(ROOT / "sites").sites["guoyuan"]
    hours = {d.id: d.active_hours for d in site.devices}
    volts: dict[int, list[float]] = {}
    optional = Counter()
    for m in day:
        if not m.topic.endswith("/telemetry") or not m.device.startswith("GY-FL"):
            continue
        doc = json.loads(m.payload)
        local = m.device_time.astimezone(CST)
        window = hours[m.device]
        assert window is not None
        t = local.time()
        inside = (
            (window.start <= t < window.end)
            if window.start < window.end
            else (t >= window.start or t < window.end)
        )
        assert (doc["mode"] == "flash") == inside, (m.device, local, doc["mode"])
        assert (doc["flash_hz"] > 0) == inside
        volts.setdefault(local.hour, []).append(doc["battery_mv"] / 1000)
        optional.update(k for k in ("charging", "veh_count", "temp_c", "fw") if k not in doc)
        assert 11.5 < doc["battery_mv"] / 1000 < 14.5 and doc["tilt_deg"] < 5
    mean = {h: sum(v) / len(v) for h, v in volts.items()}
    assert mean[14] > mean[6] + 0.2  # charged by the afternoon, drained by dawn
    assert all(optional[k] > 0 for k in ("charging", "veh_count", "temp_c", "fw"))


def test_stations_follow_the_day(day: list[SimMessage]) -> None:
    temps: dict[int, list[float]] = {}
    for m in day:
        if m.topic.startswith("firestation/") and m.topic.endswith("/telemetry"):
            doc = json.loads(m.payload)
            temps.setdefault(m.device_time.astimezone(CST).hour, []).append(doc["env"]["temp_c"])
            assert doc["env"]["smoke"] < 0.1
            assert all(1.0 <= e["pressure_mpa"] <= 1.4 for e in doc["extinguishers"])
            assert 0.2 < doc["hydrant"]["pressure_mpa"] < 0.45
    assert max(temps[15]) > min(temps[6])
    doors = [json.loads(m.payload)["event"] for m in day if m.topic.endswith("/event")]
    assert "door_open" in doors and "door_closed" in doors


def test_patrol_rounds_walk_every_checkpoint_in_their_windows(day: list[SimMessage]) -> None:
    site = load_sites(ROOT / "sites").sites["fuping"]
    tag_cp = {c.tag_uid: c.id for c in site.checkpoints}
    scans = [m for m in day if m.topic.endswith("/scan")]
    assert len(scans) >= 3 * 107 - 12  # the 07:30 round in progress at 07:55 is partly walked
    late = [m for m in scans if m.at - m.device_time > timedelta(seconds=2)]
    assert late, "some scans should be buffered in coverage gaps"
    by_reader: dict[str, list[SimMessage]] = {}
    for m in scans:
        by_reader.setdefault(m.device, []).append(m)
    for reader, msgs in by_reader.items():
        route = next(r for r in site.routes if reader in r.readers)
        times = sorted(m.device_time for m in msgs)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        walking = [g for g in gaps if g < 3600]
        assert all(25 <= g <= 8 * 60 + 1 for g in walking), (reader, walking)
        for m in msgs:
            doc = json.loads(m.payload)
            assert tag_cp[doc["tag_uid"]] in route.checkpoints
            assert doc["patroller"] in route.inspectors
            assert doc["ts"].endswith("+08:00")
        uploads = [m.device_time for m in sorted(msgs, key=lambda m: m.at)]
        assert uploads == sorted(uploads), "buffered scans are uploaded oldest first"


def test_unknown_models_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        "site: x\nname: X\ndevices:\n  - {id: A1, model: ACME-9}\n"
        "  - {id: GY-X, model: XS-FL200}\n",
        encoding="utf-8",
    )
    fleet = Fleet(tmp_path, seed=1, start=START)
    assert set(fleet.devices) == {"GY-X"} and fleet.skipped_models["ACME-9"] == 1


# -- scenarios -----------------------------------------------------------------------------------
def test_builtin_scenarios_validate_against_the_sites() -> None:
    scenarios = {s.name: s for s in builtin_scenarios()}
    assert {
        "light_knocked_over",
        "light_lamp_and_battery",
        "fire_smoke_then_fire",
        "fire_station_readiness",
        "device_silent",
        "patrol_faults",
        "field_garbage",
        "demo_incidents",
    } <= set(scenarios)
    for sc in scenarios.values():
        Fleet(ROOT / "sites", seed=1, start=START, scenario=sc)
        assert sc.description
    assert scenarios["field_garbage"].expect_alarms == []


def _run(name: str, seconds: float | None = None) -> tuple[Fleet, list[SimMessage]]:
    sc = load_scenario(name)
    start = datetime.combine(START.date(), sc.start or START.time(), tzinfo=CST)
    fleet = Fleet(ROOT / "sites", seed=5, start=start, scenario=sc)
    return fleet, fleet.run_for(seconds or sc.duration_s)


def test_scenario_faults_show_in_payloads() -> None:
    fleet, msgs = _run("light_knocked_over")
    assert any(
        m.device == "GY-FL-0006" and json.loads(m.payload)["tilt_deg"] > 70
        for m in msgs
        if m.topic.endswith("/telemetry")
    )
    assert any(
        m.payload.split(b",")[7] >= b"780" for m in msgs if m.topic == "hnbsd/861234567800032/up"
    )
    assert [f.fault for f in fleet.injected] == ["knock_over", "knock_over"]

    _fleet, msgs = _run("fire_smoke_then_fire")
    events = [
        json.loads(m.payload)["event"] for m in msgs if m.topic == "firestation/LTP-MFS-02/event"
    ]
    assert events.index("smoke_alarm") < events.index("heat_alarm")
    hot = [json.loads(m.payload)["T"] for m in msgs if m.topic == "yk/YK8-000231/data"]
    assert max(hot) > 600 and hot[0] < 300

    _fleet, msgs = _run("device_silent")
    wills = [m for m in msgs if m.action == "will"]
    assert {m.device for m in wills} == {"GY-FL-0021", "LTP-MFS-03", "FP-R04", "GY-FL-0022"}
    assert all(m.payload == b"offline" and m.retain for m in wills)
    silent_after = START.replace(hour=20, minute=1) + timedelta(seconds=1)
    assert not [
        m
        for m in msgs
        if m.device in {"GY-FL-0020", "YK8-000247"} and m.at > silent_after.astimezone(m.at.tzinfo)
    ]


def test_patrol_scenario() -> None:
    _fleet, msgs = _run("patrol_faults")
    site = load_sites(ROOT / "sites").sites["fuping"]
    tag = {c.id: c.tag_uid for c in site.checkpoints}
    r01 = [json.loads(m.payload)["tag_uid"] for m in msgs if m.topic == "patrol/FP-R01/scan"]
    assert tag["FP-CP009"] not in r01 and len(r01) == 11
    assert not [m for m in msgs if m.device == "FP-R09" and m.action is None]
    late = [m for m in msgs if m.fault == "late_upload"]
    assert late and all(m.at - m.device_time > timedelta(hours=11) for m in late)
    assert any(b"04DEADBEEF0001" in m.payload for m in msgs)
    assert any(m.topic == "patrol/FP-R07/hazard" and m.fault == "hazard_report" for m in msgs)
    low = [json.loads(m.payload)["battery_pct"] for m in msgs if m.topic == "patrol/FP-R08/scan"]
    assert low and max(low) < 15


def test_garbage_scenario() -> None:
    _fleet, msgs = _run("field_garbage")
    junk = [m for m in msgs if m.fault == "garbage"]
    assert any(len(m.payload) == 2 * 1024 * 1024 for m in junk)
    assert any(m.payload == b"" for m in junk)
    assert any(m.payload.startswith(b"\x00\xff") for m in junk)
    dups = [m for m in msgs if m.fault == "duplicate"]
    assert len(dups) >= 7
    for dup in dups:
        assert any(
            o.payload == dup.payload and o.fault is None for o in msgs if o.device == dup.device
        )


def test_broken_scenario_gives_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text(
        "description: x\ntimeline:\n  - {at: 5, device: GY-FL-0001, fault: explode}\nsurprise: 1\n",
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    text = str(err.value)
    assert "broken.yaml" in text and "explode" in text and "surprise" in text
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "description: x\ntimeline:\n  - {at: 5, device: GY-FL-0001, "
        "fault: knock_over, params: {angle: 3}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError, match=r"wrong\.yaml.*angle"):
        load_scenario(wrong)
    smoke_on_light = tmp_path / "mismatch.yaml"
    smoke_on_light.write_text(
        "description: x\ntimeline:\n  - {at: 5, device: GY-FL-0001, fault: smoke}\n",
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError, match=r"mismatch\.yaml.*XS-FL200.*smoke"):
        Fleet(ROOT / "sites", seed=1, start=START, scenario=load_scenario(smoke_on_light))


# -- clock and urls ------------------------------------------------------------------------------
def test_sim_clock_modes() -> None:
    wall = [100.0]
    clock = SimClock(START, speed=60, wall=lambda: wall[0])
    wall[0] += 2
    assert clock.now() == START.astimezone(clock.start.tzinfo) + timedelta(minutes=2)
    assert clock.wall_delay_until(clock.now() + timedelta(minutes=1)) == pytest.approx(1.0)
    fast = SimClock(START, speed=0)
    assert fast.as_fast_as_possible and fast.now() == START
    assert fast.advance(3600) == START + timedelta(hours=1)


def test_mqtt_url() -> None:
    url = parse_mqtt_url("mqtt://user:p%40ss@127.0.0.1:1884")
    assert (url.host, url.port, url.username, url.password) == ("127.0.0.1", 1884, "user", "p@ss")
    assert parse_mqtt_url("mqtt://localhost").port == 1883
    with pytest.raises(ValueError):
        parse_mqtt_url("http://x:1")


def test_scenarios_command_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "demo_incidents" in out and "patrol_faults" in out


# -- against a real broker -----------------------------------------------------------------------
def test_hub_sim_run_publishes_all_five_models(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    received: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-sim-sub")
    sub.on_connect = lambda c, *_: c.subscribe("#", qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda _c, _u, msg: received.append(msg)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        scenario = tmp_path / "drop.yaml"
        scenario.write_text(
            "description: drop one light\nduration_s: 360\ntimeline:\n"
            "  - {at: 30, device: GY-FL-0001, fault: last_will}\n",
            encoding="utf-8",
        )
        rc = cli.main(
            [
                "run",
                "--sites",
                str(ROOT / "sites"),
                "--mqtt-url",
                mosquitto.url,
                "--speed",
                "60",
                "--duration",
                "6",
                "--seed",
                "3",
                "--start",
                "2026-11-28T07:55:00",
                "--scenario",
                str(scenario),
            ]
        )
        assert rc == 0
        time.sleep(0.5)
    finally:
        sub.loop_stop()
        sub.disconnect()
    prefixes = Counter(m.topic.split("/")[0] for m in received)
    assert {"roadsafety", "hnbsd", "patrol", "firestation", "yk"} <= set(prefixes), prefixes
    assert any(m.topic == "patrol/FP-R06/scan" for m in received)  # 07:30 round in progress
    will = [m for m in received if m.topic == "roadsafety/flashlight/GY-FL-0001/status"]
    assert [m.payload for m in will] == [b"online", b"offline"]  # offline is the broker's LWT


def test_load_mode_paces_to_the_rate(mosquitto) -> None:  # type: ignore[no-untyped-def]
    from simulators.load import run_load

    result = run_load(
        devices=50, rate=400, duration=1.5, mqtt_url=mosquitto.url, processes=2, qos=1
    )
    assert result.acked == result.sent
    assert 0.8 * 600 <= result.sent <= 1.05 * 600


def test_demo_hazards_carry_grades_and_their_photos_keep_gps() -> None:
    """The demo's major hazard says so; the phone app's photo is stable and geotagged."""
    from hub.evidence.inspect import inspect
    from simulators.photos import hazard_photo

    _fleet, msgs = _run("demo_incidents", 1200)
    hazards = [json.loads(m.payload) for m in msgs if m.topic.endswith("/hazard")
               and m.fault == "hazard_report"]
    assert {(h["reader"], h.get("grade")) for h in hazards} >= {("FP-R05", "major"),
                                                                ("FP-R02", None)}
    ref = hazards[0]["photo_ref"]
    first = hazard_photo(ref, "illegal_gas_storage", 29.0512, 111.6935,
                         datetime(2026, 11, 20, 8, 4, 40))
    assert first == hazard_photo(ref, "illegal_gas_storage", 29.0512, 111.6935,
                                 datetime(2026, 11, 20, 8, 4, 40))
    seen = inspect(first)
    assert (seen.gps_lat, seen.gps_lon, seen.taken_at) == (29.0512, 111.6935,
                                                           "2026-11-20T08:04:40")
    assert b"SimPhone" in first and b"SimPhone" not in seen.served
    graded = NfcHazard("FP-R03", "FP-P017", "04A1B2C3D4E5F6",
                       datetime(2026, 11, 28, 8, 4, 40, tzinfo=CST), "wiring_exposed", "x",
                       "img/a.jpg", "major")
    assert json.loads(graded.encode())["grade"] == "major"
