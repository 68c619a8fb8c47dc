"""Notification latency under steady load: publish of a breaching reading -> step 1 at a robot.

    uv run python bench/notify_latency.py --rate 2000 --duration 30 --json

The same set-up as bench/latency.py (real Mosquitto, InfluxDB, ``hub run``; ``hub-sim load``
at ``--rate`` msg/s from ``--devices`` registered devices in the background), plus a notify
file whose policy sends step 1 (``after_s: 0``) of every probe alarm to a signed DingTalk
robot: the FAKE DingTalk of tests/support/fake_robots.py on 127.0.0.1, which checks the 加签
signature and the message format. Its rate limit is raised for the probes (``rate``
600/minute on the channel and the fake), since the real 20 a minute would group them and time
the grouping, not the path. Every ``--every`` seconds one probe light, round robin, is
knocked over (tilt 80) or set upright again (the alarm clears; no clear notice). Latency is
from just before ``publish`` to the fake robot's receipt of the message naming that light
(same clock). Prints p50/p90/p99/max (ms) and how many probes went unanswered.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from _common import client, emit, log, machine, make_hub, percentile, services, write_site
from latency import paced_probes, probe_ids, write_probe_site

from simulators.load import run_load
from tests.support.fake_robots import FakeRobots

SECRET = "SECbench"
PROBE = re.compile(r"PB-FL-\d{4}")


def write_notify(path: Path, url: str) -> None:
    """Step 1 of every probe alarm to the fake DingTalk robot, signed."""
    path.write_text(yaml.safe_dump({
        "channels": [{"id": "bench-duty", "type": "dingtalk", "url": url, "secret": SECRET,
                      "rate": {"per_minute": 600}}],
        "people": [{"id": "duty", "name": "值班员", "mobile": "13800000001"}],
        "rosters": [{"site": "probes", "shifts": [{"start": "00:00", "end": "24:00",
                                                   "people": ["duty"]}]}],
        "policies": [{"match": {"site": "probes", "rule": "knocked_over"},
                      "steps": [{"after_s": 0, "channels": ["bench-duty"],
                                 "mention": "on_duty"}]}]}, allow_unicode=True))


def measure(url: str, fake: FakeRobots, robot_key: str, probes: int, every: float,
            duration: float, warmup: float) -> dict[str, Any]:
    """Run the probes; match each raise to the first message naming its light after it."""
    ids = probe_ids(probes)
    raises: list[tuple[str, float]] = []
    pub = client(url)
    measured_from = time.time() + warmup
    for device, breach, topic, body in paced_probes(ids, every, warmup + duration):
        t = time.time()
        pub.publish(topic, body, qos=1)
        if breach:
            raises.append((device, t))
    time.sleep(3.0)
    pub.disconnect()
    pub.loop_stop()
    robot = fake.robots[("dingtalk", robot_key)]
    with fake.lock:
        arrivals = [(m["at"], set(PROBE.findall(m["text"]))) for m in robot.messages]
    latencies: list[float] = []
    unanswered = 0
    used: set[tuple[int, str]] = set()  # a grouped message answers each light it names once
    for device, sent_at in raises:
        if sent_at < measured_from:
            continue
        found = next((i for i, (at, names) in enumerate(arrivals)
                      if (i, device) not in used and at >= sent_at and device in names), None)
        if found is None:
            unanswered += 1
            continue
        used.add((found, device))
        latencies.append((arrivals[found][0] - sent_at) * 1000)
    return {"probes_raised": len(latencies) + unanswered, "unanswered": unanswered,
            "messages": len(arrivals),
            "grouped": sum(1 for _, names in arrivals if len(names) > 1),
            "violations": robot.violations,
            "p50_ms": round(percentile(latencies, 50), 1),
            "p90_ms": round(percentile(latencies, 90), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1) if latencies else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="background msg/s")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--every", type=float, default=0.25, help="seconds between probes")
    parser.add_argument("--hub-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.hub_env)
    fake = FakeRobots()
    robot, url = fake.dingtalk("bench-duty", SECRET)
    robot.per_minute = 10_000
    try:
        with tempfile.TemporaryDirectory(prefix="bench-notify-") as tmp:
            work = Path(tmp)
            with services(work) as (broker, influx):
                sites = work / "sites"
                write_site(sites, args.devices)
                write_probe_site(sites, args.probes)
                notify = work / "notify.yaml"
                write_notify(notify, url)
                hub = make_hub(work / "hub", broker, influx, sites, notify_file=notify, **extra)
                hub.start(timeout=120)
                try:
                    load_result: dict[str, Any] = {}

                    def background() -> None:
                        res = run_load(args.devices, args.rate,
                                       args.warmup + args.duration + 3, broker.url,
                                       processes=1, qos=1)
                        load_result.update(sent=res.sent, acked=res.acked,
                                           rate=round(res.ack_rate, 1))

                    loader = threading.Thread(target=background, daemon=True)
                    loader.start()
                    time.sleep(1.0)
                    log(f"background load {args.rate:.0f} msg/s running; probing")
                    result = measure(broker.url, fake, "bench-duty", args.probes, args.every,
                                     args.duration, args.warmup)
                    loader.join(60)
                    health = hub.health()
                finally:
                    hub.stop()
    finally:
        fake.close()
    result.update(background=load_result, hub_processed=health["pipeline"]["processed"],
                  notify=health.get("notify", {}).get("channels"), machine=machine(),
                  hub_settings=extra)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
