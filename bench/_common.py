"""Shared helpers of the benchmarks: real services, a load site, realistic messages, counting.

Every benchmark starts its own Debian ``mosquitto`` and ``influxd``
(``tests/support/services.py``) on free ports in a temp dir and runs the real ``hub run`` as a
child process (``tests/support/hubproc.py``). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from simulators.load import _stamp, load_devices, template, write_load_site  # noqa: E402
from tests.support.hubproc import HubProcess  # noqa: E402
from tests.support.services import InfluxServer, MosquittoServer  # noqa: E402

# Points each load message becomes (the MFS and YK templates carry two extinguisher slots).
POINTS_PER_MESSAGE = {"XS-FL200": 1, "HN-BSD3": 1, "PT-NFC1": 1, "MFS-GW1": 3, "YK-FS8": 3}
# One counted field per measurement that every load message of it carries.
COUNT_QUERIES = {
    "flashing_light": 'SELECT count("battery_v") FROM "flashing_light"',
    "patrol_scan": 'SELECT count("tag_uid") FROM "patrol_scan"',
    "fire_station": 'SELECT count("battery_pct") FROM "fire_station"',
    "extinguisher": 'SELECT count("present") FROM "extinguisher"',
}


def machine() -> dict[str, Any]:
    """nproc, CPU model and the date: printed with every result."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "date": time.strftime("%Y-%m-%d %H:%M")}


def log(text: str) -> None:
    """Progress to stderr (stdout is for the result)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@contextmanager
def services(workdir: Path, influx: bool = True) -> Iterator[tuple[MosquittoServer, Any]]:
    """A started Mosquitto (unlimited queues) and InfluxDB with database ``hub``."""
    broker = MosquittoServer(workdir / "mosquitto")
    broker.start()
    server = None
    try:
        if influx:
            server = InfluxServer(workdir / "influx")
            server.start()
            server.create_database("hub")
        yield broker, server
    finally:
        if server is not None:
            server.close()
        broker.stop()


def write_site(sites_dir: Path, devices: int, models: list[str] | None = None) -> None:
    """A site file registering the load devices (what ``hub-sim load --write-site`` writes)."""
    sites_dir.mkdir(parents=True, exist_ok=True)
    write_load_site(sites_dir / "load.yaml", devices, models)


@dataclass(frozen=True)
class Batch:
    """Messages to publish and the points they must become per measurement."""

    messages: list[tuple[str, bytes]]
    points: dict[str, int]

    @property
    def total_points(self) -> int:
        """All points of the batch."""
        return sum(self.points.values())


# Message shares of the seed townships' fleet (sites/*.yaml: 180 XS-FL200 every 60 s,
# 120 HN-BSD3 every 300 s, 4 MFS-GW1 every 30 s, 3 YK-FS8 every 60 s, 9 patrol readers with a
# few hundred scans a day): the realistic mix. "uniform" is every model alike (a stress mix:
# patrol scans are then 20 % of the traffic instead of ~0.2 %).
FLEET_SHARES = {"XS-FL200": 835, "HN-BSD3": 111, "MFS-GW1": 37, "YK-FS8": 14, "PT-NFC1": 3}


def mix_models(mix: str) -> list[str] | None:
    """The ``models`` list for load_devices/write_load_site: round robin over it."""
    if mix == "uniform":
        return None
    if mix != "fleet":
        raise ValueError(f"unknown mix {mix!r}: fleet or uniform")
    order: list[str] = []
    remaining = dict(FLEET_SHARES)
    # interleave so every prefix has about the right shares
    total = sum(remaining.values())
    credit = dict.fromkeys(remaining, 0.0)
    for _ in range(total):
        for m in credit:
            credit[m] += FLEET_SHARES[m] / total
        pick = max((m for m in credit if remaining[m]), key=lambda m: credit[m])
        credit[pick] -= 1
        remaining[pick] -= 1
        order.append(pick)
    return order


_MEASUREMENT = {"XS-FL200": "flashing_light", "HN-BSD3": "flashing_light",
                "PT-NFC1": "patrol_scan", "MFS-GW1": "fire_station", "YK-FS8": "fire_station"}


def load_messages(n: int, devices: int, start: float | None = None,
                  models: list[str] | None = None) -> Batch:
    """``n`` realistic messages (the load templates) round robin over ``devices`` devices.

    Device k's j-th message is stamped ``start + j`` seconds, so every (device, time) is unique
    and every message is a distinct point. ``start`` defaults to now minus enough hours.
    """
    devs = load_devices(devices, models)
    temps = [template(m, d, i) for i, (m, d) in enumerate(devs)]
    rounds = (n + devices - 1) // devices
    t0 = start if start is not None else time.time() - rounds - 3600
    out: list[tuple[str, bytes]] = []
    points: dict[str, int] = dict.fromkeys(COUNT_QUERIES, 0)
    for j in range(n):
        k = j % devices
        topic, before, after, style = temps[k]
        out.append((topic, before + _stamp(style, t0 + j // devices) + after))
        model = devs[k][0]
        points[_MEASUREMENT[model]] += 1
        if POINTS_PER_MESSAGE[model] == 3:
            points["extinguisher"] += 2
    return Batch(out, points)


def influx_counts(server: InfluxServer, db: str = "hub") -> dict[str, int]:
    """Points per measurement in InfluxDB (InfluxQL count)."""
    counts: dict[str, int] = {}
    for name, q in COUNT_QUERIES.items():
        body = server.query(q, db=db)
        series = body["results"][0].get("series") or []
        counts[name] = int(series[0]["values"][0][1]) if series else 0
    return counts


def wait_points(server: InfluxServer, expected: dict[str, int], timeout: float,
                poll: float = 0.25, db: str = "hub") -> tuple[float, dict[str, int]]:
    """Poll until every count reaches expected; return (wall time it did, counts)."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    last_total, last_log = -1, 0.0
    while time.monotonic() < deadline:
        counts = influx_counts(server, db)
        if all(counts[m] >= c for m, c in expected.items()):
            return time.time(), counts
        total = sum(counts.values())
        if time.monotonic() - last_log > 5 and total != last_total:
            log(f"  influx has {total} / {sum(expected.values())} points")
            last_total, last_log = total, time.monotonic()
        time.sleep(poll)
    raise TimeoutError(f"not all points arrived within {timeout:.0f} s: {counts} / {expected}")


def _hub_metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def written_and_when(api: str) -> tuple[float, float]:
    """The hub's ``hub_points_written_total`` and the Unix time of its last accepted batch."""
    import httpx

    text = httpx.get(f"{api}/metrics", timeout=5).text
    return (_hub_metric(text, "hub_points_written_total"),
            _hub_metric(text, "hub_store_last_write_timestamp_seconds"))


def wait_hub_points(apis: list[str], server: InfluxServer, new_points: int,
                    expected: dict[str, int], timeout: float,
                    db: str = "hub") -> tuple[float, dict[str, int]]:
    """Wall time every expected point was in InfluxDB, without loading InfluxDB or the hubs.

    Polls the hubs' written-points counters every 250 ms (each starts at 0 with its hub
    process) until their sum reaches ``new_points``; the time InfluxDB acknowledged the last of
    them is the latest of the hubs' own ``hub_store_last_write_timestamp_seconds``, so the poll
    interval adds no error. Then InfluxQL counts confirm every expected point is there; if the
    counters ran ahead (alarm or status points the hubs add) the counts are polled on and their
    time is taken.
    Polling InfluxQL COUNTs every 250 ms during the drain (``wait_points``) cost InfluxDB CPU
    that the hub, on the same 2 cores, then lacked; polling /metrics every 20 ms cost the hub
    ~12 % of its samples (py-spy).
    """
    deadline = time.monotonic() + timeout
    done = None
    while time.monotonic() < deadline:
        figures = [written_and_when(api) for api in apis]
        if sum(written for written, _ in figures) >= new_points:
            done = max(when for _, when in figures)
            break
        time.sleep(0.25)
    counts = influx_counts(server, db)
    if done is not None and all(counts[m] >= c for m, c in expected.items()):
        return done, counts
    return wait_points(server, expected, max(1.0, deadline - time.monotonic()), db=db)


def client(url: str, client_id: str | None = None, *, v5: bool = True, clean: bool = True,
           manual_ack: bool = False) -> paho.Client:
    """A connected paho client with its network thread running."""
    from hub.intake.paho_client import parse_mqtt_url

    parsed = parse_mqtt_url(url)
    c = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"bench-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        manual_ack=manual_ack,
    )
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    connected = threading.Event()
    c.on_connect = lambda *_a: connected.set()
    c.connect(parsed.host, parsed.port, clean_start=clean if v5 else 3)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"cannot connect to {url}")
    return c


def publish_all(url: str, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> float:
    """Publish as fast as the broker acknowledges; return msg/s."""
    c = client(url)
    started = time.monotonic()
    infos = []
    count = 0
    for topic, payload in messages:
        while True:
            info = c.publish(topic, payload, qos=qos)
            if info.rc == paho.MQTT_ERR_SUCCESS:
                break
            time.sleep(0.001)
        infos.append(info)
        count += 1
    for info in infos:
        info.wait_for_publish(timeout=120)
    elapsed = time.monotonic() - started
    c.disconnect()
    c.loop_stop()
    return count / elapsed if elapsed else 0.0


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*MQTT connected")


def hub_connected_at(log_path: Path, after: float = 0.0) -> float | None:
    """Wall time of the hub's last "MQTT connected" log line after ``after`` (epoch s)."""
    found = None
    for line in log_path.read_text(errors="replace").splitlines():
        m = _LOG_TIME.match(line)
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            t += int(m.group(2)) / 1000
            if t >= after:
                found = t
    return found


def make_hub(workdir: Path, broker: MosquittoServer, influx: InfluxServer | None,
             sites_dir: Path, **settings: Any) -> HubProcess:
    """A HubProcess wired to the bench services (not started)."""
    workdir.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"mqtt_url": broker.url, "sites_dir": sites_dir,
                             "mqtt_client_id": settings.pop("mqtt_client_id", "bench-hub")}
    if influx is not None:
        extra.update(influx_url=influx.url, influx_db="hub")
    extra.update(settings)
    return HubProcess(workdir, **extra)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of one process in MB (0, 0 when it is gone)."""
    values = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0, 0.0
    for line in lines:
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, rest = line.split(":", 1)
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def pss_mb(pid: int) -> float:
    """Proportional set size of one process in MB (from /proc/<pid>/smaps_rollup; 0 if gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    """Direct children of a process: /proc/<pid>/task/*/children, else a scan of /proc."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    readable = False
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
            readable = True
        except OSError:
            continue
    if readable:
        return found
    for entry in Path("/proc").iterdir():  # kernels without CONFIG_PROC_CHILDREN
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (children, grandchildren, ...), the process first."""
    tree, todo = [pid], [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in tree:
                tree.append(child)
                todo.append(child)
    return tree


def tree_rss_mb(pid: int) -> dict[str, Any]:
    """RSS of a process and all its descendants: the sum, the main process alone, per child.

    ``rss_mb`` / ``peak_rss_mb`` are sums over the tree (VmRSS, VmHWM); pages shared between
    processes (a fork's copy-on-write pages) count once per process, so the sum is an upper
    bound. ``pss_mb`` sums the proportional set size instead (a shared page split between the
    processes that map it), the fairer figure for the tree. ``main_*`` is the process alone;
    ``children`` lists each descendant's VmRSS.
    """
    tree = process_tree(pid)
    figures = [(p, *rss_mb(p)) for p in tree]
    pss = [pss_mb(p) for p in tree]
    main = figures[0]
    return {
        "rss_mb": round(sum(f[1] for f in figures), 1),
        "pss_mb": round(sum(pss), 1),
        "main_pss_mb": round(pss[0], 1),
        "peak_rss_mb": round(sum(f[2] for f in figures), 1),
        "main_rss_mb": round(main[1], 1),
        "main_peak_rss_mb": round(main[2], 1),
        "processes": len(figures),
        "children": {str(p): round(rss, 1) for p, rss, _ in figures[1:]},
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int | None], hub_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of named processes, the hub's main process and each of its children."""
    snap = {name: cpu_seconds(pid) for name, pid in pids.items() if pid is not None}
    if hub_pid is not None:
        tree = process_tree(hub_pid)
        snap["hub_main"] = cpu_seconds(tree[0])
        snap["hub_children"] = sum(cpu_seconds(p) for p in tree[1:])
    return snap


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    """min / median / max of repeated measurements."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def emit(result: dict[str, Any], as_json: bool) -> None:
    """Print the result (JSON with --json, else key: value lines)."""
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
