"""The hub beside its peers: the same queue drained by the hub, the bare paho floor and Node-RED.

    uv run python bench/peers.py --messages 100000 --repeat 3 --json

One Mosquitto (``max_inflight_messages 65535``, ``max_queued_messages 0``: without the first,
Mosquitto holds an MQTT 3.1.1 or 5 client to 20 messages in flight, which throttles Node-RED and
paho alike) and one InfluxDB; ``--devices`` XS-FL200 lights in a site file (rules on). Each
consumer has its own persistent session, created before the messages are published, so the
broker queues every message once per consumer; then, one after another (the order rotates from
run to run), each consumer connects and drains its queue:

- ``hub``: the real ``hub run`` (``--hub-env`` for settings), into a fresh InfluxDB database;
  timed from its "MQTT connected" log line to the time InfluxDB accepted its last batch (the
  hub's ``hub_store_last_write_timestamp_seconds``), as ``bench/drain.py`` does;
- ``floor``: ``bench/_floor.py``, a bare paho subscriber that acks and counts, writes nothing;
  timed from CONNACK to the last message;
- ``node-red``: Node-RED 4 with the flow a competent user would build, installed with npm into
  ``~/.cache/hub-bench/node-red`` on first use (skipped, with the reason, where ``node`` or
  ``npm`` is missing): ``mqtt in`` (QoS 1, MQTT 5, persistent session, parsed JSON) ->
  ``function`` (one line of line protocol) -> ``join`` (5,000 lines or 0.2 s) -> ``function``
  (join the lines) -> ``http request`` POST /write, into a fresh database; ``--node-red-flow
  influx`` uses node-red-contrib-influxdb's ``influxdb batch`` node instead of the HTTP request.
  Timed from its "Connected to broker" log entry (a logging handler in its settings prints the
  entry's millisecond timestamp) to the time InfluxDB answered its last write (a function node
  after the write keeps the count and the time, read through an ``http in`` endpoint every
  250 ms), then confirmed by InfluxQL counts.

Prints each consumer's rate per run, the ratios ``hub / node_red`` and ``hub / floor`` per run
and their medians, and CPU microseconds per message of each consumer's processes, InfluxDB and
Mosquitto during its drain (``cpu_us_per_msg``, from /proc: it hardly moves when other work
shares the machine, unlike the rates); ``hub_vs_node_red_per_cpu`` is Node-RED's total over
the hub's: how many more messages the hub's chain handles per CPU second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    cpu_seconds,
    cpu_snapshot,
    emit,
    hub_connected_at,
    load_messages,
    log,
    machine,
    make_hub,
    publish_all,
    wait_hub_points,
    wait_points,
    write_site,
    written_and_when,
)
from drain import floor

from tests.support.services import InfluxServer, MosquittoServer, free_port

NODE_RED_VERSION = "4.1.15"
INFLUXDB_NODE_VERSION = "0.7.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hub-bench" / "node-red"
MODEL = "XS-FL200"
TOPIC = "roadsafety/flashlight/+/telemetry"
CLIENT_IDS = {"hub": "bench-peers-hub", "floor": "bench-peers-floor",
              "node-red": "bench-peers-nodered"}


class PeersMosquitto(MosquittoServer):
    """The bench's Mosquitto with the in-flight window the issue names (65535, not unlimited)."""

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text().replace("max_inflight_messages 0",
                                                    "max_inflight_messages 65535")
        self.config_path.write_text(text)


# ---------------------------------------------------------------------------------- Node-RED

def node_red_install() -> tuple[Path | None, str]:
    """Node-RED and node-red-contrib-influxdb in the cache folder: (red.js, "") or (None, why)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "node or npm not on PATH (Debian: apt-get install nodejs npm)"
    red = CACHE / "node_modules" / "node-red" / "red.js"
    influx_node = CACHE / "node_modules" / "node-red-contrib-influxdb" / "package.json"
    if red.exists() and influx_node.exists():
        return red, ""
    CACHE.mkdir(parents=True, exist_ok=True)
    package = CACHE / "package.json"
    if not package.exists():
        package.write_text('{"name": "hub-bench-node-red", "private": true}\n')
    log(f"installing node-red@{NODE_RED_VERSION} and node-red-contrib-influxdb into {CACHE}")
    out = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", f"node-red@{NODE_RED_VERSION}",
         f"node-red-contrib-influxdb@{INFLUXDB_NODE_VERSION}"],
        cwd=CACHE, capture_output=True, text=True, timeout=900)
    if out.returncode != 0 or not red.exists():
        return None, f"npm install failed: {out.stderr[-1500:]}"
    return red, ""


# One line of line protocol per message: the fields the hub stores for an XS-FL200 telemetry
# message, the device as a tag, the device's own millisecond timestamp.
_TO_LINE = r"""
const p = msg.payload;
const id = msg.topic.split("/")[2];
msg.payload = "flashing_light,device_id=" + id + ",model=XS-FL200 mode=\"" + p.mode +
    "\",lamp=\"" + p.lamp + "\",battery_v=" + (p.battery_mv / 1000) + ",solar_v=" +
    (p.solar_mv / 1000) + ",charging=" + p.charging + ",tilt_deg=" + p.tilt_deg +
    ",flash_hz=" + p.flash_hz + ",vehicle_count=" + p.veh_count + "i,temp_c=" + p.temp_c +
    " " + p.ts;
return msg;
"""
_TO_POINT = r"""
const p = msg.payload;
msg.payload = {measurement: "flashing_light",
    tags: {device_id: msg.topic.split("/")[2], model: "XS-FL200"},
    fields: {mode: p.mode, lamp: p.lamp, battery_v: p.battery_mv / 1000,
             solar_v: p.solar_mv / 1000, charging: p.charging, tilt_deg: p.tilt_deg,
             flash_hz: p.flash_hz, vehicle_count: p.veh_count, temp_c: p.temp_c},
    timestamp: new Date(p.ts)};
return msg;
"""
_JOIN_LINES = r"""
msg.lines = msg.payload.length;
msg.payload = msg.payload.join("\n");
msg.headers = {"content-type": "text/plain"};
return msg;
"""
_COUNT_WRITTEN = r"""
if (msg.statusCode !== undefined && msg.statusCode !== 204) {
    node.warn("write failed: " + msg.statusCode + " " + msg.payload);
    return null;
}
const s = global.get("bench") || {written: 0, last_ms: 0, failed: 0};
s.written += msg.lines;
s.last_ms = Date.now();
global.set("bench", s);
return null;
"""
_COUNT_BATCH = r"""
const s = global.get("bench") || {written: 0, last_ms: 0, failed: 0};
if (msg.error) { s.failed += 1; } else { s.written += msg.lines; s.last_ms = Date.now(); }
global.set("bench", s);
return null;
"""


def node_red_flow(broker_port: int, influx_url: str, db: str, kind: str) -> list[dict[str, Any]]:
    """The flow: mqtt in -> function -> join -> (http request | influxdb batch) -> count."""
    def fn(node_id: str, code: str, wires: list[str]) -> dict[str, Any]:
        return {"id": node_id, "type": "function", "z": "tab", "func": code, "outputs": 1,
                "timeout": 0, "noerr": 0, "initialize": "", "finalize": "", "libs": [],
                "wires": [wires]}

    join = {"id": "join", "type": "join", "z": "tab", "mode": "custom", "build": "array",
            "property": "payload", "propertyType": "msg", "key": "topic", "joiner": "\\n",
            "joinerType": "str", "useparts": False, "accumulate": False, "timeout": "0.2",
            "count": "5000", "reduceRight": False, "wires": [["lines"]]}
    nodes: list[dict[str, Any]] = [
        {"id": "tab", "type": "tab", "label": "bench"},
        {"id": "broker", "type": "mqtt-broker", "name": "bench", "broker": "127.0.0.1",
         "port": str(broker_port), "clientid": CLIENT_IDS["node-red"], "autoConnect": True,
         "usetls": False, "protocolVersion": "5", "keepalive": "30", "cleansession": False,
         "autoUnsubscribe": False, "sessionExpiry": "86400", "birthTopic": "",
         "closeTopic": "", "willTopic": "", "userProps": ""},
        {"id": "in", "type": "mqtt in", "z": "tab", "topic": TOPIC, "qos": "1",
         "datatype": "json", "broker": "broker", "nl": False, "rap": True, "rh": 0,
         "inputs": 0, "wires": [["convert"]]},
        {"id": "stats", "type": "http in", "z": "tab", "url": "/bench", "method": "get",
         "upload": False, "wires": [["stats_fn"]]},
        fn("stats_fn", 'msg.payload = global.get("bench") || {written: 0, last_ms: 0};\n'
           "return msg;", ["stats_out"]),
        {"id": "stats_out", "type": "http response", "z": "tab", "statusCode": "",
         "headers": {}, "wires": []},
    ]
    if kind == "http":
        nodes += [
            fn("convert", _TO_LINE, ["join"]),
            join,
            fn("lines", _JOIN_LINES, ["write"]),
            {"id": "write", "type": "http request", "z": "tab", "method": "POST", "ret": "txt",
             "paytoqs": "ignore", "url": f"{influx_url}/write?db={db}&precision=ms",
             "persist": True, "senderr": False, "headers": [], "wires": [["count"]]},
            fn("count", _COUNT_WRITTEN, []),
        ]
    elif kind == "influx":
        nodes += [
            fn("convert", _TO_POINT, ["join"]),
            {**join, "wires": [["lines"]]},
            fn("lines", "msg.lines = msg.payload.length;\nreturn msg;", ["write"]),
            {"id": "influxcfg", "type": "influxdb", "hostname": "127.0.0.1",
             "port": influx_url.rsplit(":", 1)[1], "protocol": "http", "database": db,
             "name": "bench", "usetls": False, "tls": "", "influxdbVersion": "1.x"},
            {"id": "write", "type": "influxdb batch", "z": "tab", "influxdb": "influxcfg",
             "precision": "ms", "retentionPolicy": "", "name": "", "wires": []},
            {"id": "done", "type": "complete", "z": "tab", "scope": ["write"],
             "uncaught": False, "wires": [["count"]]},
            {"id": "failed", "type": "catch", "z": "tab", "scope": ["write"],
             "uncaught": False, "wires": [["count"]]},
            fn("count", _COUNT_BATCH, []),
        ]
    else:
        raise ValueError(f"unknown Node-RED flow {kind!r}: http or influx")
    for i, node in enumerate(nodes):
        if "z" in node:  # a flow node has a position; without one Node-RED takes it for config
            node.update(x=100 + 150 * (i % 6), y=100 + 80 * (i // 6))
    return nodes


_SETTINGS_JS = """\
module.exports = {
    uiPort: %(port)d,
    uiHost: "127.0.0.1",
    flowFile: "flows.json",
    credentialSecret: false,
    httpAdminRoot: false,
    logging: {
        console: {level: "warn", metrics: false, audit: false},
        bench: {
            level: "info", metrics: false, audit: false,
            handler: function () {
                return function (msg) {
                    const text = typeof msg.msg === "string" ? msg.msg : "";
                    if (text.indexOf("Connected to broker") >= 0) {
                        process.stdout.write("BENCH_CONNECTED " + msg.timestamp + "\\n");
                    }
                };
            }
        }
    }
};
"""


class NodeRed:
    """Node-RED in its own user dir: started per drain with a fresh flow, stopped with SIGINT."""

    def __init__(self, red: Path, workdir: Path) -> None:
        self.red = red
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "node-red.log"

    def start(self, flow: list[dict[str, Any]]) -> float:
        """Start with ``flow``; return the wall time (s) it was connected to the broker."""
        (self.dir / "flows.json").write_text(json.dumps(flow))
        (self.dir / "settings.js").write_text(_SETTINGS_JS % {"port": self.port})
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                ["node", str(self.red), "--userDir", str(self.dir), "--settings",
                 str(self.dir / "settings.js")], stdout=out, stderr=subprocess.STDOUT,
                cwd=self.dir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                for line in f.read().decode(errors="replace").splitlines():
                    if line.startswith("BENCH_CONNECTED "):
                        return int(line.split()[1]) / 1000
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"Node-RED did not connect:\n{self.log_path.read_text()[-3000:]}")

    def stats(self) -> dict[str, float]:
        """The flow's count of written lines and the time of the last accepted write (ms)."""
        body: dict[str, float] = httpx.get(f"http://127.0.0.1:{self.port}/bench",
                                           timeout=5).json()
        return body

    def stop(self) -> None:
        """SIGINT: Node-RED closes its flows and disconnects (the session stays)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def wait_node_red(node_red: NodeRed, influx: InfluxServer, n: int, db: str,
                  timeout: float) -> float:
    """Wall time InfluxDB accepted Node-RED's n-th line, confirmed by an InfluxQL count."""
    deadline = time.monotonic() + timeout
    last_log = time.monotonic()
    while time.monotonic() < deadline:
        stats = node_red.stats()
        if stats.get("written", 0) >= n:
            done = stats["last_ms"] / 1000
            wait_points(influx, {"flashing_light": n}, max(1.0, deadline - time.monotonic()),
                        db=db)
            return float(done)
        if time.monotonic() - last_log > 5:
            log(f"  node-red has written {stats.get('written', 0)} / {n}")
            last_log = time.monotonic()
        time.sleep(0.25)
    raise TimeoutError(f"Node-RED wrote {node_red.stats()} of {n} in {timeout:.0f} s")


# ---------------------------------------------------------------------------------- drains

def _cpu_per_msg(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    per = {k: round((after[k] - before[k]) / n * 1e6, 1) for k in after if k in before}
    per["total"] = round(sum(per.values()), 1)
    return per


def drain_hub(hub: Any, broker: MosquittoServer, influx: InfluxServer, n: int, db: str,
              timeout: float) -> dict[str, Any]:
    """Start the hub on a fresh database, wait for every point, stop it."""
    influx.create_database(db)
    hub.settings["HUB_INFLUX_DB"] = db
    spawned = time.time()
    hub.start(timeout=120)
    pids = {"influxd": influx.pid, "mosquitto": broker.pid}
    cpu_from = cpu_snapshot(pids, hub.proc.pid)
    points_from = written_and_when(hub.api)[0]
    done, _ = wait_hub_points([hub.api], influx, n, {"flashing_light": n}, timeout, db=db)
    cpu_to = cpu_snapshot(pids, hub.proc.pid)
    connected = hub_connected_at(hub.log_path, after=spawned - 1) or spawned
    hub.stop()
    seconds = done - connected
    result: dict[str, Any] = {"seconds": round(seconds, 3), "rate": round(n / seconds, 1)}
    if n - points_from >= n / 10:
        result["cpu_us_per_msg"] = _cpu_per_msg(cpu_from, cpu_to, int(n - points_from))
    return result


def drain_floor(broker: MosquittoServer, n: int, timeout: float) -> dict[str, Any]:
    """The paho floor subscriber drains its session (CONNACK to the n-th message)."""
    before = {"mosquitto": cpu_seconds(broker.pid)}
    f = floor(broker.url, "drain", n, timeout, client_id=CLIENT_IDS["floor"])
    if f["received"] < n:
        raise RuntimeError(f"floor received only {f['received']}")
    result: dict[str, Any] = {"seconds": round(f["seconds"], 3),
                              "rate": round(n / f["seconds"], 1)}
    result["cpu_us_per_msg"] = {
        "floor": f.get("cpu_us_per_msg", 0.0),
        "mosquitto": round((cpu_seconds(broker.pid) - before["mosquitto"]) / n * 1e6, 1)}
    return result


def drain_node_red(node_red: NodeRed, broker: MosquittoServer, influx: InfluxServer, n: int,
                   db: str, kind: str, timeout: float) -> dict[str, Any]:
    """Start Node-RED with the flow on a fresh database, wait for every point, stop it."""
    influx.create_database(db)
    pids = {"influxd": influx.pid, "mosquitto": broker.pid}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    connected = node_red.start(node_red_flow(broker.port, influx.url, db, kind))
    assert node_red.proc is not None
    node_pid = node_red.proc.pid
    # from its connect (seen within 50 ms), so its start-up is not counted, as for the hub
    before["node_red"] = cpu_seconds(node_pid)
    done = wait_node_red(node_red, influx, n, db, timeout)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    after["node_red"] = cpu_seconds(node_pid)
    node_red.stop()
    seconds = done - connected
    return {"seconds": round(seconds, 3), "rate": round(n / seconds, 1),
            "cpu_us_per_msg": _cpu_per_msg(before, after, n)}


def create_sessions(hub: Any, broker: MosquittoServer, influx: InfluxServer,
                    node_red: NodeRed | None, kind: str) -> None:
    """Every consumer connects once, subscribes and leaves: the broker keeps its session."""
    floor(broker.url, "create", client_id=CLIENT_IDS["floor"])
    log("starting the hub once to create its session")
    hub.start(timeout=120)
    hub.stop()
    if node_red is not None:
        log("starting Node-RED once to create its session")
        influx.create_database("nodered_session")
        node_red.start(node_red_flow(broker.port, influx.url, "nodered_session", kind))
        time.sleep(2.0)  # its SUBSCRIBE follows the CONNACK it logged
        node_red.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="per drain, seconds")
    parser.add_argument("--node-red-flow", choices=["http", "influx"], default="http")
    parser.add_argument("--no-node-red", action="store_true", help="hub and floor only")
    parser.add_argument("--hub-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra hub setting, e.g. mqtt_client=paho (no HUB_ prefix)")
    parser.add_argument("--workdir", type=Path, help="keep files here instead of a temp dir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.hub_env)

    red, why = (None, "--no-node-red") if args.no_node_red else node_red_install()
    if red is None:
        log(f"Node-RED skipped: {why}")

    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        broker = PeersMosquitto(work / "mosquitto")
        broker.start()
        influx = InfluxServer(work / "influx")
        influx.start()
        node_red = NodeRed(red, work / "node-red") if red is not None else None
        try:
            sites = work / "sites"
            write_site(sites, args.devices, [MODEL])
            hub = make_hub(work / "hub", broker, influx, sites,
                           mqtt_client_id=CLIENT_IDS["hub"], **extra)
            influx.create_database("hub_session")
            hub.settings["HUB_INFLUX_DB"] = "hub_session"
            create_sessions(hub, broker, influx, node_red, args.node_red_flow)
            consumers = ["hub", "floor"] + (["node-red"] if node_red is not None else [])
            runs = []
            start = time.time() - 86400
            for r in range(args.repeat):
                batch = load_messages(args.messages, args.devices, start=start + r * 3600,
                                      models=[MODEL])
                log(f"run {r + 1}: publishing {args.messages} messages")
                pub_rate = publish_all(broker.url, batch.messages)
                run: dict[str, Any] = {"publish_rate": round(pub_rate, 1)}
                order = consumers[r % len(consumers):] + consumers[:r % len(consumers)]
                run["order"] = order
                for name in order:
                    log(f"  draining: {name}")
                    if name == "hub":
                        run["hub"] = drain_hub(hub, broker, influx, args.messages,
                                               f"hub_r{r + 1}", args.timeout)
                    elif name == "floor":
                        run["floor"] = drain_floor(broker, args.messages, args.timeout)
                    else:
                        assert node_red is not None
                        run["node_red"] = drain_node_red(
                            node_red, broker, influx, args.messages, f"nodered_r{r + 1}",
                            args.node_red_flow, args.timeout)
                    log(f"    {name}: {run[name.replace('-', '_')]}")
                run["hub_vs_floor"] = round(run["hub"]["rate"] / run["floor"]["rate"], 3)
                if "node_red" in run:
                    run["hub_vs_node_red"] = round(run["hub"]["rate"] / run["node_red"]["rate"],
                                                   3)
                    run["node_red_vs_floor"] = round(
                        run["node_red"]["rate"] / run["floor"]["rate"], 3)
                    # messages per CPU second of the whole chain (consumer, InfluxDB, Mosquitto):
                    # what the rates would be on a machine the chain saturates
                    if "cpu_us_per_msg" in run["hub"]:
                        run["hub_vs_node_red_per_cpu"] = round(
                            run["node_red"]["cpu_us_per_msg"]["total"]
                            / run["hub"]["cpu_us_per_msg"]["total"], 3)
                log(f"  run {r + 1}: hub/floor {run['hub_vs_floor']}, hub/node-red "
                    f"{run.get('hub_vs_node_red', '-')}")
                runs.append(run)
        finally:
            if node_red is not None:
                node_red.stop()
            influx.close()
            broker.stop()

    result: dict[str, Any] = {"messages": args.messages, "devices": args.devices,
                              "model": MODEL, "node_red_flow": args.node_red_flow}
    if red is None:
        result["node_red_skipped"] = why
    for key in ("hub", "floor", "node_red"):
        rates = [run[key]["rate"] for run in runs if key in run]
        if rates:
            result[f"{key}_rate"] = round(statistics.median(rates), 1)
    for key in ("hub_vs_floor", "hub_vs_node_red", "node_red_vs_floor",
                "hub_vs_node_red_per_cpu"):
        ratios = [run[key] for run in runs if key in run]
        if ratios:
            result[key] = round(statistics.median(ratios), 3)
    result["runs"] = runs
    result["machine"] = machine()
    result["hub_settings"] = extra
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
