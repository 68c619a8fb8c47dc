"""Station readiness is rule data: the console, the Grafana dashboard and the alarms agree.

The grading that the console hard-coded before readiness moved into the rule files is kept
here as the oracle: the default rules must grade every combination exactly as it did.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.api.app import create_app
from hub.grafana.dashboards import build_dashboards
from hub.model import InboundMessage, Reading
from hub.rules import schema
from hub.rules.readiness import ReadinessBook
from hub.runtime import Hub
from hub.settings import Settings
from hub.sites import SiteRegistry
from tests.support.golden_cases import MFS

REPO = Path(__file__).resolve().parent.parent
GOLDEN_SITES = Path(__file__).parent / "golden" / "_sites"
RULES = schema.load_rule_dir(REPO / "device_profiles" / "rules")
VIEWER = {"Authorization": "Bearer t-viewer"}
STATION = "LTP-MFS-02"

# the console's grading before it was data (hub/console/routes.py at d4a7c9f)
OLD_NOT_READY = frozenset({"smoke", "fire_heat", "extinguisher_missing", "offline"})


def old_grade(online: Any, values: dict[str, Any], rules: set[str]) -> tuple[str, str]:
    hydrant = values.get("hydrant_pressure_mpa")
    readiness = "ready"
    if online is not True or rules & OLD_NOT_READY:
        readiness = "not_ready"
    if isinstance(hydrant, int | float) and hydrant < 0.10:
        readiness = "not_ready"
    degraded = (
        (isinstance(hydrant, int | float) and hydrant < 0.15)
        or values.get("mains_power") is False
        or values.get("door_open") is True
        or bool(rules - OLD_NOT_READY)
    )
    if readiness == "ready" and degraded:
        readiness = "degraded"
    if "extinguisher_missing" in rules:
        extinguishers = "missing"
    elif "extinguisher_pressure" in rules:
        extinguishers = "low_pressure"
    else:
        extinguishers = "ok"
    return readiness, extinguishers


def old_flags(values: dict[str, Any]) -> set[str]:
    hydrant, smoke = values.get("hydrant_pressure_mpa"), values.get("smoke_pct_m")
    flags = set()
    if isinstance(hydrant, int | float) and hydrant < 0.15:
        flags.add("hydrant_pressure_mpa")
    if values.get("mains_power") is False:
        flags.add("mains_power")
    if values.get("door_open") is True:
        flags.add("door_open")
    if isinstance(smoke, int | float) and smoke >= 3:
        flags.add("smoke_pct_m")
    return flags


LEVELS = [(rid, sev) for rid, rule in RULES["fire_station"].rules.items() for sev in rule.levels]


@settings(max_examples=600)
@given(
    online=st.sampled_from([True, False, None]),
    hydrant=st.none() | st.floats(0, 0.4),
    smoke=st.none() | st.floats(0, 6),
    mains=st.sampled_from([True, False, None]),
    door=st.sampled_from([True, False, None]),
    drill=st.sampled_from([True, False, None]),
    active=st.sets(st.sampled_from([*LEVELS, ("site_rule", "major")]), max_size=4),
)
def test_default_rules_grade_exactly_as_the_console_did(
    online: Any, hydrant: Any, smoke: Any, mains: Any, door: Any, drill: Any,
    active: set[tuple[str, str]],
) -> None:
    values = {k: v for k, v in {"hydrant_pressure_mpa": hydrant, "smoke_pct_m": smoke,
                                 "mains_power": mains, "door_open": door,
                                 "drill": drill}.items() if v is not None}
    readiness = ReadinessBook(RULES, SiteRegistry([])).of("fire_station")
    assert readiness is not None
    grade = readiness.grade({**values, "online": online}, active)
    state, extinguishers = old_grade(online, values, {rule for rule, _ in active})
    assert (grade.state, grade.marks.get("extinguishers", "ok")) == (state, extinguishers)
    shown = {"hydrant_pressure_mpa", "mains_power", "door_open", "smoke_pct_m"}
    assert grade.flagged & shown == old_flags(values)


def test_readiness_conditions_must_be_judged_on_values() -> None:
    rule = {
        "message": {"en": "x", "zh": "x"},
        "levels": {"major": {"when": {"type": "stale", "intervals": 3},
                             "readiness": {"state": "not_ready", "on_values": True}}},
    }
    with pytest.raises(schema.RuleError, match="cannot be judged on the last values"):
        schema.parse_rule_set({"kind": "k", "rules": {"r": rule}})
    rule["levels"]["major"]["readiness"] = {  # type: ignore[index]
        "state": "degraded", "when": {"type": "event", "events": ["door_open"]}}
    with pytest.raises(schema.RuleError, match="only threshold, state, all, any and not"):
        schema.parse_rule_set({"kind": "k", "rules": {"r": rule}})


OVERRIDE = {
    "hydrant_pressure_low": {
        "levels": {
            "major": {"when": {"at": 0.20, "clear_at": 0.22}},
            "warning": {"when": {"at": 0.25, "clear_at": 0.27}},
        },
    },
}


def _site_dir(tmp_path: Path, override: bool, second_site: bool = False) -> Path:
    sites = tmp_path / "sites"
    sites.mkdir()
    site = yaml.safe_load((GOLDEN_SITES / "golden.yaml").read_text(encoding="utf-8"))
    if override:
        site["rules"] = OVERRIDE
    (sites / "golden.yaml").write_text(yaml.safe_dump(site, allow_unicode=True), encoding="utf-8")
    if second_site:
        other = {"site": "plaintown", "name": "平镇", "timezone": "Asia/Shanghai",
                 "devices": [{"id": "PT-MFS-01", "model": "MFS-GW1"}]}
        (sites / "plain.yaml").write_text(yaml.safe_dump(other, allow_unicode=True))
    return sites


@pytest.fixture(params=[False, True], ids=["default_rules", "site_override"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    settings = Settings(data_dir=tmp_path / "data", sites_dir=_site_dir(tmp_path, request.param),
                        mqtt_url="mqtt://127.0.0.1:9",
                        api_tokens="ops:officer:t-officer,wall:viewer:t-viewer")
    hub = Hub(settings)  # never started: readings are fed to its parts directly
    yield hub
    hub.alarms.close()
    hub.engine.dispose()


def _feed(hub: Hub, hydrant: float) -> None:
    healthy = [{"slot": 1, "present": True, "pressure_mpa": 1.18},
               {"slot": 2, "present": True, "pressure_mpa": 1.21}]
    payload = json.dumps({**MFS, "hydrant": {"pressure_mpa": hydrant},
                          "extinguishers": healthy}).encode()
    reading = hub.normalizer.process(InboundMessage(
        f"firestation/{STATION}/telemetry", payload, 1, False, MFS["ts"] * 10**9))
    assert isinstance(reading, Reading), reading
    for status in hub.states.observe(reading):
        hub.rules.on_reading(status)
    hub.rules.on_reading(reading)


def _hydrant_steps(board: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    table = next(p for p in board["panels"] if p["title"] == "Station readiness")
    override = next(o for o in table["fieldConfig"]["overrides"]
                    if o["matcher"]["options"] == "hydrant_pressure_mpa")
    cell = next(p["value"]["steps"] for p in override["properties"] if p["id"] == "thresholds")
    trend = next(p for p in board["panels"] if p["title"] == "Hydrant pressure")
    line = trend["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return ([(s["value"], s["color"]) for s in cell], [(s["value"], s["color"]) for s in line])


def test_a_site_override_moves_console_dashboard_and_alarm_together(hub: Hub) -> None:
    """0.18 MPa: fine under the default limits; below the site's 0.20 MPa it is an alarm, the
    console says not ready and the dashboard colours from 0.20 / 0.25."""
    overridden = bool(hub.sites.sites["goldtown"].rules)
    _feed(hub, 0.18)
    with TestClient(create_app(hub)) as client:
        listed = client.get("/api/alarms", params={"device_id": STATION}, headers=VIEWER)
        page = client.get("/console/p/stations", headers=VIEWER)
    alarms = {a["rule"]: a["severity"] for a in listed.json()}
    assert page.status_code == 200
    card = page.text.split(f'data-device-id="{STATION}"', 1)[1].split("</dl>", 1)[0]
    board = next(b for b in build_dashboards(hub.sites, hub.profiles, hub.rules.rule_sets)
                 if b.uid == "safety-hub-fire")
    cell, line = _hydrant_steps(board.model)
    if overridden:
        assert alarms == {"hydrant_pressure_low": "major"}
        assert 'data-readiness="not_ready"' in card
        assert cell == [(None, "red"), (0.2, "orange"), (0.25, "green")]
        assert line == [(None, "red"), (0.25, "green")]
    else:
        assert alarms == {}
        assert 'data-readiness="ready"' in card
        assert cell == [(None, "red"), (0.1, "orange"), (0.15, "green")]
        assert line == [(None, "red"), (0.15, "green")]
    hydrant_class = card.split("</dt><dd", 2)[2].split(">", 1)[0]  # the second fact: hydrant
    assert ('class="bad"' in hydrant_class) is overridden


def test_sites_that_disagree_keep_the_kind_limits_and_are_named(tmp_path: Path) -> None:
    from hub.sites import load_sites

    sites = load_sites(_site_dir(tmp_path, override=True, second_site=True))
    book = ReadinessBook(RULES, sites)
    assert [b.at for b in book.of("fire_station", "goldtown").value_bands(  # type: ignore[union-attr]
        "hydrant_pressure_mpa")] == [0.20, 0.25]
    default, differ = book.across_sites("fire_station")
    assert default is not None and differ == ["goldtown"]
    assert [b.at for b in default.value_bands("hydrant_pressure_mpa")] == [0.10, 0.15]
    board = next(b for b in build_dashboards(sites, [], RULES) if b.uid == "safety-hub-fire")
    assert "Sites goldtown override these limits" in board.model["description"]


def test_copied_rule_dir_is_what_the_dashboards_read(tmp_path: Path) -> None:
    """The dashboards read the rule files they are given, not the ones in the repository."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "device_profiles" / "rules", rules)
    text = (rules / "fire_station.yaml").read_text(encoding="utf-8")
    (rules / "fire_station.yaml").write_text(text.replace("at: 0.15, clear_at: 0.17",
                                                          "at: 0.16, clear_at: 0.18"))
    board = next(b for b in build_dashboards(SiteRegistry([]), [], schema.load_rule_dir(rules))
                 if b.uid == "safety-hub-fire")
    assert _hydrant_steps(board.model)[1] == [(None, "red"), (0.16, "green")]
