"""Alarm latency under steady load: publish of a breaching reading -> alarm on hub/alarms/...

    uv run python bench/latency.py --rate 2000 --duration 30 --json

Background: ``hub-sim load`` (simulators/load.py, its own process, QoS 1) at ``--rate`` msg/s
from ``--devices`` registered load devices (every reading goes through state, rules, batch and
InfluxDB). Probes: ``--probes`` registered XS-FL200 lights; every ``--every`` seconds one of
them, round robin, publishes tilt 80 (knocked_over breach) or, on its next turn, tilt 2 (the
alarm clears). A subscriber on ``hub/alarms/+/+/knocked_over`` times each transition from just
before ``publish`` to its arrival (same clock). Prints p50/p90/p99/max (ms) of the raises and
of the clears, and how many probes went unanswered.
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

import orjson
import yaml
from _common import (
    client,
    emit,
    log,
    machine,
    make_hub,
    percentile,
    services,
    write_site,
)

from simulators.load import run_load
from simulators.models.xs_fl200 import Fl200Telemetry


def probe_ids(n: int) -> list[str]:
    """Registered probe lights."""
    return [f"PB-FL-{i:04d}" for i in range(n)]


def write_probe_site(sites: Path, n: int) -> None:
    """A second site file with the probe lights (no active hours: mode rules stay quiet)."""
    doc = {"site": "probes", "name": "探针", "name_en": "Latency probes",
           "devices": [{"id": d, "model": "XS-FL200"} for d in probe_ids(n)]}
    (sites / "probes.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def payload(tilt: float, ts_ms: int) -> bytes:
    """A normal XS-FL200 report with the given tilt."""
    return Fl200Telemetry(ts_ms, "flash", "ok", 12600, 18020, tilt, 1.5, charging=True,
                          veh_count=3, temp_c=21.5).encode()


def paced_probes(ids: list[str], every: float, seconds: float) -> Iterator[
        tuple[str, bool, str, bytes]]:
    """Every ``every`` s for ``seconds``: (light, breach?, topic, payload), round robin.

    Each light alternates a breach (tilt 80) and a clear (tilt 2), with a timestamp above its
    previous one, so the hub never takes a probe for a duplicate.
    """
    breached = dict.fromkeys(ids, False)
    last_ts = dict.fromkeys(ids, 0)
    start = next_at = time.monotonic()
    k = 0
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += every
        device = ids[k % len(ids)]
        k += 1
        breach = not breached[device]
        breached[device] = breach
        ts = max(int(time.time() * 1000), last_ts[device] + 1)
        last_ts[device] = ts
        yield (device, breach, f"roadsafety/flashlight/{device}/telemetry",
               payload(80.0 if breach else 2.0, ts))


def measure(url: str, probes: int, every: float, duration: float,
            warmup: float) -> dict[str, Any]:
    """Run the probes for ``duration`` seconds; return latencies (ms) by transition."""
    ids = probe_ids(probes)
    sent: dict[tuple[str, str], list[float]] = {}
    got: dict[str, list[float]] = {"raise": [], "clear": []}
    lock = threading.Lock()
    stamps: list[float] = []

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        arrived = time.time()
        if not msg.payload:
            return
        body = orjson.loads(msg.payload)
        kind = {"active_unack": "raise", "cleared_unack": "clear"}.get(body.get("state"))
        if kind is None:
            return
        with lock:
            queue = sent.get((body["device_id"], kind))
            if queue:
                t = queue.pop(0)
                if t >= stamps[0]:
                    got[kind].append((arrived - t) * 1000)

    sub = client(url)
    sub.on_message = on_message
    sub.subscribe("hub/alarms/+/+/knocked_over", qos=1)
    time.sleep(0.5)
    pub = client(url)
    stamps.append(time.time() + warmup)
    n_sent = 0
    for device, breach, topic, body in paced_probes(ids, every, warmup + duration):
        kind = "raise" if breach else "clear"
        with lock:
            t = time.time()
            sent.setdefault((device, kind), []).append(t)
        pub.publish(topic, body, qos=1)
        if t >= stamps[0]:
            n_sent += 1
    time.sleep(2.0)
    pub.disconnect()
    pub.loop_stop()
    sub.disconnect()
    sub.loop_stop()
    out: dict[str, Any] = {"probes_sent": n_sent,
                           "answered": len(got["raise"]) + len(got["clear"])}
    for kind, values in got.items():
        out[kind] = {"n": len(values),
                     "p50_ms": round(percentile(values, 50), 1),
                     "p90_ms": round(percentile(values, 90), 1),
                     "p99_ms": round(percentile(values, 99), 1),
                     "max_ms": round(max(values), 1) if values else None}
    both = got["raise"] + got["clear"]
    out["p50_ms"] = round(percentile(both, 50), 1)
    out["p99_ms"] = round(percentile(both, 99), 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="background msg/s")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--every", type=float, default=0.05, help="seconds between probes")
    parser.add_argument("--hub-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.hub_env)
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = Path(tmp)
        with services(work) as (broker, influx):
            sites = work / "sites"
            write_site(sites, args.devices)
            write_probe_site(sites, args.probes)
            hub = make_hub(work / "hub", broker, influx, sites, **extra)
            hub.start(timeout=120)
            try:
                load_result: dict[str, Any] = {}

                def background() -> None:
                    res = run_load(args.devices, args.rate, args.warmup + args.duration + 3,
                                   broker.url, processes=1, qos=1)
                    load_result.update(sent=res.sent, acked=res.acked,
                                       rate=round(res.ack_rate, 1))

                loader = threading.Thread(target=background, daemon=True)
                loader.start()
                time.sleep(1.0)
                log(f"background load {args.rate:.0f} msg/s running; probing")
                result = measure(broker.url, args.probes, args.every, args.duration,
                                 args.warmup)
                loader.join(60)
                health = hub.health()
            finally:
                hub.stop()
    result.update(background=load_result, batch_interval_s=extra.get("batch_interval_s", 0.2),
                  hub_processed=health["pipeline"]["processed"],
                  hub_queue_at_end=health["pipeline"]["queued"], machine=machine(),
                  hub_settings=extra)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
