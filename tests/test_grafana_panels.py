"""Every panel query of every dashboard runs against a real InfluxDB loaded by the simulators.

No Grafana server can run here, so this is how the panels are proven: the simulators' fleet
runs for two simulated hours with faults injected, every message goes through the hub's real
normalizer into InfluxDB 1.6, plus device_status and alarm points built per the canonical
schema. Then each InfluxQL target (and annotation) of the committed dashboard JSON is rendered
the way Grafana renders it ($timeFilter, $__interval, the site/community/device variables) and
must return rows carrying the columns its panel reads.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.grafana.dashboards import TargetCheck, build_dashboards
from hub.grafana.export import DASHBOARD_DIR
from hub.grafana.queries import INFLUX_UID, STATIC_UID
from hub.ingest.lineproto import encode_point
from hub.ingest.normalize import Normalizer, status_point
from hub.model import InboundMessage, Point, Reading
from hub.profiles.loader import load_profiles
from hub.sites import load_sites
from simulators.fleet import Fleet
from simulators.scenario import Scenario

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
HOURS = 2
SEVERITIES = ("critical", "major", "minor", "warning", "info")

SCENARIO = {
    "description": "Something for every panel",
    "duration_s": HOURS * 3600,
    "timeline": [
        {"at": 60, "device": "GY-FL-0029", "fault": "knock_over", "params": {"tilt_deg": 80}},
        {"at": 90, "device": "GY-FL-0012", "fault": "mode_off"},
        {"at": 120, "device": "GY-FL-0040", "fault": "lamp_fail"},
        {
            "at": 300,
            "device": "LTP-MFS-02",
            "fault": "smoke",
            "params": {"level_pct_m": 3.5, "rise_s": 30, "fire_after_s": None},
        },
        {"at": 400, "device": "LTP-MFS-01", "fault": "extinguisher_removed", "params": {"slot": 2}},
        {"at": 500, "device": "YK8-000231", "fault": "door_open", "params": {"duration_s": 900}},
        {
            "at": 600,
            "device": "FP-R02",
            "fault": "unknown_tag",
            "params": {"tag_uid": "04DEADBEEF0001"},
        },
        {"at": 900, "device": "FP-R04", "fault": "late_upload", "params": {"hours": 6}},
        {"at": 1200, "device": "LTP-MFS-03", "fault": "mains_lost", "params": {"duration_s": 600}},
    ],
}


def _start() -> datetime:
    """The latest 07:55 Shanghai time whose two-hour run is over (morning patrol rounds)."""
    now = datetime.now(UTC)
    day = now.astimezone(SHANGHAI).date()
    while True:
        start = datetime.combine(day, time(7, 55), tzinfo=SHANGHAI).astimezone(UTC)
        if start + timedelta(hours=HOURS) <= now:
            return start
        day -= timedelta(days=1)


def _alarm(
    tags: list[tuple[str, str]],
    kind: str,
    rule: str,
    alarm_id: str,
    state: str,
    severity: str,
    at: datetime,
    value: float | None = None,
) -> Point:
    fields: list[tuple[str, Any]] = [
        ("alarm_id", alarm_id),
        ("state", state),
        ("severity", severity),
        ("message", f"{rule} on {dict(tags)['device_id']}"),
    ]
    if value is not None:
        fields.append(("value", value))
    all_tags = tuple(sorted([*tags, ("kind", kind), ("rule", rule)]))
    return Point("alarm", all_tags, tuple(fields), int(at.timestamp() * 1e9))


def _load(influx_db: Any) -> tuple[datetime, datetime]:
    profiles = load_profiles(ROOT / "device_profiles")
    sites = load_sites(ROOT / "sites")
    normalizer = Normalizer(profiles, sites)
    start = _start()
    fleet = Fleet(sites, seed=11, start=start, scenario=Scenario.model_validate(SCENARIO))
    lines: list[bytes] = []
    for msg in fleet.events_between(start, start + timedelta(hours=HOURS)):
        received_ns = int(msg.at.timestamp() * 1e9)
        result = normalizer.process(
            InboundMessage(msg.topic, msg.payload, msg.qos, msg.retain, received_ns)
        )
        if isinstance(result, Reading):
            lines.extend(encode_point(p) for p in result.points)

    def tags(device_id: str, model: str) -> list[tuple[str, str]]:
        return normalizer.base_tags(device_id, model)[1]

    kinds = {p.model: p.kind for p in profiles}
    late = start + timedelta(minutes=90)
    # devices the hub declared offline (heartbeat timeout / last will) late in the run
    for device_id, model, reason in (
        ("GY-FL-0033", "XS-FL200", "heartbeat_timeout"),
        ("LTP-MFS-04", "MFS-GW1", "lwt"),
        ("FP-R09", "PT-NFC1", "heartbeat_timeout"),
    ):
        lines.append(
            encode_point(
                status_point(
                    tags(device_id, model), kinds[model], False, reason, int(late.timestamp() * 1e9)
                )
            )
        )
    # the rules' alarms: every severity active, some acknowledged and cleared
    alarms = [
        ("GY-FL-0029", "XS-FL200", "knocked_over", "critical", ["active_unack"], 80.0),
        ("LTP-MFS-02", "MFS-GW1", "smoke", "critical", ["active_unack", "active_ack"], 3.5),
        ("FP-R01", "PT-NFC1", "checkpoint_missed", "major", ["active_unack"], None),
        ("FP-R09", "PT-NFC1", "round_not_started", "warning", ["active_unack"], None),
        ("GY-FL-0012", "XS-FL200", "mode_off_active_hours", "minor", ["active_unack"], None),
        (
            "LTP-MFS-01",
            "MFS-GW1",
            "extinguisher_missing",
            "major",
            ["active_unack", "active_ack", "cleared_ack"],
            None,
        ),
        ("FP-R08", "PT-NFC1", "battery_low", "warning", ["active_unack", "active_ack"], 12.0),
        ("FP-R02", "PT-NFC1", "unknown_tag", "info", ["active_unack"], None),
        ("GY-FL-0040", "XS-FL200", "lamp_fault", "major", ["active_unack"], None),
    ]
    for number, (device_id, model, rule, severity, states, value) in enumerate(alarms):
        for step, state in enumerate(states):
            at = start + timedelta(minutes=10 + number * 5 + step * 3)
            lines.append(
                encode_point(
                    _alarm(
                        tags(device_id, model),
                        kinds[model],
                        rule,
                        f"ALM-{number:04d}",
                        state,
                        severity,
                        at,
                        value,
                    )
                )
            )
    assert {a[3] for a in alarms} == set(SEVERITIES)
    for chunk in range(0, len(lines), 5000):
        influx_db.write(b"\n".join(lines[chunk : chunk + 5000]))
    return start - timedelta(hours=8), start + timedelta(hours=HOURS, minutes=5)


def _panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _committed() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))]


def _render(query: str, t0: datetime, t1: datetime, variables: dict[str, str]) -> str:
    """Substitute like Grafana's InfluxDB datasource (variables as regex inside /^...$/)."""
    rendered = query.replace(
        "$timeFilter",
        f"time >= {int(t0.timestamp() * 1000)}ms and time <= {int(t1.timestamp() * 1000)}ms",
    ).replace("$__interval", "1m")
    for name, value in variables.items():
        rendered = rendered.replace(f"${name}", value)
    assert not re.search(r"\$(?!tag_)\w", rendered), rendered
    return rendered


def _checks() -> dict[tuple[str, str, str], TargetCheck]:
    boards = build_dashboards(load_sites(ROOT / "sites"), load_profiles(ROOT / "device_profiles"))
    return {(b.uid, c.panel, c.ref_id): c for b in boards for c in b.checks}


def _assert_columns(rows: list[dict[str, Any]], columns: tuple[str, ...], what: str) -> None:
    assert rows, f"{what}: no rows"
    for column in columns:
        assert any(row.get(column) is not None for row in rows), (
            f"{what}: column {column!r} missing or always null; got {sorted(rows[0])}"
        )


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.slow
def test_every_panel_query_returns_the_columns_it_reads(influx_db: Any) -> None:
    t0, t1 = _load(influx_db)
    checks = _checks()
    every = {"site": ".*", "community": ".*", "device": ".*"}
    proven = 0
    for model in _committed():
        uid = model["uid"]
        # template variables: each SHOW TAG VALUES query returns values
        for variable in model["templating"]["list"]:
            if variable["type"] != "query":
                continue
            rows = influx_db.rows(_render(variable["query"], t0, t1, every))
            assert rows and all(r.get("value") for r in rows), f"{uid} ${variable['name']}"
        for annotation in model.get("annotations", {}).get("list", []):
            if annotation["datasource"]["uid"] != INFLUX_UID:
                continue
            rows = influx_db.rows(_render(annotation["query"], t0, t1, every))
            columns = (annotation["textColumn"], *annotation["tagsColumn"].split(","))
            _assert_columns(rows, tuple(columns), f"{uid} annotation {annotation['name']}")
        for panel in _panels(model):
            for target in panel.get("targets", []):
                what = f"{uid} / {panel['title']} / {target['refId']}"
                if target["datasource"]["uid"] == STATIC_UID:
                    assert _csv_rows(target["csvContent"]), what
                    continue
                assert target["datasource"]["uid"] == INFLUX_UID, what
                check = checks.get((uid, panel["title"], target["refId"]))
                assert check is not None and check.query == target["query"], (
                    f"{what}: committed JSON differs from the code (run `hub grafana export`)"
                )
                rows = influx_db.rows(_render(target["query"], t0, t1, every))
                _assert_columns(rows, check.columns, what)
                proven += 1
    assert proven >= 30


@pytest.mark.slow
def test_variables_narrow_every_panel_to_one_device(influx_db: Any) -> None:
    t0, t1 = _load(influx_db)
    narrowed = 0
    for model in _committed():
        device_query = next(
            v["query"] for v in model["templating"]["list"] if v["name"] == "device"
        )
        devices = influx_db.rows(_render(device_query, t0, t1, {"site": ".*", "community": ".*"}))
        chosen = sorted(r["value"] for r in devices)[0]
        who = influx_db.rows(
            f'SHOW TAG VALUES WITH KEY IN ("site", "community") WHERE "device_id" = \'{chosen}\''
        )
        tags = {r["key"]: r["value"] for r in who}
        chosen_vars = {
            "site": re.escape(tags["site"]),
            "community": re.escape(tags.get("community", "")),
            "device": re.escape(chosen),
        }
        for panel in _panels(model):
            for target in panel.get("targets", []):
                if target["datasource"]["uid"] != INFLUX_UID:
                    continue
                rows = influx_db.rows(_render(target["query"], t0, t1, chosen_vars))
                for row in rows:
                    if "device_id" in row:
                        assert row["device_id"] == chosen, (model["uid"], panel["title"])
                        narrowed += 1
    assert narrowed > 0


@pytest.mark.slow
def test_geomap_and_coverage_joins_match_the_influx_rows(influx_db: Any) -> None:
    t0, t1 = _load(influx_db)
    every = {"site": ".*", "community": ".*", "device": ".*"}
    models = {m["uid"]: m for m in _committed()}

    def targets(uid: str, title: str) -> dict[str, dict[str, Any]]:
        panel = next(p for p in _panels(models[uid]) if p["title"] == title)
        return {t["refId"]: t for t in panel["targets"]}

    light_map = targets("safety-hub-road", "Light map")
    positions = {r["device_id"]: r for r in _csv_rows(light_map["B"]["csvContent"])}
    sites = load_sites(ROOT / "sites")
    lights = {
        d.id
        for s in sites.sites.values()
        for d in s.devices
        if d.model in {"XS-FL200", "HN-BSD3"} and d.lat is not None
    }
    assert set(positions) == lights
    for row in positions.values():
        assert -90 <= float(row["latitude"]) <= 90 and -180 <= float(row["longitude"]) <= 180
    reported = influx_db.rows(_render(light_map["A"]["query"], t0, t1, every))
    assert reported and {r["device_id"] for r in reported} <= set(positions)
    assert {"ok", "fail"} <= {r["lamp"] for r in reported}

    coverage = targets("safety-hub-patrol", "Route coverage today")
    totals = {
        r["route_id"]: int(r["checkpoints_total"]) for r in _csv_rows(coverage["B"]["csvContent"])
    }
    scanned = influx_db.rows(_render(coverage["A"]["query"], t0, t1, every))
    assert scanned
    for row in scanned:
        assert row["route_id"] in totals
        assert 0 < row["checkpoints"] <= totals[row["route_id"]]
