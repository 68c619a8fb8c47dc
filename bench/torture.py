"""Torture: the hub SIGKILLed at random points, InfluxDB down under load; nothing lost.

Long forms (by hand)::

    uv run python bench/torture.py kill --kills 20 --rate 1000 --messages 60000
    uv run python bench/torture.py outage --minutes 10 --rate 1000
    uv run python bench/torture.py outage --minutes 2 --rate 1000 --spool-max-bytes 2000000

Short forms of the same functions run in CI: ``tests/test_torture_kill.py`` and
``tests/test_torture_outage.py``. Exactly once = InfluxDB holds every expected point (one per
series + timestamp; the load messages make each distinct) and not one more.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    client,
    emit,
    influx_counts,
    load_messages,
    log,
    machine,
    make_hub,
    services,
    wait_points,
    write_site,
)

from tests.support.hubproc import HubProcess
from tests.support.services import InfluxServer, MosquittoServer


class Paced(threading.Thread):
    """Publishes messages at a steady rate (QoS 1) in the background; counts broker acks."""

    def __init__(self, url: str, messages: list[tuple[str, bytes]], rate: float) -> None:
        super().__init__(name="paced-publisher", daemon=True)
        self.url, self.messages, self.rate = url, messages, rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            c = client(self.url)
            infos = []
            started = time.monotonic()
            for i, (topic, payload) in enumerate(self.messages):
                ahead = i / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                infos.append(c.publish(topic, payload, qos=1))
                self.sent = i + 1
            for info in infos:
                info.wait_for_publish(timeout=120)
            c.disconnect()
            c.loop_stop()
        except BaseException as exc:  # reported by the caller
            self.error = exc


@dataclass
class TortureResult:
    """What a torture run saw."""

    messages: int
    points: int
    counts: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0
    drain_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        """Every expected point stored, and not one more."""
        return self.counts == self.expected


def kill_loop(work: Path, broker: MosquittoServer, influx: InfluxServer, db: str, *,
              kills: int, messages: int, rate: float, devices: int = 200, seed: int = 0,
              settle: tuple[float, float] = (0.5, 2.5), timeout: float = 120) -> TortureResult:
    """Publish at ``rate`` while the hub is SIGKILLed ``kills`` times at random moments."""
    rng = random.Random(seed)
    sites = work / "sites"
    write_site(sites, devices)
    batch = load_messages(messages, devices)
    before = influx_counts(influx, db)
    expected = {m: before[m] + c for m, c in batch.points.items()}
    hub = make_hub(work / "hub", broker, None, sites, influx_url=influx.url, influx_db=db,
                   mqtt_client_id=f"torture-{seed}")
    result = TortureResult(messages, batch.total_points, expected=expected)
    started = time.monotonic()
    hub.start(timeout=120)
    publisher = Paced(broker.url, batch.messages, rate)
    publisher.start()
    try:
        for k in range(kills):
            time.sleep(rng.uniform(*settle))
            hub.kill()
            result.events.append(f"kill {k + 1} after {publisher.sent} published")
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0.0, 1.0))  # the broker queues for the session
            hub.start(timeout=120)
        publisher.join(timeout)
        if publisher.error is not None:
            raise publisher.error
        t0 = time.monotonic()
        try:
            _, result.counts = wait_points(influx, expected, timeout, db=db)
        except TimeoutError:
            result.counts = influx_counts(influx, db)
        result.drain_s = time.monotonic() - t0
        time.sleep(1.0)  # anything extra (a duplicate with another timestamp) shows up now
        result.counts = influx_counts(influx, db)
    finally:
        hub.stop()
    result.seconds = time.monotonic() - started
    result.extra["hub_log_tail"] = hub.log()[-2000:] if not result.exactly_once else ""
    return result


def outage(work: Path, broker: MosquittoServer, influx: InfluxServer, db: str, *,
           outage_s: float, rate: float, devices: int = 1000, spool_max_bytes: int | None = None,
           kill_while_full: bool = False, timeout: float = 600) -> TortureResult:
    """Load at ``rate``; InfluxDB stopped for ``outage_s``; back; wait for the backlog."""
    sites = work / "sites"
    write_site(sites, devices)
    total = int(rate * (outage_s + 6))
    batch = load_messages(total, devices)
    before = influx_counts(influx, db)
    expected = {m: before[m] + c for m, c in batch.points.items()}
    settings: dict[str, Any] = {"influx_url": influx.url, "influx_db": db,
                                "mqtt_client_id": "torture-outage"}
    if spool_max_bytes is not None:
        settings["spool_max_bytes"] = spool_max_bytes
    hub: HubProcess = make_hub(work / "hub", broker, None, sites, **settings)
    result = TortureResult(total, batch.total_points, expected=expected)
    started = time.monotonic()
    hub.start(timeout=120)
    publisher = Paced(broker.url, batch.messages, rate)
    try:
        publisher.start()
        time.sleep(3)
        influx.stop()
        down_at = time.monotonic()
        result.events.append(f"influx stopped after {publisher.sent} published")
        peak_spool, saw_full = 0, False
        while time.monotonic() - down_at < outage_s:
            try:
                health = hub.health()
            except Exception:  # the API may be slow under load: try again
                time.sleep(0.5)
                continue
            peak_spool = max(peak_spool, int(health["spool"]["bytes"]))
            if "spool" in str(health["store"]["last_error"] or ""):
                saw_full = True
            time.sleep(0.5)
        result.extra.update(peak_spool_bytes=peak_spool, spool_full_seen=saw_full)
        if kill_while_full:
            hub.kill()
            result.events.append("hub SIGKILLed with InfluxDB down")
        influx.start()
        back_at = time.monotonic()
        result.events.append(f"influx back after {back_at - down_at:.0f} s, "
                             f"{publisher.sent} published")
        if kill_while_full:
            hub.start(timeout=120)
        publisher.join(timeout)
        if publisher.error is not None:
            raise publisher.error
        try:
            _, result.counts = wait_points(influx, expected, timeout, db=db)
        except TimeoutError:
            result.counts = influx_counts(influx, db)
        result.drain_s = time.monotonic() - back_at
        result.counts = influx_counts(influx, db)
        # backlog: what arrived during the outage, written after it
        backlog = rate * outage_s
        result.extra["backlog_messages"] = int(backlog)
        result.extra["drain_x_real_time"] = round(outage_s / max(result.drain_s, 1e-9), 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            spool = hub.health()["spool"]
            if not spool["batches"]:
                break
            time.sleep(0.5)
        result.extra["spool_after"] = hub.health()["spool"]
    finally:
        hub.stop()
    result.seconds = time.monotonic() - started
    if not result.exactly_once:
        result.extra["hub_log_tail"] = hub.log()[-2000:]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    k = sub.add_parser("kill", help="SIGKILL the hub at random points under load")
    k.add_argument("--kills", type=int, default=20)
    k.add_argument("--rate", type=float, default=1000)
    k.add_argument("--messages", type=int, default=60_000)
    k.add_argument("--seed", type=int, default=int(time.time()))
    o = sub.add_parser("outage", help="InfluxDB down under load, then back")
    o.add_argument("--minutes", type=float, default=10)
    o.add_argument("--rate", type=float, default=1000)
    o.add_argument("--spool-max-bytes", type=int, default=None)
    o.add_argument("--kill-while-full", action="store_true")
    for p in (k, o):
        p.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-torture-") as tmp:
        work = Path(tmp)
        with services(work) as (broker, influx):
            if args.mode == "kill":
                r = kill_loop(work, broker, influx, "hub", kills=args.kills,
                              messages=args.messages, rate=args.rate, seed=args.seed,
                              settle=(1.0, 4.0), timeout=900)
            else:
                r = outage(work, broker, influx, "hub", outage_s=args.minutes * 60,
                           rate=args.rate, spool_max_bytes=args.spool_max_bytes,
                           kill_while_full=args.kill_while_full, timeout=3600)
    for event in r.events:
        log(event)
    emit({"mode": args.mode, "exactly_once": r.exactly_once, "messages": r.messages,
          "points": r.points, "counts": r.counts, "expected": r.expected,
          "seconds": round(r.seconds, 1), "drain_after_s": round(r.drain_s, 1),
          **r.extra, "args": {k: v for k, v in vars(args).items() if k != "json"},
          "machine": machine()}, args.json)
    return 0 if r.exactly_once else 1


if __name__ == "__main__":
    sys.exit(main())
