"""Scale-out: P hub processes sharing the subscription through MQTT 5 shared subscriptions.

    uv run python bench/scaleout.py --messages 100000 --processes 1 2 --json

For each P: fresh Mosquitto + InfluxDB; P ``hub run`` processes with HUB_MQTT_SHARED_GROUP=hubs
(the router subscribes ``$share/hubs/<filter>``), each with its own client id, data dir and API
port, all writing to the same database. Every hub is started once (creating its persistent
session and shared subscription) and stopped; N messages are published (Mosquitto queues them
round robin over the group's sessions); all hubs start; time from the first "MQTT connected" to
every point in InfluxDB.

Mosquitto hands shared-subscription messages out round robin per message, so a device's
readings are split over the processes: fine for storage (points are idempotent), wrong for
per-device rule state. See docs/scaling.md (EMQX ``hash_topic`` keeps each device on one hub).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    emit,
    hub_connected_at,
    influx_counts,
    load_messages,
    log,
    machine,
    make_hub,
    mix_models,
    publish_all,
    services,
    wait_hub_points,
    write_site,
)


def run(processes: int, messages: int, devices: int, mix: str, timeout: float) -> dict[str, Any]:
    """One measurement with ``processes`` hubs."""
    with tempfile.TemporaryDirectory(prefix=f"bench-scaleout-{processes}-") as tmp:
        work = Path(tmp)
        with services(work) as (broker, influx):
            models = mix_models(mix)
            sites = work / "sites"
            write_site(sites, devices, models)
            hubs = [make_hub(work / f"hub{i}", broker, influx, sites,
                             mqtt_client_id=f"bench-hub-{i}", mqtt_shared_group="hubs")
                    for i in range(processes)]
            for hub in hubs:
                hub.start(timeout=120)
            for hub in hubs:
                hub.stop()
            batch = load_messages(messages, devices, models=models)
            before = influx_counts(influx)
            expected = {m: before[m] + c for m, c in batch.points.items()}
            publish_all(broker.url, batch.messages)
            log(f"{processes} process(es): {messages} queued; starting the hubs")
            spawned = time.time()
            for hub in hubs:
                hub.start(timeout=120)
            try:
                done, _ = wait_hub_points([h.api for h in hubs], influx, batch.total_points,
                                          expected, timeout)
                connected = min(hub_connected_at(h.log_path, after=spawned - 1) or spawned
                                for h in hubs)
                processed = [h.health()["pipeline"]["processed"] for h in hubs]
            finally:
                for hub in hubs:
                    hub.stop()
    seconds = done - connected
    return {"processes": processes, "seconds": round(seconds, 2),
            "rate": round(messages / seconds, 1), "per_process_messages": processed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mix", choices=["fleet", "uniform"], default="fleet")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [run(p, args.messages, args.devices, args.mix, args.timeout) for p in args.processes]
    emit({"messages": args.messages, "mix": args.mix, "runs": runs, "machine": machine()},
         args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
