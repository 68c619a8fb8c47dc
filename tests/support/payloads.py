"""Valid payloads of every model from random values, with the points they must become.

Written independently of the simulators so that each checks the other.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

SHANGHAI = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class Expected:
    """One point a message must produce."""

    measurement: str
    device_id: str
    time_ns: int
    fields: dict[str, object]
    tags: dict[str, str]


@dataclass(frozen=True)
class Case:
    """A message to publish and what it must become."""

    topic: str
    payload: bytes
    qos: int
    points: list[Expected]


def _xs(rng: random.Random, device: str, t: datetime) -> Case:
    ms = int(t.timestamp() * 1000)
    battery, solar = rng.randint(10500, 14200), rng.randint(0, 21000)
    body: dict[str, object] = {
        "ts": ms,
        "mode": rng.choice(["flash", "steady", "off", "auto"]),
        "lamp": rng.choice(["ok", "degraded", "fail"]),
        "battery_mv": battery,
        "solar_mv": solar,
        "tilt_deg": round(rng.uniform(0, 90), 1),
        "flash_hz": rng.choice([0.5, 1.0, 1.5, 2.0]),
    }
    fields: dict[str, object] = {
        "mode": body["mode"],
        "lamp": body["lamp"],
        "battery_v": battery / 1000,
        "solar_v": solar / 1000,
        "tilt_deg": body["tilt_deg"],
        "flash_hz": body["flash_hz"],
    }
    if rng.random() < 0.7:
        body["charging"] = fields["charging"] = rng.random() < 0.5
    if rng.random() < 0.7:
        body["veh_count"] = fields["vehicle_count"] = rng.randint(0, 400)
    if rng.random() < 0.7:
        body["temp_c"] = fields["temperature_c"] = round(rng.uniform(-5, 40), 1)
    topic = f"roadsafety/flashlight/{device}/telemetry"
    return Case(
        topic,
        json.dumps(body).encode(),
        1,
        [Expected("flashing_light", device, ms * 1_000_000, fields, {})],
    )


def _bsd(rng: random.Random, device: str, t: datetime) -> Case:
    t = t.replace(microsecond=0)
    local = t.astimezone(SHANGHAI).strftime("%Y%m%dT%H%M%S")
    mode = rng.choice("FSO")
    lamp = rng.choice("10")
    bat, sol, tilt, hz, veh = (
        rng.randint(1000, 1450),
        rng.randint(0, 2100),
        rng.randint(0, 900),
        rng.randint(0, 30),
        rng.randint(0, 300),
    )
    payload = f"BSD3,{device},{local},{mode},{lamp},{bat},{sol},{tilt:03d},{hz},{veh}"
    fields = {
        "mode": {"F": "flash", "S": "steady", "O": "off"}[mode],
        "lamp": "ok" if lamp == "1" else "fail",
        "battery_v": bat / 100,
        "solar_v": sol / 100,
        "tilt_deg": tilt / 10,
        "flash_hz": hz / 10,
        "vehicle_count": veh,
    }
    return Case(
        f"hnbsd/{device}/up",
        payload.encode(),
        rng.choice([0, 1]),
        [Expected("flashing_light", device, int(t.timestamp()) * 10**9, fields, {})],
    )


def _nfc(rng: random.Random, device: str, t: datetime) -> Case:
    t = t.replace(microsecond=0)
    tag = "04" + "".join(rng.choice("0123456789ABCDEF") for _ in range(12))
    body = {
        "reader": device,
        "tag_uid": tag,
        "patroller": f"FP-P{rng.randint(1, 52):03d}",
        "ts": t.astimezone(SHANGHAI).isoformat(),
        "lat": round(rng.uniform(29.0, 29.1), 6),
        "lon": round(rng.uniform(111.6, 111.8), 6),
        "battery_pct": rng.randint(5, 100),
    }
    fields = {
        "tag_uid": tag,
        "lat": body["lat"],
        "lon": body["lon"],
        "battery_pct": float(body["battery_pct"]),
    }
    return Case(
        f"patrol/{device}/scan",
        json.dumps(body).encode(),
        1,
        [
            Expected(
                "patrol_scan",
                device,
                int(t.timestamp()) * 10**9,
                fields,
                {"patroller_id": str(body["patroller"])},
            )
        ],
    )


def _mfs(rng: random.Random, device: str, t: datetime) -> Case:
    ts = int(t.timestamp())
    slots = [
        {"slot": i, "present": rng.random() < 0.9, "pressure_mpa": round(rng.uniform(0.6, 1.5), 2)}
        for i in range(1, rng.randint(1, 4) + 1)
    ]
    body = {
        "station": device,
        "ts": ts,
        "env": {
            "smoke": round(rng.uniform(0, 5), 2),
            "temp_c": round(rng.uniform(0, 70), 1),
            "humidity_pct": rng.randint(20, 95),
        },
        "hydrant": {"pressure_mpa": round(rng.uniform(0, 0.6), 2)},
        "extinguishers": slots,
        "door_open": rng.random() < 0.2,
        "mains_power": rng.random() < 0.9,
        "battery_pct": rng.randint(0, 100),
    }
    env = body["env"]
    assert isinstance(env, dict)
    fields = {
        "smoke_pct_m": env["smoke"],
        "temperature_c": env["temp_c"],
        "humidity_pct": float(env["humidity_pct"]),
        "hydrant_pressure_mpa": body["hydrant"]["pressure_mpa"],  # type: ignore[index]
        "door_open": body["door_open"],
        "mains_power": body["mains_power"],
        "battery_pct": float(body["battery_pct"]),
    }  # type: ignore[arg-type]
    points = [Expected("fire_station", device, ts * 10**9, fields, {})]
    points += [
        Expected(
            "extinguisher",
            device,
            ts * 10**9,
            {"present": s["present"], "pressure_mpa": s["pressure_mpa"]},
            {"slot": str(s["slot"])},
        )
        for s in slots
    ]
    return Case(f"firestation/{device}/telemetry", json.dumps(body).encode(), 1, points)


def _yk(rng: random.Random, device: str, t: datetime) -> Case:
    t = t.replace(microsecond=0)
    body: dict[str, object] = {
        "sn": device,
        "time": t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
        "T": rng.randint(-50, 700),
        "H": rng.randint(10, 99),
        "SMK": rng.randint(0, 600),
        "WP": rng.randint(0, 600),
    }
    slots = {}
    for i in range(1, rng.randint(1, 4) + 1):
        slots[i] = 0 if rng.random() < 0.15 else rng.randint(500, 1500)
        body[f"EXT{i}"] = slots[i]
    body.update({"DOOR": rng.randint(0, 1), "AC": rng.randint(0, 1), "BAT": rng.randint(0, 100)})
    ns = int(t.timestamp()) * 10**9
    fields = {
        "temperature_c": body["T"] / 10,
        "humidity_pct": float(body["H"]),  # type: ignore[operator,arg-type]
        "smoke_pct_m": body["SMK"] / 100,
        "hydrant_pressure_mpa": body["WP"] / 1000,  # type: ignore[operator]
        "door_open": body["DOOR"] == 1,
        "mains_power": body["AC"] == 1,
        "battery_pct": float(body["BAT"]),
    }  # type: ignore[arg-type]
    points = [Expected("fire_station", device, ns, fields, {})]
    for slot, kpa in slots.items():
        ext: dict[str, object] = {"present": kpa != 0}
        if kpa:
            ext["pressure_mpa"] = kpa / 1000
        points.append(Expected("extinguisher", device, ns, ext, {"slot": str(slot)}))
    return Case(f"yk/{device}/data", json.dumps(body).encode(), 0, points)


MAKERS = {"XS-FL200": _xs, "HN-BSD3": _bsd, "PT-NFC1": _nfc, "MFS-GW1": _mfs, "YK-FS8": _yk}


def device_ids(model: str, count: int) -> list[str]:
    """Device ids of a model in the style of its vendor."""
    if model == "HN-BSD3":
        return [f"86999900000{i:04d}" for i in range(count)]
    prefix = {"XS-FL200": "T-FL-", "PT-NFC1": "T-R", "MFS-GW1": "T-MFS-", "YK-FS8": "YK8-T"}[model]
    return [f"{prefix}{i:04d}" for i in range(count)]


def generate(
    model: str, count: int, seed: int = 1, devices: int = 10, start: datetime | None = None
) -> list[Case]:
    """``count`` valid messages of a model, each with a distinct (device, second)."""
    rng = random.Random(seed)
    ids = device_ids(model, devices)
    base = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    return [
        MAKERS[model](rng, ids[i % devices], base + timedelta(seconds=i // devices))
        for i in range(count)
    ]
