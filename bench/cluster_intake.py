"""The cluster intake alone: CPU per message of draining JetStream into ``InboundMessage``s.

    uv run python bench/cluster_intake.py --messages 30000 --json

A 3-node nats-server cluster (``tests.support.nats``), N fleet-mix messages published QoS 1
over the nodes' MQTT listeners while no hub runs (the partition consumers keep them), then one
``ClusterIntake`` in this process takes the 16 partitions and a loop stands in for the
pipeline: ``receive`` and ``ack_many`` of every batch at once (no normalizing, no storage).
CPU is this process's, from the intake taking its partitions to the last message handed on;
it is what the hub's main process pays for the cluster intake on top of the pipeline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, load_messages, log, machine, mix_models
from scaleout import publish_over

from hub.cluster.handover import Request
from hub.cluster.intake import ClusterIntake
from hub.settings import Settings
from tests.support.nats import NatsCluster


class _Handover:
    """Adopts and releases at once (no rule state to load in this bench)."""

    def ask(self, action: str, partitions: frozenset[int]) -> Request:
        """A request already done."""
        request = Request(action, partitions)
        request.done.set()
        return request


def run(messages: int, devices: int, mix: str, timeout: float) -> dict[str, Any]:
    """One measurement."""
    with tempfile.TemporaryDirectory(prefix="bench-cluster-intake-") as tmp:
        cluster = NatsCluster(Path(tmp) / "nats")
        try:
            cluster.start()
            batch = load_messages(messages, devices, models=mix_models(mix))
            log(f"publishing {messages} over 3 nodes")
            publish_over([n.mqtt_url for n in cluster.nodes], batch.messages)
            settings = Settings(cluster_url=cluster.urls, node_id="bench", data_dir=Path(tmp))
            intake = ClusterIntake(settings)
            intake.handover = _Handover()  # type: ignore[assignment]
            intake.start(wait_s=30)
            got = 0
            deadline = time.monotonic() + timeout
            first = cpu0 = t0 = 0.0
            while got < messages and time.monotonic() < deadline:
                out = intake.receive(0.5)
                if out and not first:
                    first, cpu0, t0 = 1.0, time.process_time(), time.monotonic()
                got += len(out)
                intake.ack_many([m.ack_token for m in out])
            cpu, seconds = time.process_time() - cpu0, time.monotonic() - t0
            intake.stop()
        finally:
            cluster.stop()
    if got < messages:
        raise SystemExit(f"only {got} of {messages} messages in {timeout:g} s")
    return {"messages": got, "seconds": round(seconds, 2), "rate": round(got / seconds, 1),
            "cpu_us_per_message": round(cpu / got * 1e6, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--mix", choices=["fleet", "uniform"], default="fleet")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.messages, args.devices, args.mix, args.timeout)
    emit({"mix": args.mix, **result, "machine": machine()}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
