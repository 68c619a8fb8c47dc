"""What the cluster's fleet view (``hub/cluster/view.py``) costs, without a cluster.

The sending hub: CPU per changed device on its pipeline thread (building the rows, one JSON
batch). A receiving hub: CPU per row on its intake loop, and memory per device it keeps.

    uv run python bench/fleetview.py [--devices 100000] [--changed 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc
from typing import Any, cast

import orjson

from hub.cluster.view import FleetView
from hub.state import LiveState

VALUES = {"mode": "flash", "lamp": "ok", "battery_mv": 12450, "solar_mv": 18020, "tilt_deg": 1.8,
          "flash_hz": 1.5, "charging": True, "veh_count": 12, "temp_c": 21.5, "online": True}


class _States:
    """The sender's device states (XS-FL200 telemetry values)."""

    def __init__(self, count: int) -> None:
        self.devices: dict[str, LiveState] = {}
        for i in range(count):
            s = LiveState(f"LD-FL-{i:06d}", "XS-FL200", "flashing_light", "loadtest")
            s.last_seen_ns = s.last_time_ns = time.time_ns()
            s.online = True
            s.values = dict(VALUES)
            self.devices[s.device_id] = s

    def get(self, device_id: str) -> LiveState | None:
        """A device's state."""
        return self.devices.get(device_id)


class _Wire:
    """Stands for the intake's NATS connection: keeps what would be published."""

    max_payload = 1 << 20

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def publish_core(self, _subject: str, payload: bytes) -> None:
        """Keep the payload."""
        self.payloads.append(payload)


class _Msg:
    def __init__(self, data: bytes) -> None:
        self.subject = "hubview.hub-a.devices"
        self.data = data


def main() -> None:
    """Measure and print the three figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=10_000)
    args = parser.parse_args()
    states, wire = _States(args.devices), _Wire()
    sender = FleetView("hub-a", 16, cast(Any, states), cast(Any, None), cast(Any, wire), 0.5,
                       dict)
    changed = set(list(states.devices)[:args.changed])
    started = time.perf_counter()
    sender._send(changed)
    took = time.perf_counter() - started
    size = sum(map(len, wire.payloads)) / len(changed)
    print(f"sender: {took / len(changed) * 1e6:.2f} µs per changed device, {size:.0f} bytes "
          "on the wire each")

    rows = [[s.device_id, s.model, s.kind, s.site, s.last_seen_ns, s.last_time_ns, s.online,
             None, s.values] for s in states.devices.values()]
    batches = [orjson.dumps(rows[i:i + 1000]) for i in range(0, len(rows), 1000)]
    del states, rows, sender
    receiver = FleetView("hub-b", 16, cast(Any, None), cast(Any, None), cast(Any, wire), 0.5,
                         dict)
    started = time.perf_counter()
    asyncio.run(_feed_into(receiver, batches))
    took = time.perf_counter() - started
    print(f"receiver: {took / args.devices * 1e6:.2f} µs per row")
    again = FleetView("hub-c", 16, cast(Any, None), cast(Any, None), cast(Any, wire), 0.5, dict)
    tracemalloc.start()
    asyncio.run(_feed_into(again, batches))
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"receiver: {held / args.devices:.0f} bytes per device kept "
          f"({held / 1e6:.1f} MB for {args.devices})")


async def _feed_into(view: FleetView, batches: list[bytes]) -> None:
    for batch in batches:
        await view._on_devices(cast(Any, _Msg(batch)))


if __name__ == "__main__":
    main()
