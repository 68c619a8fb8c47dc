"""Drain throughput: N messages queued in Mosquitto for the hub's session, hub vs bare paho.

    uv run python bench/drain.py --messages 100000 --json

1. start Mosquitto (unlimited queues) and InfluxDB in a temp dir; register ``--devices`` load
   devices in a site file (rules on: every default rule of every kind is evaluated);
2. create the floor's persistent session (a bare paho subscriber with the hub's filters) and the
   hub's (start ``hub run`` once, stop it);
3. publish N realistic messages (the load templates of all five models, each (device, second)
   unique) while both are away: the broker queues N for each session;
4. start the hub; hub time = from its "MQTT connected" log line to the moment InfluxDB holds
   every point (the hub's count of points InfluxDB acknowledged, polled every 250 ms, with the
   time of the last accepted batch from the hub's own gauge, then confirmed by InfluxQL
   counts); then drain the same N with the floor subscriber (CONNACK to the N-th message,
   acking each).

Prints ``{"hub_rate", "floor_rate", "ratio", ...}`` (msg/s). ``--repeat R`` publishes and drains
R times in the same services and reports each run plus the median. Each run also gives
``cpu_us_per_msg``: CPU time per message of the hub's main process, its children (the MQTT
intake), InfluxDB and Mosquitto, from the hub being ready to the last point (/proc stat). On 2
cores the drain rate is bounded by 2 s / (total µs per message); unlike the rate, this figure
hardly moves when other work shares the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    REPO,
    cpu_snapshot,
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
    written_and_when,
)

FLOOR = Path(__file__).resolve().parent / "_floor.py"


def floor(url: str, mode: str, n: int = 0, timeout: float = 600,
          client_id: str = "bench-floor") -> dict[str, float]:
    """Run the floor subscriber in its own process."""
    args = [sys.executable, str(FLOOR), url, client_id, mode]
    if mode == "drain":
        args += [str(n), str(timeout)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 30, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"floor {mode} failed: {out.stdout} {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--mix", choices=["fleet", "uniform"], default="fleet",
                        help="model shares: the seed fleet's (default) or all alike (stress)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per drain, seconds")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor subscriber")
    parser.add_argument("--py-spy", metavar="FILE", help="record the hub with py-spy (raw)")
    parser.add_argument("--hub-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra hub setting, e.g. batch_size=10000 (no HUB_ prefix)")
    parser.add_argument("--workdir", type=Path, help="keep files here instead of a temp dir")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.hub_env)

    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with services(work) as (broker, influx):
            sites = work / "sites"
            models = mix_models(args.mix)
            write_site(sites, args.devices, models)
            hub = make_hub(work / "hub", broker, influx, sites, **extra)
            if not args.no_floor:
                floor(broker.url, "create")
            log("starting the hub once to create its session")
            hub.start(timeout=120)
            hub.stop()
            runs = []
            start = time.time() - 86400
            for r in range(args.repeat):
                batch = load_messages(args.messages, args.devices, start=start + r * 3600,
                                      models=models)
                before = influx_counts(influx)
                expected = {m: before[m] + c for m, c in batch.points.items()}
                log(f"run {r + 1}: publishing {args.messages} messages "
                    f"({batch.total_points} points)")
                pub_rate = publish_all(broker.url, batch.messages)
                log(f"  published at {pub_rate:.0f} msg/s; starting the hub")
                spawned = time.time()
                hub.start(timeout=120)
                spy = None
                if args.py_spy and hub.proc is not None:
                    spy = subprocess.Popen(
                        ["py-spy", "record", "--pid", str(hub.proc.pid), "--format", "raw",
                         "--rate", "200", "--threads", "--idle", "-o", f"{args.py_spy}.{r}"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                pids = {"influxd": influx.pid, "mosquitto": broker.pid}
                cpu_from = cpu_snapshot(pids, hub.proc.pid if hub.proc else None)
                points_from = written_and_when(hub.api)[0]
                done, _counts = wait_hub_points([hub.api], influx, batch.total_points, expected,
                                                args.timeout)
                cpu_to = cpu_snapshot(pids, hub.proc.pid if hub.proc else None)
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(30)
                connected = hub_connected_at(hub.log_path, after=spawned - 1) or spawned
                hub_s = done - connected
                hub.stop()
                run = {"hub_seconds": round(hub_s, 3),
                       "hub_rate": round(args.messages / hub_s, 1),
                       "hub_rate_incl_startup": round(args.messages / (done - spawned), 1),
                       "publish_rate": round(pub_rate, 1)}
                drained = (batch.total_points - points_from) / batch.total_points * args.messages
                if drained >= args.messages / 10:
                    per_msg = {name: round((cpu_to[name] - cpu_from[name]) / drained * 1e6, 1)
                               for name in cpu_to if name in cpu_from}
                    per_msg["total"] = round(sum(per_msg.values()), 1)
                    run["cpu_us_per_msg"] = per_msg
                if not args.no_floor:
                    f = floor(broker.url, "drain", args.messages, args.timeout)
                    if f["received"] < args.messages:
                        raise RuntimeError(f"floor received only {f['received']}")
                    run["floor_seconds"] = round(f["seconds"], 3)
                    run["floor_rate"] = round(args.messages / f["seconds"], 1)
                    run["ratio"] = round(run["hub_rate"] / run["floor_rate"], 3)
                log(f"  run {r + 1}: {run}")
                runs.append(run)
    result: dict[str, object] = {"messages": args.messages, "devices": args.devices,
                                 "mix": args.mix}
    for key in ("hub_rate", "floor_rate", "ratio"):
        values = [float(run[key]) for run in runs if key in run]
        if values:
            result[key] = round(statistics.median(values), 3 if key == "ratio" else 1)
    result["runs"] = runs
    result["machine"] = machine()
    result["hub_settings"] = extra
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
