"""Each simulator scenario through the real broker, the real hub and the real InfluxDB raises
exactly the alarms the scenario lists, and no others; and the simulators' payloads are all
accepted by the hub's profiles."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.ingest.normalize import Normalizer
from hub.model import InboundMessage, Refusal
from hub.profiles.loader import load_profiles
from hub.sites import load_sites
from simulators.fleet import Fleet
from simulators.scenario import load_scenario
from tests.support.scenario_replay import (
    REPO,
    SITES,
    VIEWER,
    alarms,
    replay,
    scenario_messages,
    start_hub,
)

DEVICE_SCENARIOS = [
    "light_knocked_over",
    "light_lamp_and_battery",
    "fire_smoke_then_fire",
    "fire_station_readiness",
    "device_silent",
    "field_garbage",
    "demo_incidents",
]


@pytest.mark.parametrize("name", DEVICE_SCENARIOS)
def test_scenario_raises_exactly_its_alarms(
    name: str, tmp_path: Path, mosquitto: Any, influx_db: Any
) -> None:
    scenario, messages = scenario_messages(name)
    hub = start_hub(tmp_path, mosquitto.url, influx_db)
    try:
        replay(hub, mosquitto.url, messages)
        raised = {(a["device_id"], a["rule"], a["severity"]) for a in alarms(hub)}
        expected = {(e.device, e.rule, e.severity) for e in scenario.expect_alarms}
        assert raised == expected, (
            f"missing: {sorted(expected - raised)}; unexpected: {sorted(raised - expected)}"
        )
        if name == "field_garbage":
            refusals = httpx.get(
                f"{hub.api}/api/refusals", params={"limit": 1000}, headers=VIEWER, timeout=10
            ).json()
            # each garbage publish is refused with a reason, nothing else is; a clock stuck
            # in 1970 and an unknown device are stored (receive time; site unassigned)
            assert sum(refusals["counts"].values()) == _refusable_garbage(messages)
            assert set(refusals["counts"]) <= {
                "bad_json",
                "bad_csv",
                "bad_type",
                "too_large",
                "empty",
                "bad_value",
                "missing_field",
                "not_text",
                "device_mismatch",
                "bad_text",
                "text_too_long",
            }
    finally:
        hub.stop()


def _refusable_garbage(messages: list[Any]) -> int:
    kinds = Counter(
        str(s.params.get("kind"))
        for s in load_scenario("field_garbage").timeline
        if s.fault == "garbage"
    )
    garbage = sum(1 for m in messages if m.fault == "garbage")
    return garbage - kinds["clock_1970"] - kinds["unknown_device"]


def test_every_simulated_payload_is_accepted() -> None:
    """Six simulated hours of all three townships plus a full day of Fuping's patrols:
    zero refusals, except the deliberately garbage payloads, which are all refused."""
    normalizer = Normalizer(load_profiles(REPO / "device_profiles"), load_sites(SITES))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    runs = [
        Fleet(SITES, seed=5, start=start).events_between(start, start + timedelta(hours=6)),
        Fleet(SITES, seed=6, start=start, only_sites=["fuping"]).events_between(
            start, start + timedelta(days=1)
        ),
    ]
    _, garbage_run = scenario_messages("field_garbage")
    by_model: Counter[str] = Counter()
    refused: list[Refusal] = []
    garbage_refused = garbage_total = 0
    received = int(datetime.now(UTC).timestamp() * 1e9)
    for run in runs:
        for message in run:
            result = normalizer.process(
                InboundMessage(
                    message.topic, message.payload, message.qos, message.retain, received
                )
            )
            by_model[message.model] += 1
            if isinstance(result, Refusal):
                refused.append(result)
    for message in garbage_run:
        result = normalizer.process(
            InboundMessage(message.topic, message.payload, message.qos, message.retain, received)
        )
        if message.fault == "garbage":
            garbage_total += 1
            garbage_refused += isinstance(result, Refusal)
        elif isinstance(result, Refusal):
            refused.append(result)
    assert not refused, refused[:5]
    assert set(by_model) == {"XS-FL200", "HN-BSD3", "PT-NFC1", "MFS-GW1", "YK-FS8"}
    assert sum(by_model.values()) > 50_000
    # clock_1970 and unknown_device garbage are stored (receive time / site unassigned), by design
    assert garbage_refused == _refusable_garbage(garbage_run) > 0
    assert garbage_total > garbage_refused
