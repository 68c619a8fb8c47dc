"""Scale-out: P hubs sharing the load, through MQTT 5 shared subscriptions or a NATS cluster.

    uv run python bench/scaleout.py --messages 100000 --processes 1 2 --json
    uv run python bench/scaleout.py --mode nats --messages 30000 --processes 1 2 3 --json

``--mode nats``: a 3-node nats-server cluster (files from ``hub cluster nats-config``, stream and
consumers from ``hub cluster init``), PostgreSQL shared by the hubs, InfluxDB. N messages are
published (QoS 1, over the three nodes' MQTT listeners) while no hub runs (the durable
consumers keep them); then P hubs start (HUB_CLUSTER_URL, HUB_NODE_ID hub-<i>); time from the
first hub taking its partitions to every point in InfluxDB, and the hubs' CPU seconds per
message (the cluster path's cost against ``--mode mqtt``'s, which is measured the same way).

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
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    client,
    cpu_seconds,
    emit,
    hub_connected_at,
    influx_counts,
    load_messages,
    log,
    machine,
    make_hub,
    mix_models,
    process_tree,
    publish_all,
    services,
    wait_hub_points,
    write_site,
)

from tests.support.hubproc import HubProcess
from tests.support.nats import NatsCluster
from tests.support.services import InfluxServer, PostgresServer


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
            sampler = CpuSampler(hubs)
            try:
                for hub in hubs:
                    hub.start(timeout=120)
                done, _ = wait_hub_points([h.api for h in hubs], influx, batch.total_points,
                                          expected, timeout)
                began = [hub_connected_at(h.log_path, after=spawned - 1) or spawned
                         for h in hubs]
                processed = [h.health()["pipeline"]["processed"] for h in hubs]
                cpu = sampler.since(began)
            finally:
                sampler.close()
                for hub in hubs:
                    hub.stop()
    seconds = done - min(began)
    return {"mode": "mqtt", "processes": processes, "seconds": round(seconds, 2),
            "rate": round(messages / seconds, 1), "per_process_messages": processed,
            **cpu_figures(cpu, messages)}


def tree_cpu(hub: HubProcess) -> tuple[float, float]:
    """CPU seconds of a hub's main process and of its children (the intake or the MQTT
    publisher)."""
    assert hub.proc is not None
    tree = process_tree(hub.proc.pid)
    return cpu_seconds(tree[0]), sum(cpu_seconds(p) for p in tree[1:])


class CpuSampler:
    """The hubs' CPU every 10 ms from their start, so the CPU used before a given wall time
    (the hub's first take of partitions, or its intake's connect) can be taken off afterwards.

    Taking the CPU when ``start()`` returns counted a quick drain as start-up: on a quiet
    machine a hub drains much of the queue while the API comes up.
    """

    def __init__(self, hubs: list[HubProcess]) -> None:
        import threading

        self.hubs = hubs
        self.samples: dict[int, list[tuple[float, float, float]]] = {id(h): [] for h in hubs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for hub in self.hubs:
                if hub.proc is not None:
                    self.samples[id(hub)].append((time.time(), *tree_cpu(hub)))

    def since(self, began: Sequence[float | None]) -> tuple[float, float]:
        """Main-process and children CPU seconds of all hubs from each one's ``began`` (the
        last sample before it) to now."""
        main = children = 0.0
        for hub, start in zip(self.hubs, began, strict=True):
            now_main, now_children = tree_cpu(hub)
            series = self.samples[id(hub)] or [(0.0, 0.0, 0.0)]
            before = [s for s in series if start is None or s[0] <= start] or series[:1]
            main += now_main - before[-1][1]
            children += now_children - before[-1][2]
        return main, children

    def close(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(1)


def cpu_figures(cpu: tuple[float, float], messages: int) -> dict[str, float]:
    """CPU µs per message: the hubs' process trees, and the main processes alone."""
    main, children = cpu
    return {"hub_cpu_us_per_message": round((main + children) / messages * 1e6, 1),
            "hub_main_cpu_us_per_message": round(main / messages * 1e6, 1)}


def publish_over(urls: list[str], messages: list[tuple[str, bytes]]) -> None:
    """Publish QoS 1 over several MQTT 3.1.1 connections at once (one per node)."""
    import threading

    def one(url: str, part: list[tuple[str, bytes]]) -> None:
        c = client(url, v5=False)
        acked: set[int] = set()
        c.on_publish = lambda _c, _u, mid, *_rest: acked.add(mid)
        mids = set()
        for topic, payload in part:
            mids.add(c.publish(topic, payload, qos=1).mid)
            while len(mids) - len(acked) > 2000:  # paho's window; the server's pace
                time.sleep(0.001)
        deadline = time.monotonic() + 300
        while not mids <= acked and time.monotonic() < deadline:
            time.sleep(0.05)
        c.disconnect()
        c.loop_stop()

    threads = [threading.Thread(target=one, args=(url, messages[i::len(urls)]))
               for i, url in enumerate(urls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def took_partitions_at(log_path: Path) -> float | None:
    """Wall time of the hub's first "took partitions" log line."""
    from datetime import datetime

    for line in log_path.read_text(errors="replace").splitlines():
        if "took partitions" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()
    return None


def run_nats(processes: int, messages: int, devices: int, mix: str,
             timeout: float) -> dict[str, Any]:
    """One measurement with ``processes`` hubs on a 3-node NATS cluster."""
    with tempfile.TemporaryDirectory(prefix=f"bench-nats-{processes}-") as tmp:
        work = Path(tmp)
        pg_dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))  # postgres can enter it
        cluster = NatsCluster(work / "nats")
        influx = InfluxServer(work / "influx")
        pg = PostgresServer(pg_dir)
        try:
            cluster.start()
            influx.start()
            influx.create_database("hub")
            pg.start()
            models = mix_models(mix)
            sites = work / "sites"
            write_site(sites, devices, models)
            batch = load_messages(messages, devices, models=models)
            log(f"nats, {processes} hub(s): publishing {messages} over 3 nodes")
            published = time.time()
            publish_over([n.mqtt_url for n in cluster.nodes], batch.messages)
            log(f"  published in {time.time() - published:.1f} s; starting the hubs")
            database = pg.database()
            hubs = []
            for i in range(processes):
                (work / f"hub{i}").mkdir()
                hubs.append(HubProcess(
                    work / f"hub{i}", cluster_url=cluster.urls, node_id=f"hub-{i}",
                    mqtt_url=cluster.nodes[i % 3].mqtt_url, mqtt_protocol="3.1.1",
                    mqtt_client_id="bench-hub", database_url=database, influx_url=influx.url,
                    influx_db="hub", sites_dir=sites))
            sampler = CpuSampler(hubs)
            try:
                for hub in hubs:
                    hub.start(timeout=120)
                done, _ = wait_hub_points([h.api for h in hubs], influx, batch.total_points,
                                          dict(batch.points), timeout)
                started = [took_partitions_at(h.log_path) for h in hubs]
                first = min(t for t in started if t is not None)
                processed = [h.health()["pipeline"]["processed"] for h in hubs]
                cpu = sampler.since(started)
            finally:
                sampler.close()
                for hub in hubs:
                    hub.stop()
        finally:
            pg.stop()
            influx.close()
            cluster.stop()
            shutil.rmtree(pg_dir, ignore_errors=True)
    seconds = done - first
    return {"mode": "nats", "processes": processes, "seconds": round(seconds, 2),
            "rate": round(messages / seconds, 1), "per_process_messages": processed,
            **cpu_figures(cpu, messages)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mix", choices=["fleet", "uniform"], default="fleet")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--mode", choices=["mqtt", "nats"], default="mqtt",
                        help="MQTT 5 shared subscriptions on Mosquitto, or the NATS cluster")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    measure = run_nats if args.mode == "nats" else run
    runs = [measure(p, args.messages, args.devices, args.mix, args.timeout)
            for p in args.processes]
    emit({"messages": args.messages, "mix": args.mix, "runs": runs, "machine": machine()},
         args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
