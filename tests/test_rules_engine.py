"""Rules engine: every default rule, durations, hysteresis, escalation, ordering, restart."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.alarms.service import AlarmService
from hub.db import make_engine
from hub.model import FieldValue, Point, Reading
from hub.rules.engine import RuleEngine
from hub.rules.schema import RuleError
from hub.rules.store import RuleStateStore
from hub.sites import Site, SiteRegistry

S = 1_000_000_000
T0 = int(datetime(2026, 11, 28, 4, 0, tzinfo=ZoneInfo("UTC")).timestamp()) * S  # 12:00 +08

SITE = Site.model_validate(
    {
        "site": "ltp",
        "name": "Test town",
        "communities": [{"id": "c1", "name": "One"}],
        "devices": [
            {
                "id": "L1",
                "model": "XS-FL200",
                "community": "c1",
                "active_hours": {"start": "18:00", "end": "06:00"},
            },
            {"id": "L2", "model": "XS-FL200", "rules": {"battery_low": {"enabled": False}}},
            {
                "id": "L3",
                "model": "XS-FL200",
                "rules": {
                    "knocked_over": {"levels": {"critical": {"when": {"at": 30, "clear_at": 25}}}}
                },
            },
            {"id": "F1", "model": "MFS-GW1"},
            {"id": "R1", "model": "PT-NFC1"},
        ],
    }
)
INTERVALS = {"XS-FL200": 60, "MFS-GW1": 30, "PT-NFC1": 600}


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Hub:
    """An engine and an alarm service on one SQLite file, with a controllable clock."""

    def __init__(
        self, path: Path, clock: Clock, sites: SiteRegistry | None = None, **engine_args: Any
    ) -> None:
        self.db = make_engine(f"sqlite:///{path}")
        self.clock = clock
        self.points: list[Point] = []
        self.service = AlarmService(
            self.db, emit_points=self.points.extend, clock=clock, sites=sites, flush_interval_s=0
        )
        self.engine = RuleEngine(
            self.service,
            sites=sites or SiteRegistry([SITE]),
            report_intervals=INTERVALS,
            state_store=RuleStateStore(self.db),
            clock=clock,
            background_save=False,
            **engine_args,
        )

    def alarms(self, **filters: Any) -> list[dict[str, Any]]:
        return self.service.list(**filters)[0]

    def one(self, rule: str, device_id: str | None = None) -> dict[str, Any]:
        found = [a for a in self.alarms(rule=rule, device_id=device_id)]
        assert len(found) == 1, found
        return found[0]

    def none(self, rule: str) -> None:
        assert self.alarms(rule=rule, state="active") == []

    def feed(
        self,
        device: str,
        model: str,
        kind: str,
        t: int,
        message: str = "telemetry",
        points: tuple[Point, ...] = (),
        online: bool | None = None,
        **values: FieldValue,
    ) -> None:
        self.clock.now = max(self.clock.now, t + S // 10)
        self.engine.on_reading(
            Reading(
                device,
                model,
                kind,
                "ltp",
                message,
                t,
                t + S // 10,
                points,
                dict(values),
                online=online,
            )
        )

    def light(self, t: int, device: str = "L1", **values: FieldValue) -> None:
        self.feed(device, "XS-FL200", "flashing_light", t, **values)

    def station(
        self,
        t: int,
        message: str = "telemetry",
        points: tuple[Point, ...] = (),
        **values: FieldValue,
    ) -> None:
        self.feed("F1", "MFS-GW1", "fire_station", t, message, points, **values)

    def tick(self, t: int) -> None:
        self.clock.now = t
        self.engine.on_tick(t)
        self.service.flush()  # what the hub's pipeline flush hook does after each tick

    def history(self, alarm_id: str) -> list[str]:
        return [h["action"] for h in self.service.get(alarm_id)["history"]]


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    return Hub(tmp_path / "hub.sqlite", Clock())


def ext(slot: int, present: bool, pressure: float | None = None) -> Point:
    fields: tuple[tuple[str, FieldValue], ...] = (("present", present),)
    if pressure is not None:
        fields += (("pressure_mpa", pressure),)
    return Point("extinguisher", (("device_id", "F1"), ("slot", str(slot))), fields, 0)


# -- flashing lights -------------------------------------------------------------------------


def test_battery_low_duration_escalation_hysteresis(hub: Hub) -> None:
    for i in range(10):
        hub.light(T0 + i * 60 * S, battery_v=11.3)
    hub.none("battery_low")  # 9 minutes below 11.5 V: not yet
    hub.light(T0 + 600 * S, battery_v=11.3)
    alarm = hub.one("battery_low")
    assert (alarm["severity"], alarm["state"], alarm["value"]) == ("warning", "active_unack", 11.3)
    assert alarm["message"] == "Battery low: 11.30 V"
    assert alarm["message_zh"] == "蓄电池电压低：11.30 V"
    hub.light(T0 + 660 * S, battery_v=10.5)
    escalated = hub.one("battery_low")
    assert escalated["id"] == alarm["id"] and escalated["severity"] == "major"
    hub.light(T0 + 720 * S, battery_v=11.2)  # above 11.0: back to warning, same alarm
    assert hub.one("battery_low")["severity"] == "warning"
    hub.light(T0 + 780 * S, battery_v=11.7)  # above 11.5 but below the 11.8 clear level
    assert hub.one("battery_low")["state"] == "active_unack"
    hub.light(T0 + 840 * S, battery_v=11.9)
    cleared = hub.one("battery_low")
    assert cleared["state"] == "cleared_unack" and cleared["id"] == alarm["id"]
    assert cleared["count"] == 4  # raise, escalate, de-escalate, one repeat
    assert hub.history(alarm["id"]) == ["raise", "escalate", "deescalate", "clear"]


def test_battery_major_is_immediate_and_interrupted_duration_restarts(hub: Hub) -> None:
    hub.light(T0, battery_v=11.3)
    hub.light(T0 + 300 * S, battery_v=12.0)  # recovered: the 10 minutes start again
    hub.light(T0 + 360 * S, battery_v=11.3)
    hub.light(T0 + 900 * S, battery_v=11.3)
    hub.none("battery_low")
    hub.light(T0 + 960 * S, battery_v=11.3)
    assert hub.one("battery_low")["severity"] == "warning"
    hub.light(T0 + 1000 * S, device="L4", battery_v=10.7)
    assert hub.one("battery_low", "L4")["severity"] == "major"


def test_lamp_fault_levels(hub: Hub) -> None:
    hub.light(T0, lamp="degraded")
    assert (hub.one("lamp_fault")["severity"], hub.one("lamp_fault")["message"]) == (
        "minor",
        "Lamp degraded",
    )
    hub.light(T0 + 60 * S, lamp="fail")
    assert hub.one("lamp_fault")["severity"] == "major"
    assert hub.one("lamp_fault")["message_zh"] == "灯具失效，不再闪烁"
    hub.light(T0 + 120 * S, lamp="ok")
    assert hub.one("lamp_fault")["state"] == "cleared_unack"


def test_knocked_over_and_device_override(hub: Hub) -> None:
    hub.light(T0, tilt_deg=16.0)
    hub.light(T0, device="L3", tilt_deg=16.0)
    assert hub.one("knocked_over")["severity"] == "critical"
    assert hub.alarms(device_id="L3") == []  # L3's threshold is 30 degrees
    hub.light(T0 + 60 * S, tilt_deg=13.0)  # hysteresis: clears at 12
    assert hub.one("knocked_over")["state"] == "active_unack"
    hub.light(T0 + 120 * S, tilt_deg=2.0)
    assert hub.one("knocked_over")["state"] == "cleared_unack"


def test_disabled_rule_per_device(hub: Hub) -> None:
    hub.light(T0, device="L2", battery_v=10.0)
    assert hub.alarms(device_id="L2") == []


def test_mode_off_only_inside_active_hours_crossing_midnight(hub: Hub) -> None:
    hub.light(T0, mode="off")  # 12:00 local, window 18:00-06:00
    hub.none("mode_off_active_hours")
    hub.tick(T0 + 6 * 3600 * S - S)
    hub.none("mode_off_active_hours")
    hub.tick(T0 + 6 * 3600 * S + 2 * S)  # 18:00:02 local
    assert hub.one("mode_off_active_hours")["severity"] == "major"
    hub.tick(T0 + 14 * 3600 * S)  # 02:00 next day: still inside
    assert hub.one("mode_off_active_hours")["state"] == "active_unack"
    hub.tick(T0 + 18 * 3600 * S + 2 * S)  # 06:00:02: outside again
    assert hub.one("mode_off_active_hours")["state"] == "cleared_unack"


def test_mode_flash_inside_active_hours_is_fine(hub: Hub) -> None:
    hub.light(T0 + 7 * 3600 * S, mode="flash")
    hub.none("mode_off_active_hours")


def test_offline_by_last_will_and_by_staleness(hub: Hub) -> None:
    hub.light(T0, battery_v=12.5)
    hub.feed("L1", "XS-FL200", "flashing_light", T0 + 10 * S, "status", online=False)
    assert hub.one("offline")["severity"] == "major"
    hub.light(T0 + 20 * S, battery_v=12.5)  # data again means online
    assert hub.one("offline")["state"] == "cleared_unack"
    hub.tick(T0 + 20 * S + 179 * S)
    assert hub.one("offline")["state"] == "cleared_unack"
    hub.tick(T0 + 20 * S + 182 * S)  # 3 x 60 s without data
    assert hub.one("offline")["state"] == "active_unack"
    hub.tick(T0 + 20 * S + 400 * S)
    assert hub.one("offline")["state"] == "active_unack"
    hub.light(T0 + 500 * S, battery_v=12.5)
    assert hub.one("offline")["state"] == "cleared_unack"


def test_implied_online_status_leaves_the_evaluation_to_its_message(hub: Hub) -> None:
    hub.light(T0, battery_v=12.5)
    hub.feed("L1", "XS-FL200", "flashing_light", T0 + 10 * S, "status", online=False)
    assert hub.one("offline")["state"] == "active_unack"
    t = T0 + 20 * S
    implied = Reading("L1", "XS-FL200", "flashing_light", "ltp", "status", t, t + S // 10, (),
                      {"online": True}, online=True, status_reason="message", implied=True)
    hub.engine.on_reading(implied)
    assert hub.one("offline")["state"] == "active_unack"  # not evaluated on its own
    assert hub.engine.devices["L1"].last_t == T0 + 10 * S
    hub.light(t, battery_v=12.5)  # the message that implied it: evaluated once, online
    assert hub.one("offline")["state"] == "cleared_unack"
    assert hub.history(hub.one("offline")["id"]) == ["raise", "clear"]


def test_quiet_devices_share_their_program_slots(hub: Hub) -> None:
    # 100,000 devices: a device whose conditions hold nothing keeps no slot list of its own
    hub.light(T0, battery_v=12.5, tilt_deg=1.0, lamp="ok", mode="flash")
    hub.station(T0, smoke_level=0.0, temp_c=20.0)
    for device_id in ("L1", "F1"):
        ds = hub.engine.devices[device_id]
        assert ds.slots is ds.program.no_slots
    hub.light(T0 + S, battery_v=10.0)  # a latch is written: this device gets its own slots
    assert isinstance(hub.engine.devices["L1"].slots, list)


# -- fire stations ---------------------------------------------------------------------------


def test_smoke_by_level_and_by_event(hub: Hub) -> None:
    hub.station(T0, smoke_pct_m=0.02)
    hub.none("smoke")
    hub.station(T0 + 30 * S, smoke_pct_m=4.5)
    alarm = hub.one("smoke")
    assert (alarm["severity"], alarm["value"]) == ("critical", 4.5)
    hub.station(T0 + 60 * S, smoke_pct_m=2.0)  # hysteresis: clears below 1.0
    assert hub.one("smoke")["state"] == "active_unack"
    hub.station(T0 + 90 * S, smoke_pct_m=0.5)
    assert hub.one("smoke")["state"] == "cleared_unack"
    hub.station(T0 + 100 * S, "event", event="smoke_alarm", zone="store")
    again = hub.one("smoke")
    assert again["state"] == "active_unack" and again["value"] == "smoke_alarm"
    hub.tick(T0 + 100 * S + 301 * S)  # the event holds 5 minutes
    assert hub.one("smoke")["state"] == "cleared_unack"


def test_fire_heat_by_level_rate_and_event(hub: Hub) -> None:
    hub.station(T0, temperature_c=20.0)
    hub.station(T0 + 30 * S, temperature_c=22.0)
    hub.none("fire_heat")
    hub.station(T0 + 60 * S, temperature_c=30.0)  # 10 degC/min over the last minute
    alarm = hub.one("fire_heat")
    assert alarm["severity"] == "critical" and alarm["value"] == pytest.approx(10.0)
    assert "30.0" in alarm["message"]
    for i in range(3, 10):
        hub.station(T0 + i * 30 * S, temperature_c=30.0)
    assert hub.one("fire_heat")["state"] == "cleared_unack"
    hub.station(T0 + 400 * S, temperature_c=58.0)
    hub.station(T0 + 700 * S, temperature_c=58.0)
    assert hub.one("fire_heat")["state"] == "active_unack"
    hub.station(T0 + 730 * S, temperature_c=52.0)  # clears at 50
    assert hub.one("fire_heat")["state"] == "active_unack"
    hub.station(T0 + 760 * S, temperature_c=40.0)
    assert hub.one("fire_heat")["state"] == "cleared_unack"
    hub.station(T0 + 800 * S, "event", event="heat_alarm", zone="store")
    assert hub.one("fire_heat")["state"] == "active_unack"


def test_hydrant_pressure_levels(hub: Hub) -> None:
    hub.station(T0, hydrant_pressure_mpa=0.13)
    assert hub.one("hydrant_pressure_low")["severity"] == "warning"
    hub.station(T0 + 30 * S, hydrant_pressure_mpa=0.08)
    assert hub.one("hydrant_pressure_low")["severity"] == "major"
    assert hub.one("hydrant_pressure_low")["message"] == "Hydrant pressure low: 0.08 MPa"
    hub.station(T0 + 60 * S, hydrant_pressure_mpa=0.30)
    assert hub.one("hydrant_pressure_low")["state"] == "cleared_unack"


def test_extinguishers_one_alarm_listing_slots(hub: Hub) -> None:
    points = (ext(1, True, 1.2), ext(2, False), ext(3, False), ext(4, True, 0.7))
    hub.station(T0, points=points, smoke_pct_m=0.02)
    missing = hub.one("extinguisher_missing")
    assert (missing["severity"], missing["value"]) == ("major", "2,3")
    assert missing["message"] == "Extinguisher missing from slot(s) 2,3"
    pressure = hub.one("extinguisher_pressure")
    assert (pressure["severity"], pressure["value"]) == ("minor", "4")
    hub.station(
        T0 + 30 * S, points=(ext(1, True, 1.2), ext(2, True, 1.1), ext(3, False), ext(4, True, 1.2))
    )
    assert hub.one("extinguisher_missing")["value"] == "3"
    assert hub.one("extinguisher_pressure")["state"] == "cleared_unack"
    hub.station(T0 + 60 * S, smoke_pct_m=0.02)  # no extinguisher points: unchanged
    assert hub.one("extinguisher_missing")["state"] == "active_unack"


def test_door_open_long_waits_and_respects_drills(hub: Hub) -> None:
    hub.station(T0, "event", event="door_open", door_open=True)
    hub.tick(T0 + 599 * S)
    hub.none("door_open_long")
    hub.tick(T0 + 601 * S)
    assert hub.one("door_open_long")["severity"] == "warning"
    hub.station(T0 + 700 * S, "event", event="door_closed", door_open=False)
    assert hub.one("door_open_long")["state"] == "cleared_unack"
    hub.station(T0 + 800 * S, "event", event="drill_start", drill=True)
    hub.station(T0 + 810 * S, "event", event="door_open", door_open=True)
    hub.tick(T0 + 2000 * S)
    assert hub.one("door_open_long")["state"] == "cleared_unack"
    hub.station(T0 + 2100 * S, "event", event="drill_end", drill=False)
    hub.tick(T0 + 2100 * S + 601 * S)
    assert hub.one("door_open_long")["state"] == "active_unack"


def test_mains_and_battery(hub: Hub) -> None:
    hub.station(T0, "event", event="power_lost", mains_power=False)
    assert hub.one("mains_lost")["severity"] == "warning"
    hub.station(T0 + 30 * S, battery_pct=18)
    assert hub.one("battery_low", "F1")["message"] == "Backup battery low: 18 %"
    hub.station(T0 + 60 * S, "event", event="power_restored", mains_power=True)
    assert hub.one("mains_lost")["state"] == "cleared_unack"


# -- patrol readers --------------------------------------------------------------------------


def test_patrol_reader_rules(hub: Hub) -> None:
    hub.feed("R1", "PT-NFC1", "patrol_reader", T0, "scan", battery_pct=12)
    assert hub.one("battery_low", "R1")["severity"] == "warning"
    hub.tick(T0 + 3 * 3600 * S)  # silence is normal for readers: no staleness rule
    assert hub.alarms(rule="offline") == []
    hub.feed("R1", "PT-NFC1", "patrol_reader", T0 + 4 * 3600 * S, "status", online=False)
    assert hub.one("offline", "R1")["severity"] == "warning"
    hub.feed("R1", "PT-NFC1", "patrol_reader", T0 + 5 * 3600 * S, "status", online=True)
    assert hub.one("offline", "R1")["state"] == "cleared_unack"


# -- ordering ----------------------------------------------------------------------------------


def test_old_and_duplicate_readings_never_flap(hub: Hub) -> None:
    hub.light(T0 + 120 * S, tilt_deg=40.0)
    alarm = hub.one("knocked_over")
    hub.light(T0 + 60 * S, tilt_deg=1.0)  # older, healthy: must not clear
    hub.light(T0 + 120 * S, tilt_deg=40.0)  # QoS 1 redelivery: no repeat
    hub.light(T0 + 90 * S, tilt_deg=1.0)
    hub.light(T0 + 180 * S, tilt_deg=41.0)
    after = hub.one("knocked_over")
    assert after["state"] == "active_unack"
    assert after["count"] == 2
    assert hub.history(alarm["id"]) == ["raise"]


def test_same_timestamp_different_messages_both_count(hub: Hub) -> None:
    hub.station(T0, smoke_pct_m=0.02)
    hub.station(T0, "event", event="smoke_alarm", zone="store")
    assert hub.one("smoke")["state"] == "active_unack"


def test_redelivered_readings_at_one_timestamp_are_ignored_however_many(hub: Hub) -> None:
    hub.light(T0, tilt_deg=40.0)
    for tilt in (41.0, 42.0, 43.0):  # distinct readings at the same time: each one counts
        hub.light(T0, tilt_deg=tilt)
    assert hub.one("knocked_over")["count"] == 4
    for tilt in (40.0, 43.0, 41.0, 42.0):  # QoS 1 redeliveries of all four: none counts
        hub.light(T0, tilt_deg=tilt)
    assert hub.one("knocked_over")["count"] == 4
    hub.light(T0, tilt_deg=44.0)
    assert hub.one("knocked_over")["count"] == 5


def test_late_reading_in_breach_does_not_reopen(hub: Hub) -> None:
    hub.light(T0, tilt_deg=40.0)
    hub.light(T0 + 60 * S, tilt_deg=1.0)
    hub.light(T0 + 30 * S, tilt_deg=40.0)  # late: the light was already upright again
    assert hub.one("knocked_over")["state"] == "cleared_unack"


# -- overrides ---------------------------------------------------------------------------------


def test_site_override_changes_threshold_and_rejects_unknown_rules(tmp_path: Path) -> None:
    site = SITE.model_copy(
        update={
            "rules": {
                "flashing_light": {"knocked_over": {"levels": {"critical": {"when": {"at": 45}}}}},
                "battery_low": {"enabled": False},
            }
        }
    )
    hub = Hub(tmp_path / "a.sqlite", Clock(), SiteRegistry([site]))
    hub.light(T0, tilt_deg=40.0, battery_v=9.0)
    hub.feed("F1", "MFS-GW1", "fire_station", T0, battery_pct=5)
    assert hub.alarms() == []
    bad = SITE.model_copy(update={"rules": {"batery_low": {"enabled": False}}})
    with pytest.raises(RuleError, match="batery_low"):
        Hub(tmp_path / "b.sqlite", Clock(), SiteRegistry([bad]))
    wrong = SITE.model_copy(
        update={
            "rules": {
                "knocked_over": {
                    "levels": {
                        "critical": {"when": {"op": "<", "at": 30, "clear_at": 40, "typo": 1}}
                    }
                }
            }
        }
    )
    with pytest.raises(RuleError, match=r"knocked_over.*typo"):
        Hub(tmp_path / "c.sqlite", Clock(), SiteRegistry([wrong]))


def test_count_condition_in_a_custom_rule(tmp_path: Path) -> None:
    site = SITE.model_copy(
        update={
            "rules": {
                "fire_station": {
                    "door_flapping": {
                        "message": {
                            "en": "Door opened {value} times",
                            "zh": "门频繁开关 {value} 次",
                        },
                        "levels": {
                            "info": {
                                "when": {
                                    "type": "count",
                                    "events": ["door_open"],
                                    "at_least": 3,
                                    "window_s": 600,
                                }
                            }
                        },
                    }
                }
            }
        }
    )
    hub = Hub(tmp_path / "a.sqlite", Clock(), SiteRegistry([site]))
    for i in range(3):
        hub.station(T0 + i * 100 * S, "event", event="door_open", door_open=True)
        hub.station(T0 + i * 100 * S + 10 * S, "event", event="door_closed", door_open=False)
    alarm = hub.one("door_flapping")
    assert alarm["message"] == "Door opened 3 times"
    hub.tick(T0 + 900 * S)
    assert hub.one("door_flapping")["state"] == "cleared_unack"


# -- restart -----------------------------------------------------------------------------------


def test_restart_keeps_open_alarms_and_half_elapsed_durations(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "hub.sqlite"
    first = Hub(path, clock)
    first.light(T0, tilt_deg=40.0, battery_v=11.3)
    first.light(T0 + 300 * S, tilt_deg=40.0, battery_v=11.3)
    first.station(T0 + 300 * S, "event", event="door_open", door_open=True)
    knocked = first.one("knocked_over")
    first.engine.stop()
    first.service.close()

    second = Hub(path, clock)
    assert second.one("knocked_over")["id"] == knocked["id"]
    second.light(T0 + 540 * S, tilt_deg=40.0, battery_v=11.3)
    second.none("battery_low")
    second.light(T0 + 600 * S, tilt_deg=1.0, battery_v=11.3)  # 10 minutes since T0
    assert second.one("battery_low")["severity"] == "warning"
    cleared = second.one("knocked_over")
    assert (cleared["id"], cleared["state"]) == (knocked["id"], "cleared_unack")
    second.tick(T0 + 300 * S + 601 * S)
    assert second.one("door_open_long")["state"] == "active_unack"


def test_restart_without_saved_state_still_clears_open_alarms(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "hub.sqlite"
    first = Hub(path, clock)
    first.light(T0, tilt_deg=40.0)
    first.tick(T0 + S)  # writes the alarm; no stop() and no save period: rule state is lost
    second = Hub(path, clock)
    second.light(T0 + 60 * S, tilt_deg=1.0)
    assert second.one("knocked_over")["state"] == "cleared_unack"


def test_default_rule_ids_are_fixed() -> None:
    engine = RuleEngine(_NullSink(), sites=SiteRegistry([]))
    ids = {
        kind: {r.id for r in engine.programs.program(kind, None, None).rules}  # type: ignore[union-attr]
        for kind in ("flashing_light", "fire_station", "patrol_reader")
    }
    assert ids == {
        "flashing_light": {
            "lamp_fault",
            "battery_low",
            "knocked_over",
            "mode_off_active_hours",
            "offline",
        },
        "fire_station": {
            "smoke",
            "fire_heat",
            "hydrant_pressure_low",
            "extinguisher_missing",
            "extinguisher_pressure",
            "door_open_long",
            "mains_lost",
            "battery_low",
            "offline",
        },
        "patrol_reader": {"offline", "battery_low"},
    }


class _NullSink:
    def raise_or_update(self, *args: Any, **kwargs: Any) -> str:
        return ""

    def auto_clear(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_retained_status_first_does_not_hide_older_telemetry(hub: Hub) -> None:
    """A device's first message is its retained 'online' (receive time, now); its telemetry is
    hours behind (a backfill, a late clock). The status must not set the device's clock."""
    now = T0 + 6 * 3600 * S
    hub.clock.now = now
    hub.engine.on_reading(
        Reading(
            "L1",
            "XS-FL200",
            "flashing_light",
            "ltp",
            "status",
            now,
            now,
            (),
            {"online": True},
            online=True,
        )
    )
    hub.light(T0, tilt_deg=80.0)
    assert hub.one("knocked_over")["state"] == "active_unack"
    hub.light(T0 + 60 * S, tilt_deg=1.0)
    assert hub.one("knocked_over")["state"] == "cleared_unack"


def test_timers_run_when_the_clock_goes_back(hub: Hub) -> None:
    """Device-clock mode starts on the wall clock, then follows devices' (earlier) time: the
    staleness timer must still run."""
    hub.tick(T0 + 24 * 3600 * S)  # a tick on the wall clock, a day ahead of the devices
    hub.light(T0, tilt_deg=1.0)
    hub.tick(T0 + 10 * 60 * S)  # ten minutes of silence for a 60 s model, in device time
    assert hub.one("offline")["state"] == "active_unack"


def test_unregistered_device_is_never_stale(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "u.sqlite", Clock())
    hub.engine.on_reading(Reading("STRANGER", "XS-FL200", "flashing_light", "unassigned",
                                  "telemetry", T0, T0 + S // 10, (), {"tilt_deg": 1.0}))
    hub.tick(T0 + 3600 * S)
    assert hub.alarms(device_id="STRANGER") == []


def test_timers_pop_in_due_order_once_each(hub: Hub) -> None:
    """The timer buckets: due order within and across seconds, each device once, a device
    rescheduled earlier not looked at again by its old entry."""
    base = 10**18  # a whole second
    timers = {name: SimpleNamespace(deadline=None, offset=0, scheduled=None) for name in "abc"}
    engine = hub.engine

    def schedule(name: str, at_ms: int) -> None:
        timers[name].deadline = base + at_ms * S // 1000
        engine.timers.schedule(timers[name])  # type: ignore[arg-type]

    def due(at_ms: int) -> list[str]:
        popped = engine.timers.pop_due(base + at_ms * S // 1000)
        return [next(n for n, t in timers.items() if t is ds) for ds in popped]

    schedule("a", 1500)
    schedule("b", 1200)
    schedule("c", 3000)
    schedule("c", 1100)  # earlier: its 3 s entry goes stale
    assert due(1000) == []
    assert due(1300) == ["c", "b"]  # the second bucket, up to now, in due order
    assert due(1600) == ["a"]  # the rest of that second
    assert due(3500) == []  # c's stale entry
    schedule("c", 3200)  # handled, then due again in the bucket of its stale entry
    assert due(3500) == ["c"]
    assert due(9000) == []
