"""What catching QoS 0 publishes of QoS 1 topics costs in cluster mode (hub/cluster/strays.py).

    uv run python bench/strays.py --messages 30000 --strays 300 --json

A 3-node nats-server cluster (files from ``hub cluster nats-config``, ``hub cluster init``).
N messages of the three QoS 1 models are published live at QoS 1 over the three nodes' MQTT
listeners, and S of them again at QoS 0 (the strays), twice: with no catcher running, and with
one catcher process (what every hub starts). Reported: the catcher's CPU per QoS 1 message it
had to look at and drop, the three nats-servers' CPU per message in both runs (the extra
delivery to the catcher's queue group), and how many strays reached ``HUB_READINGS`` (all with
the catcher, none without: the loss it closes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import client, cpu_seconds, emit, load_messages, log, machine

from hub.cluster.strays import StrayCatcher
from hub.settings import Settings
from tests.support.nats import NatsCluster


def publish(url: str, messages: list[tuple[str, bytes]], qos: int) -> None:
    """Publish over one MQTT 3.1.1 connection and wait until the node has read them all."""
    c = client(url, v5=False)
    acked: set[int] = set()
    c.on_publish = lambda _c, _u, mid, *_rest: acked.add(mid)
    mids = set()
    for topic, payload in messages:
        mids.add(c.publish(topic, payload, qos=qos).mid)
        while qos and len(mids) - len(acked) > 2000:
            time.sleep(0.001)
    last = c.publish("bench/strays/flush", b"", qos=1)  # its PUBACK: all before it were read
    mids.add(last.mid)
    deadline = time.monotonic() + 300
    while not ({last.mid} | (mids if qos else set())) <= acked:
        if time.monotonic() > deadline:
            raise TimeoutError("publishes not acknowledged")
        time.sleep(0.02)
    c.disconnect()
    c.loop_stop()


def readings(cluster: NatsCluster) -> int:
    """Messages in HUB_READINGS (the strays the catcher stored, as no QoS 0 topic is used)."""
    import asyncio

    import nats

    async def count() -> int:
        nc = await nats.connect(cluster.urls.split(","))
        try:
            info = await nc.jetstream().stream_info("HUB_READINGS")
            return int(info.state.messages)
        finally:
            await nc.close()
    return asyncio.run(count())


def run_once(cluster: NatsCluster, batch: list[tuple[str, bytes]], strays: int,
             catcher: bool) -> dict[str, Any]:
    """One run: the QoS 1 load and the strays, with or without a catcher."""
    settings = Settings(cluster_url=cluster.urls, node_id="bench")
    catching = StrayCatcher(settings) if catcher else None
    if catching is not None:
        catching.start()
        deadline = time.monotonic() + 30
        while not catching.connected:
            if time.monotonic() > deadline:
                raise TimeoutError("the catcher did not subscribe")
            time.sleep(0.05)
    nodes = [n.proc.pid for n in cluster.nodes if n.proc is not None]
    stored_before = readings(cluster)
    nats_before = sum(cpu_seconds(p) for p in nodes)
    pid = catching._proc.pid if catching is not None and catching._proc else None
    catcher_before = cpu_seconds(pid) if pid else 0.0
    started = time.monotonic()
    urls = [n.mqtt_url for n in cluster.nodes]
    for i, url in enumerate(urls):
        publish(url, batch[i::len(urls)], qos=1)
    publish(urls[0], batch[:strays], qos=0)
    seconds = time.monotonic() - started
    deadline = time.monotonic() + (30 if catcher else 3)
    while readings(cluster) - stored_before < strays and time.monotonic() < deadline:
        time.sleep(0.1)
    stored = readings(cluster) - stored_before
    nats_cpu = sum(cpu_seconds(p) for p in nodes) - nats_before
    catcher_cpu = (cpu_seconds(pid) - catcher_before) if pid else 0.0
    if catching is not None:
        catching.stop()
    messages = len(batch) + strays
    return {"catcher": catcher, "published_s": round(seconds, 2), "strays_stored": stored,
            "nats_cpu_us_per_message": round(nats_cpu / messages * 1e6, 1),
            "catcher_cpu_us_per_message": round(catcher_cpu / messages * 1e6, 1)}


def main() -> int:
    """Run both and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--strays", type=int, default=300)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-strays-") as tmp:
        cluster = NatsCluster(Path(tmp) / "nats")
        try:
            cluster.start()
            models = ["XS-FL200", "HN-BSD3", "MFS-GW1"]  # QoS 1 topics only: HUB_READINGS
            batch = load_messages(args.messages, args.devices, models=models).messages
            runs = []
            for catcher in (False, True):
                log(f"{'with' if catcher else 'without'} a catcher: {args.messages} QoS 1, "
                    f"{args.strays} QoS 0")
                runs.append(run_once(cluster, batch, args.strays, catcher))
        finally:
            cluster.stop()
    emit({"machine": machine(), "messages": args.messages, "strays": args.strays,
          "runs": runs}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
