"""Hubs in cluster mode on a real NATS cluster (tests/support/nats.py): start them, read who
owns which partition, publish to a node, wait on state. Shared by the cluster test files."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.hubproc import HubProcess
from tests.support.nats import NatsCluster

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _common import client  # type: ignore[import-not-found]  # noqa: E402

PARTITIONS = 16
TOKENS = "ops:officer:t-officer"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # a hub still starting, a node away: poll on
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: last {last!r} "
                         f"{getattr(check, 'last', '')}")


def make_hub(tmp: Path, name: str, cluster: NatsCluster, pg_url: str, influx: Any,
             sites: Path, mqtt_node: int = 0, **settings: Any) -> HubProcess:
    """A ``hub run`` in cluster mode (not started); its MQTT publisher on node ``mqtt_node``
    first, then the other nodes in order (HUB_MQTT_URL as a list: failover). ``settings``
    add or replace HUB_* settings (lower case, as HubProcess takes them)."""
    (tmp / name).mkdir(parents=True, exist_ok=True)
    count = len(cluster.nodes)
    order = [cluster.nodes[(mqtt_node + i) % count].mqtt_url for i in range(count)]
    chosen: dict[str, Any] = {
        "cluster_url": cluster.urls, "node_id": name, "mqtt_url": ",".join(order),
        "mqtt_protocol": "3.1.1", "mqtt_client_id": "hub", "database_url": pg_url,
        "influx_url": influx.url, "influx_db": influx.name, "sites_dir": sites,
        "rule_state_save_s": 1, "api_tokens": TOKENS, **settings}
    hub = HubProcess(tmp / name, **chosen)
    hub.token = "t-officer"
    return hub


def start_all(*hubs: HubProcess) -> None:
    """Start hubs one after the other, each until its API answers (creating the tables at
    once is safe: tests/test_db.py; one at a time keeps the partition split predictable)."""
    for hub in hubs:
        hub.start(timeout=60)


def owners(hub: HubProcess) -> dict[int, str | None]:
    """Partition -> owner as the hub's GET /api/cluster reports it."""
    view = hub.get("/api/cluster")
    return {p["partition"]: p["owner"] for p in view["partitions"]}


def balanced(hubs: list[HubProcess]) -> Callable[[], dict[int, str | None] | None]:
    """A check: every partition owned, by the given hubs only, none with two more than another."""
    names = {h.settings["HUB_NODE_ID"] for h in hubs}

    def check() -> dict[int, str | None] | None:
        table = owners(hubs[0])
        counts = [sum(1 for o in table.values() if o == n) for n in names]
        if set(table.values()) == names and max(counts) - min(counts) <= 1:
            return table
        return None
    return check


def publish_now(url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish QoS 1 and return once every PUBACK is in."""
    c = client(url, v5=False)
    try:
        for info in [c.publish(t, p, qos=1) for t, p in messages]:
            info.wait_for_publish(timeout=30)
    finally:
        c.disconnect()
        c.loop_stop()


def tilt(device: str, t_s: float, degrees: float) -> tuple[str, bytes]:
    """An XS-FL200 report at device time ``t_s`` with the given tilt."""
    body = {"ts": int(t_s * 1000), "mode": "flash", "lamp": "ok", "battery_mv": 12450,
            "solar_mv": 18020, "tilt_deg": degrees, "flash_hz": 1.5}
    return f"roadsafety/flashlight/{device}/telemetry", json.dumps(body).encode()


def alarms_of(hub: HubProcess, device: str) -> list[dict[str, Any]]:
    """Every alarm of a device, any state, from the shared database (via this hub's API)."""
    items: list[dict[str, Any]] = hub.get("/api/alarms", device_id=device, limit=100)
    return items
