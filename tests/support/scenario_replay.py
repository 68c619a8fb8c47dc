"""Replay a simulator scenario through a real broker into a running hub, as fast as possible."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from hub.sites import load_sites
from simulators.fleet import Fleet
from simulators.message import SimMessage
from simulators.scenario import Scenario, load_scenario
from tests.support.hubproc import HubProcess
from tests.support.mqtt_util import publish_many

REPO = Path(__file__).resolve().parents[2]
SITES = REPO / "sites"
TOKENS = "ops:officer:t-officer,wall:viewer:t-viewer"
VIEWER = {"Authorization": "Bearer t-viewer"}


def latest_start(scenario: Scenario, margin: timedelta = timedelta(minutes=10)) -> datetime:
    """The most recent day on which the scenario, started at its local time, is over by now."""
    zone = ZoneInfo("Asia/Shanghai")
    now = datetime.now(UTC)
    local = now.astimezone(zone)
    start_time = scenario.start or local.time().replace(microsecond=0)
    day = local.date()
    while True:
        start = datetime.combine(day, start_time, tzinfo=zone)
        if start + timedelta(seconds=scenario.duration_s) + margin <= now:
            return start.astimezone(UTC)
        day -= timedelta(days=1)


def scenario_messages(name: str, seed: int = 1) -> tuple[Scenario, list[SimMessage]]:
    """The scenario and every message its fleet publishes, in publish order."""
    scenario = load_scenario(name)
    registry = load_sites(SITES)
    sites = {registry.devices[d].site.site for d in scenario.devices if d in registry.devices}
    start = latest_start(scenario)
    fleet = Fleet(SITES, seed=seed, start=start, scenario=scenario, only_sites=sorted(sites))
    end = start + timedelta(seconds=scenario.duration_s)
    return scenario, list(fleet.events_between(start, end))


def replay(hub: HubProcess, mqtt_url: str, messages: list[SimMessage],
           timeout: float = 120) -> None:
    """Publish every message (a will as the broker would: retained) and wait until processed.

    Waits on the hub's state, not on time: every message taken by the pipeline, nothing queued
    (pipeline and writer), then two completed pipeline ticks, so that each timer due by the
    newest device time has run (with ``clock: device`` time stops with the last message).
    """
    before = hub.health()["pipeline"]["processed"]
    publish_many(
        mqtt_url, [(m.topic, m.payload, m.qos, m.retain or m.action is not None) for m in messages]
    )
    deadline = time.monotonic() + timeout
    pipeline = hub.health()["pipeline"]
    while time.monotonic() < deadline:
        if (pipeline["processed"] - before >= len(messages) and pipeline["queued"] == 0
                and pipeline["writer_queued"] == 0):
            break
        time.sleep(0.1)
        pipeline = hub.health()["pipeline"]
    else:
        raise AssertionError(f"replay not processed in {timeout} s: {pipeline}\n{hub.log()}")
    # the tick running now may have started before the last message: wait for two more
    ticks = pipeline["ticks"]
    while hub.health()["pipeline"]["ticks"] < ticks + 2:
        if time.monotonic() > deadline:
            raise AssertionError(f"the hub's pipeline stopped ticking\n{hub.log()}")
        time.sleep(0.05)


def start_hub(tmp_path: Path, mqtt_url: str, influx: object | None = None) -> HubProcess:
    """A hub on the real sites whose timers follow the devices' clock."""
    settings: dict[str, object] = {
        "mqtt_url": mqtt_url,
        "sites_dir": SITES,
        "clock": "device",
        "api_tokens": TOKENS,
    }
    if influx is not None:
        settings.update(influx_url=influx.url, influx_db=influx.name)  # type: ignore[attr-defined]
    hub = HubProcess(tmp_path, **settings)
    hub.start()
    return hub


def alarms(hub: HubProcess) -> list[dict[str, object]]:
    """Every alarm the hub has, in any state."""
    response = httpx.get(
        f"{hub.api}/api/alarms", headers=VIEWER, params={"limit": 1000}, timeout=10
    )
    response.raise_for_status()
    result: list[dict[str, object]] = response.json()
    return result
