"""Hub memory with 100,000 registered devices that have each reported once.

    uv run python bench/memory.py --devices 100000 --json

Writes a site file registering ``--devices`` load devices (all five models, fleet or uniform
mix), starts the real ``hub run`` against Mosquitto and InfluxDB, reads its RSS, publishes one
message per device (so every device has state, rule state and a series), waits until InfluxDB
holds every point and the hub's state has been saved, then reads VmRSS and VmHWM (peak) from
/proc for the hub process and all its descendants (the MQTT intake may run in a child process).
Goal: the sum over the process tree <= 300 MB.

Result keys: ``rss_idle_mb`` (registered, none reported) and ``rss_mb`` (every device reported
once: the goal's figure) are sums over the hub's process tree; ``main_rss_idle_mb`` and
``main_rss_mb`` are the ``hub run`` process alone; ``pss_idle_mb`` / ``pss_mb`` (and
``main_pss_mb``) sum the proportional set size from /proc/<pid>/smaps_rollup, which counts a
page shared between the processes once (the goal is judged on the summed RSS);
``peak_rss_mb`` sums VmHWM over the tree;
``processes`` counts the tree and ``children`` gives each descendant's VmRSS.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import (
    emit,
    load_messages,
    log,
    machine,
    make_hub,
    mix_models,
    publish_all,
    rss_mb,
    services,
    tree_rss_mb,
    wait_points,
    write_site,
)


def largest_mappings(pid: int, count: int = 12) -> list[str]:
    """The process's mappings with the most RSS (from /proc/<pid>/smaps), as "MB name" lines."""
    found: list[tuple[float, str]] = []
    name, rss = "", 0.0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            if rss:
                found.append((rss, name))
            name, rss = (head[5] if len(head) > 5 else f"[anon {head[0]}]"), 0.0
        elif line.startswith("Rss:"):
            rss = int(head[1]) / 1024
    if rss:
        found.append((rss, name))
    found.sort(reverse=True)
    return [f"{mb:.1f} {where}" for mb, where in found[:count]]


def _paced(messages: list[tuple[str, bytes]], rate: float) -> Iterator[tuple[str, bytes]]:
    """The messages at no more than ``rate`` per second (checked every 100)."""
    started = time.monotonic()
    for i, message in enumerate(messages):
        if i % 100 == 0:
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        yield message


class _Sampler(threading.Thread):
    """Samples the main process's RSS and the pipeline's queue depth during the drain."""

    def __init__(self, hub: Any, pid: int) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.hub, self.pid = hub, pid
        self.done = threading.Event()
        self.max_main_rss = 0.0
        self.max_queued = 0

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.max_main_rss = max(self.max_main_rss, round(rss_mb(self.pid)[0], 1))
            try:
                queued = int(self.hub.health()["pipeline"]["queued"])
            except Exception:  # the API is busy or restarting: skip this sample
                continue
            self.max_queued = max(self.max_queued, queued)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self.done.set()
        self.join(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--mix", choices=["fleet", "uniform"], default="uniform")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after the drain")
    parser.add_argument("--hub-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--smaps", action="store_true",
                        help="also report the main process's largest mappings (RSS by mapping)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="publish at most this many msg/s (0: as fast as the broker takes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.hub_env)
    result: dict[str, Any] = {"devices": args.devices, "mix": args.mix}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        with services(work) as (broker, influx):
            models = mix_models(args.mix)
            sites = work / "sites"
            write_site(sites, args.devices, models)
            size = (sites / "load.yaml").stat().st_size
            log(f"site file: {args.devices} devices, {size / 1e6:.1f} MB")
            hub = make_hub(work / "hub", broker, influx, sites, **extra)
            started = time.monotonic()
            hub.start(timeout=600)
            result["startup_s"] = round(time.monotonic() - started, 1)
            assert hub.proc is not None
            pid = hub.proc.pid
            idle = tree_rss_mb(pid)
            result.update(rss_idle_mb=idle["rss_mb"], main_rss_idle_mb=idle["main_rss_mb"],
                          pss_idle_mb=idle["pss_mb"], processes_idle=idle["processes"])
            log(f"hub up in {result['startup_s']} s, RSS {idle['rss_mb']} MB "
                f"(main {idle['main_rss_mb']} MB, {idle['processes']} process(es))")
            sampler = _Sampler(hub, pid)
            try:
                batch = load_messages(args.devices, args.devices, models=models)
                sampler.start()
                if args.rate > 0:
                    result["rate"] = args.rate
                    publish_all(broker.url, _paced(batch.messages, args.rate))
                else:
                    publish_all(broker.url, batch.messages)
                wait_points(influx, batch.points, timeout=900)
                sampler.stop()
                result.update(drain_max_main_rss_mb=sampler.max_main_rss,
                              drain_max_pipeline_queued=sampler.max_queued)
                time.sleep(args.settle)  # state saves, rule-state saves, alarms flushed
                health = hub.health()
                result.update(tree_rss_mb(pid))
                if args.smaps:
                    result["main_mappings"] = largest_mappings(pid)
                result.update(devices_seen=health["devices"]["seen"],
                              registered=health["devices"]["registered"],
                              processed=health["pipeline"]["processed"])
            finally:
                hub.stop(timeout=120)
    result["goal_mb"] = 300
    result["machine"] = machine()
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
