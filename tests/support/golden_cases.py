"""Writes the golden case folders (inputs only); tests/test_golden.py fills or checks outputs."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "golden"
RECEIVED = "2026-11-28T00:05:00+00:00"  # 08:05 in Shanghai, a few minutes after the examples

XS = {
    "ts": 1764316800123,
    "mode": "flash",
    "lamp": "ok",
    "battery_mv": 12450,
    "solar_mv": 18020,
    "charging": True,
    "tilt_deg": 1.8,
    "flash_hz": 1.5,
    "veh_count": 37,
    "temp_c": 21.5,
    "fw": "2.3.1",
}
SCAN = {
    "reader": "FP-R03",
    "tag_uid": "04A1B2C3D4E5F6",
    "patroller": "FP-P017",
    "ts": "2026-11-28T08:03:12+08:00",
    "lat": 29.0312,
    "lon": 111.6935,
    "battery_pct": 81,
}
HAZARD = {
    "reader": "FP-R03",
    "patroller": "FP-P017",
    "tag_uid": "04A1B2C3D4E5F6",
    "ts": "2026-11-28T08:04:40+08:00",
    "category": "fire_exit_blocked",
    "note": "stairwell B blocked by goods",
    "photo_ref": "img/2026/11/28/0804-40.jpg",
}
MFS = {
    "station": "LTP-MFS-02",
    "ts": 1764316800,
    "env": {"smoke": 0.02, "temp_c": 18.6, "humidity_pct": 64},
    "hydrant": {"pressure_mpa": 0.32},
    "extinguishers": [
        {"slot": 1, "present": True, "pressure_mpa": 1.18},
        {"slot": 2, "present": True, "pressure_mpa": 0.72},
    ],
    "door_open": False,
    "mains_power": True,
    "battery_pct": 97,
}
YK = {
    "sn": "YK8-000231",
    "time": "2026-11-28 08:00:00",
    "T": 186,
    "H": 64,
    "SMK": 2,
    "WP": 320,
    "EXT1": 1180,
    "EXT2": 0,
    "DOOR": 0,
    "AC": 1,
    "BAT": 97,
}


def _j(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def _without(obj: dict, *keys: str) -> dict:
    return {k: v for k, v in obj.items() if k not in keys}


CASES: dict[str, dict[str, tuple[str, bytes]]] = {
    "xs-fl200": {
        "datasheet": ("roadsafety/flashlight/GY-FL-0001/telemetry", _j(XS)),
        "optional_absent": (
            "roadsafety/flashlight/GY-FL-0001/telemetry",
            _j(_without(XS, "charging", "temp_c", "veh_count", "fw")),
        ),
        "clock_1970": ("roadsafety/flashlight/GY-FL-0001/telemetry", _j({**XS, "ts": 12345})),
        "clock_ahead": (
            "roadsafety/flashlight/GY-FL-0001/telemetry",
            _j({**XS, "ts": 1795824000000 + 3600_000}),
        ),
        "unregistered_device": ("roadsafety/flashlight/GY-FL-9999/telemetry", _j(XS)),
        "wrong_type": (
            "roadsafety/flashlight/GY-FL-0001/telemetry",
            _j({**XS, "battery_mv": "12450mV"}),
        ),
        "cut_short": ("roadsafety/flashlight/GY-FL-0001/telemetry", _j(XS)[:60]),
        "unknown_mode": ("roadsafety/flashlight/GY-FL-0001/telemetry", _j({**XS, "mode": "blink"})),
        "binary_garbage": ("roadsafety/flashlight/GY-FL-0001/telemetry", bytes(range(256)) * 4),
        "status_online": ("roadsafety/flashlight/GY-FL-0001/status", b"online"),
        "status_lwt": ("roadsafety/flashlight/GY-FL-0001/status", b"offline"),
        "status_empty_retained": ("roadsafety/flashlight/GY-FL-0001/status", b""),
    },
    "hn-bsd3": {
        "datasheet": (
            "hnbsd/861234567890123/up",
            b"BSD3,861234567890123,20261128T080000,F,1,1245,1802,018,15,37",
        ),
        "lamp_fail_steady": (
            "hnbsd/861234567890123/up",
            b"BSD3,861234567890123,20261128T080500,S,0,1079,0,802,0,0",
        ),
        "cut_short": ("hnbsd/861234567890123/up", b"BSD3,861234567890123,20261128T0800"),
        "imei_mismatch": (
            "hnbsd/861234567890123/up",
            b"BSD3,869999999999999,20261128T080000,F,1,1245,1802,018,15,37",
        ),
        "bad_imei_topic": ("hnbsd/12345/up", b"BSD3,12345,20261128T080000,F,1,1245,1802,018,15,37"),
        "wrong_model": (
            "hnbsd/861234567890123/up",
            b"BSD4,861234567890123,20261128T080000,F,1,1245,1802,018,15,37",
        ),
        "garbled_time": (
            "hnbsd/861234567890123/up",
            b"BSD3,861234567890123,2026112XT080000,F,1,1245,1802,018,15,37",
        ),
    },
    "pt-nfc1": {
        "scan_datasheet": ("patrol/FP-R03/scan", _j(SCAN)),
        "scan_unknown_tag": ("patrol/FP-R03/scan", _j({**SCAN, "tag_uid": "04FFFFFFFFFFFF"})),
        "scan_late_upload": ("patrol/FP-R03/scan", _j({**SCAN, "ts": "2026-11-27T20:03:12+08:00"})),
        "scan_lowercase_tag": ("patrol/FP-R03/scan", _j({**SCAN, "tag_uid": "04a1b2c3d4e5f6"})),
        "scan_reader_mismatch": ("patrol/FP-R03/scan", _j({**SCAN, "reader": "FP-R04"})),
        "scan_no_patroller": ("patrol/FP-R03/scan", _j(_without(SCAN, "patroller"))),
        "hazard_datasheet": ("patrol/FP-R03/hazard", _j(HAZARD)),
        "status_lwt": ("patrol/FP-R03/status", b"offline"),
    },
    "mfs-gw1": {
        "datasheet": ("firestation/LTP-MFS-02/telemetry", _j(MFS)),
        "event_smoke": (
            "firestation/LTP-MFS-02/event",
            _j({"ts": 1764316805, "event": "smoke_alarm", "zone": "store"}),
        ),
        "event_door_open": (
            "firestation/LTP-MFS-02/event",
            _j({"ts": 1764316805, "event": "door_open", "zone": "store"}),
        ),
        "event_unknown": (
            "firestation/LTP-MFS-02/event",
            _j({"ts": 1764316805, "event": "alien_landing"}),
        ),
        "no_env": ("firestation/LTP-MFS-02/telemetry", _j(_without(MFS, "env"))),
        "extinguishers_not_list": (
            "firestation/LTP-MFS-02/telemetry",
            _j({**MFS, "extinguishers": {"slot": 1}}),
        ),
        "array_payload": ("firestation/LTP-MFS-02/telemetry", b"[1, 2, 3]"),
        "nan_smoke": (
            "firestation/LTP-MFS-02/telemetry",
            json.dumps({**MFS, "env": {"smoke": float("nan")}}).encode(),
        ),
    },
    "yk-fs8": {
        "datasheet": ("yk/YK8-000231/data", _j(YK)),
        "all_slots_full": ("yk/YK8-000231/data", _j({**YK, "EXT2": 1020, "EXT3": 1350})),
        "smoke_and_heat": ("yk/YK8-000231/data", _j({**YK, "T": 612, "SMK": 450})),
        "out_of_range_humidity": ("yk/YK8-000231/data", _j({**YK, "H": 640})),
        "door_as_text": ("yk/YK8-000231/data", _j({**YK, "DOOR": "open"})),
        "sn_mismatch": ("yk/YK8-000232/data", _j(YK)),
    },
}


def write_cases() -> None:
    """Write every case's inputs (topic, received time, payload)."""
    for profile, cases in CASES.items():
        for name, (topic, payload) in cases.items():
            folder = ROOT / profile / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "case.json").write_text(
                json.dumps({"topic": topic, "received": RECEIVED}, indent=1) + "\n"
            )
            (folder / "payload").write_bytes(payload)


if __name__ == "__main__":
    write_cases()
