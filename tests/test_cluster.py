"""Hubs sharing a real 3-node NATS JetStream cluster (config from ``hub cluster nats-config``):
partitions by device, leases with failover, rule state handed over, exactly once in InfluxDB.

Devices publish MQTT QoS 1 to the nodes' MQTT listeners; ``hub run`` processes consume the
partitioned stream; PostgreSQL is shared. Every wait polls state with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _common import client, influx_counts, load_messages, write_site  # type: ignore[import-not-found]  # noqa: E402

from hub.cluster.partition import partition_of  # noqa: E402
from simulators.load import load_devices  # noqa: E402
from tests.support.cluster import (  # noqa: E402
    PARTITIONS,
    alarms_of,
    balanced,
    make_hub,
    owners,
    publish_now,
    start_all,
    tilt,
    wait_for,
)
from tests.support.hubproc import HubProcess  # noqa: E402
from tests.support.nats import NatsCluster  # noqa: E402

ALARM_DEVICE = "LD-FL-000000"  # the first load device (XS-FL200); its tilt raises knocked_over
OTHER_DEVICE = "LD-FL-000003"  # another XS-FL200 of the load site (its owner may be either hub)
TAKEOVER_S = 15.0
# a patrol reader in the alarm device's partition: its owner is the hub killed in step 2
READER = next(f"PT-HO-{i:04d}" for i in range(1000)
              if partition_of(f"PT-HO-{i:04d}", PARTITIONS) == partition_of(ALARM_DEVICE,
                                                                            PARTITIONS))
TAGS = [f"04C0FFEE{i:04X}" for i in range(4)]
# a second route read by READER (its first reader: READER's owner runs its rounds) and by one
# reader in each other partition; the test scans with one its other hub owns
SPLIT_READERS = [next(f"PT-HS-{i:04d}" for i in range(1000)
                      if partition_of(f"PT-HS-{i:04d}", PARTITIONS) == p)
                 for p in range(PARTITIONS) if p != partition_of(READER, PARTITIONS)]
SPLIT_TAGS = [f"04C0FFEF{i:04X}" for i in range(4)]
# a device's new value on a hub that does not hold it: HUB_CLUSTER_VIEW_S (0.5 s) plus the
# holder's pipeline (batching, a tick of 0.25 s) plus a NATS hop, with room for a loaded machine
VIEW_BOUND_S = 5.0


def write_patrol_site(sites: Path, started: datetime) -> None:
    """A site with two routes of four checkpoints, HO-RT read by READER, HS-RT by READER and
    SPLIT_READERS, their windows open since ``started`` (start + 15 min grace already past,
    so a hub checks the rounds at once)."""
    window = [{"start": f"{started:%H:%M}", "window_min": 240}]
    doc = {"site": "handover", "name": "巡查交接", "timezone": "UTC",
           "devices": [{"id": r, "model": "PT-NFC1"} for r in [READER, *SPLIT_READERS]],
           "checkpoints": [{"id": f"{prefix}-CP{i}", "tag_uid": tag, "name": f"cp {i}"}
                           for prefix, tags in (("HO", TAGS), ("HS", SPLIT_TAGS))
                           for i, tag in enumerate(tags)],
           "routes": [{"id": "HO-RT", "name": "handover route", "order": "any",
                       "checkpoints": [f"HO-CP{i}" for i in range(len(TAGS))],
                       "readers": [READER], "rounds": window},
                      {"id": "HS-RT", "name": "split route", "order": "any",
                       "checkpoints": [f"HS-CP{i}" for i in range(len(SPLIT_TAGS))],
                       "readers": [READER, *SPLIT_READERS], "rounds": window}]}
    (sites / "handover.yaml").write_text(json.dumps(doc), encoding="utf-8")  # YAML reads JSON


def scan(checkpoint: int, t_s: float, reader: str = READER,
         tags: list[str] = TAGS) -> tuple[str, bytes]:
    """A reader's scan of a checkpoint at device time ``t_s``."""
    body = {"reader": reader, "tag_uid": tags[checkpoint], "patroller": "P1",
            "ts": datetime.fromtimestamp(t_s, UTC).isoformat(), "lat": 29.0, "lon": 111.7,
            "battery_pct": 80}
    return f"patrol/{reader}/scan", json.dumps(body).encode()


def the_round(hub: HubProcess, started: datetime, route: str = "HO-RT") -> dict[str, Any]:
    """A route's round of ``started`` as the hub's API shows it."""
    rounds = hub.get("/api/patrol/rounds", site="handover", date=f"{started:%Y-%m-%d}",
                     route=route)
    found: dict[str, Any] = next(r for r in rounds if r["start"] == f"{started:%H:%M}")
    return found


def alarm(hub: HubProcess, device: str, alarm_id: str) -> dict[str, Any]:
    """One alarm as the hub lists it (a list writes what the hub holds in memory first)."""
    return next(x for x in alarms_of(hub, device) if x["id"] == alarm_id)


def finish(*publishers: Paced, timeout: float = 90.0) -> None:
    """Wait until every publisher has all its messages acknowledged by the cluster."""
    for p in publishers:
        p.join(timeout)
        assert not p.is_alive(), f"publisher stuck at {p.sent} of {len(p.messages)}"
        assert p.error is None, p.error


class Paced(threading.Thread):
    """Publishes (topic, payload) pairs at a rate over MQTT 3.1.1 QoS 1; waits for every ack."""

    def __init__(self, url: str, messages: list[tuple[str, bytes]], rate: float) -> None:
        super().__init__(name="paced", daemon=True)
        self.url, self.messages, self.rate = url, messages, rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            c = client(self.url, v5=False)
            acked: set[int] = set()
            c.on_publish = lambda _c, _u, mid, *_rest: acked.add(mid)
            infos = []
            started = time.monotonic()
            for i, (topic, payload) in enumerate(self.messages):
                ahead = i / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                # while the node drops the connection (a store it could not make) paho queues
                # the message and sends it again after reconnecting, like a device would
                infos.append(c.publish(topic, payload, qos=1))
                self.sent = i + 1
            deadline = time.monotonic() + 120
            mids = {info.mid for info in infos}  # is_published() raises for a queued one
            while not mids <= acked:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(mids - acked)} of {len(mids)} unacked")
                time.sleep(0.05)
            c.disconnect()
            c.loop_stop()
        except BaseException as exc:  # reported by the test
            self.error = exc


def seen_by(hub: HubProcess) -> set[str]:
    """Devices this hub holds live state for (the ones it handled)."""
    body = hub.get("/api/devices", limit=100_000)
    name = hub.settings["HUB_NODE_ID"]
    return {d["device_id"] for d in body["items"]
            if d.get("last_seen") and d.get("held_by") == name}


def shown_by(hub: HubProcess) -> dict[str, str | None]:
    """Every device with live values on this hub's /api/devices -> the hub holding it."""
    body = hub.get("/api/devices", limit=100_000)
    return {d["device_id"]: d.get("held_by") for d in body["items"] if d.get("last_seen")}


class Sse(threading.Thread):
    """A live event stream (GET /api/events) of a hub, read in a thread: (event, item) pairs."""

    def __init__(self, hub: HubProcess) -> None:
        super().__init__(name="sse", daemon=True)
        self.url = f"{hub.api}/api/events"
        self.headers = hub._headers()
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.hello = threading.Event()
        self.error: BaseException | None = None
        self._response: Any = None

    def run(self) -> None:
        import httpx

        try:
            with httpx.stream("GET", self.url, headers=self.headers,
                              timeout=httpx.Timeout(5, read=None)) as response:
                self._response = response
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event:
                        if event == "hello":
                            self.hello.set()
                        else:
                            data = json.loads(line[5:])
                            items = data if isinstance(data, list) else [data]
                            self.items += [(event, item) for item in items]
                        event = ""
        except BaseException as exc:  # closed by the test, or a failure it reports
            self.error = exc

    def alarms(self, device: str, action: str) -> list[dict[str, Any]]:
        """The alarm events of a device with this action received so far."""
        return [i for e, i in self.items
                if e == "alarm" and i.get("device_id") == device and i.get("action") == action]

    def close(self) -> None:
        """End the stream."""
        if self._response is not None:
            with contextlib.suppress(Exception):
                self._response.close()


class Watch:
    """An MQTT 3.1.1 subscriber (QoS 0: no JetStream consumer of its own) on one NATS node."""

    def __init__(self, url: str, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = client(url, v5=False)
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, bytes(m.payload), bool(m.retain)))
        done = threading.Event()
        self.client.on_subscribe = lambda *_a: done.set()
        self.client.subscribe([(t, 0) for t in topics])
        assert done.wait(10), "no SUBACK"

    def got(self, topic: str, check: Callable[[bytes], bool]) -> list[bytes]:
        """Payloads received on a topic that pass ``check``."""
        return [p for t, p, _r in list(self.messages) if t == topic and check(p)]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def publish_qos0(url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 0, as a device whose firmware differs from its profile; return once
    the node has read them (the PUBACK of a QoS 1 publish after them: one stream, in order)."""
    c = client(url, v5=False)
    try:
        for topic, payload in messages:
            c.publish(topic, payload, qos=0)
        done = c.publish("hub-test/qos0-flush", b"", qos=1)  # PUBACK: everything before it read
        done.wait_for_publish(timeout=30)
    finally:
        c.disconnect()
        c.loop_stop()


def strays_stored(hubs: list[HubProcess], expected: int) -> Callable[[], list[int] | None]:
    """A check: the hubs' catchers' stored counts, once they add up to ``expected`` (the
    catchers report once a second)."""
    def check() -> list[int] | None:
        counts = [h.get("/api/cluster")["strays"]["stored"] for h in hubs]
        return counts if sum(counts) >= expected else None
    return check

def time_until(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check`` is true (polled every 20 ms); fails at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            if check():
                return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s")


def exactly(influx: Any, expected: dict[str, int]) -> Callable[[], dict[str, int] | None]:
    """A check: InfluxDB holds exactly the expected points (fails fast on more)."""
    def check() -> dict[str, int] | None:
        counts = influx_counts(influx.server, influx.name)
        over = {m: c for m, c in counts.items() if c > expected.get(m, 0)}
        assert not over, f"more points than published: {counts} > {expected}"
        if counts == expected:
            return counts
        check.last = counts  # type: ignore[attr-defined]  # shown at the deadline
        return None
    return check


def test_nats_config_maps_every_profile_topic_into_partitions(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hub.cli", "cluster", "nats-config", "--partitions", "8",
         "--node-name", "n1", "--listen", "127.0.0.1:4222", "--mqtt-listen", "127.0.0.1:1883",
         "--cluster-listen", "127.0.0.1:6222", "--routes", "nats-route://10.0.0.2:6222",
         "--store-dir", str(tmp_path / "js")], capture_output=True, text=True, check=True).stdout
    assert 'server_name: "n1"' in out and "jetstream {" in out and "mqtt {" in out
    assert '"nats-route://10.0.0.2:6222"' in out
    assert "stream_replicas: 3" in out  # the MQTT side survives a node
    for prefix, source in (("hubp", "roadsafety.flashlight.*.telemetry"),
                           ("hubp", "roadsafety.flashlight.*.status"),
                           ("hubp", "firestation.*.status"), ("hubp", "patrol.*.scan"),
                           ("hubp", "hnbsd.*.up"), ("hubq", "yk.*.data")):  # YK-FS8: QoS 0
        wild = source.replace("*", "{{wildcard(1)}}")
        destination = f'"{prefix}.{{{{partition(8,1)}}}}.{wild}"'
        assert f'"{source}": {destination}' in out, source


def test_hubs_share_partitions_fail_over_and_rebalance_exactly_once(
    tmp_path: Path, nats_cluster: NatsCluster, pg_url: str, influx_db: Any
) -> None:
    """One scenario (one cluster, so the file stays short in CI):

    1. two hubs split the 16 partitions; load over two nodes plus an alarm raised across many
       readings of one device, and QoS 1 topics published at QoS 0 through the third node:
       exactly once in InfluxDB, each device handled by one hub;
    2. the alarm device's hub SIGKILLed mid-stream: the other owns every partition within
       15 s, nothing lost, and it clears the alarm raised before the kill (no duplicate);
    3. the NATS node leading $MQTT_msgs (where QoS 1 messages are stored), which is also the
       node the hubs' MQTT publishers are on, killed mid-stream, a hub added: partitions
       rebalance over both hubs, nothing lost, both take a share; the survivor's publisher
       fails over to the next node of its HUB_MQTT_URL list, and a subscriber of another node
       gets its hub/status, its open alarm again and its next retained alarm.

    Throughout, the hub that does not hold a device shows it: its /api/devices has the
    device's latest values (within VIEW_BOUND_S) and its /api/events streams the alarms.
    """
    sites = tmp_path / "sites"
    models = ["XS-FL200", "HN-BSD3", "MFS-GW1"]
    write_site(sites, 60, models)
    started = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    write_patrol_site(sites, started)
    # both publishers start on the node leading $MQTT_msgs: the node phase 3 kills
    home = node_index(nats_cluster, stream_leader(nats_cluster, "$MQTT_msgs"))
    a = make_hub(tmp_path, "hub-a", nats_cluster, pg_url, influx_db, sites, mqtt_node=home)
    b = make_hub(tmp_path, "hub-b", nats_cluster, pg_url, influx_db, sites, mqtt_node=home)
    hubs = {"hub-a": a, "hub-b": b}
    sse: Sse | None = None
    watch: Watch | None = None
    try:
        start_all(a, b)
        table = wait_for("16 partitions split over both hubs", balanced([a, b]), 40)
        assert a.health()["status"] == "ok"
        wait_for("both stray catchers subscribed", lambda: all(
            h.health()["cluster"]["strays"]["connected"] for h in (a, b)), 30)
        holder = hubs[str(table[partition_of(ALARM_DEVICE, PARTITIONS)])]
        viewer = b if holder is a else a
        sse = stream = Sse(viewer)  # the hub not holding the alarm device streams its alarms
        stream.start()
        assert stream.hello.wait(20), stream.error

        # 1. Load over two nodes, and an alarm raised on one device across many readings.
        now = time.time()
        first = load_messages(1200, 60, start=now - 7200, models=models)
        raise_msgs = [tilt(ALARM_DEVICE, now - 900 + i, 20.0 + i % 3) for i in range(30)]
        raise_msgs += [tilt(OTHER_DEVICE, now - 900 + i, 25.0) for i in range(3)]
        scans = [scan(0, now - 120), scan(1, now - 110)]  # a round begun on READER's owner
        finish(*[p for p in (
            Paced(nats_cluster.nodes[0].mqtt_url, first.messages[:600] + raise_msgs + scans,
                  2000),
            Paced(nats_cluster.nodes[1].mqtt_url, first.messages[600:], 2000)) if not p.start()])
        # QoS 1 topics published at QoS 0 ("strays": not in $MQTT_msgs), caught and stored
        strays = load_messages(120, 60, start=now - 9000, models=models)
        publish_qos0(nats_cluster.nodes[2].mqtt_url, strays.messages)
        expected = dict(first.points)
        expected["flashing_light"] += len(raise_msgs)
        expected["patrol_scan"] += len(scans)
        for measurement, count in strays.points.items():
            expected[measurement] += count
        wait_for("phase 1 points exactly once", exactly(influx_db, expected), 40)
        caught = wait_for("the catchers' counts", strays_stored([a, b], len(strays.messages)),
                          20)
        # each stored once (a second catcher's copy would show here, not in InfluxDB, which
        # keeps one point of a series and time however often it is written)
        lost = [h.get("/api/cluster")["strays"]["lost"] for h in (a, b)]
        assert sum(caught) == len(strays.messages) and lost == [0, 0], (caught, lost)
        assert any(strays.messages[0][0] in h.log_path.read_text(errors="replace")
                   for h in (a, b)), "a stray's topic named in a hub's log"
        raised = wait_for("the alarm raised once", lambda: [
            x for x in alarms_of(a, ALARM_DEVICE) if x["rule"] == "knocked_over"], 20)
        assert len(raised) == 1 and raised[0]["state"] == "active_unack", raised
        assert raised[0]["count"] >= 2  # one alarm, repeated: the readings met one rule state
        begun = wait_for("the round under way", lambda: the_round(a, started)["done"] == 2 and
                         the_round(a, started), 20)
        assert begun["state"] == "in_progress", begun
        # 1a. A route whose readers are in different partitions: the round's row has one
        # writer, READER's owner, which counts the other hub's reader's scans too (READER's
        # owner holds the round when the other reader's scans come).
        second = next(r for r in SPLIT_READERS if table[partition_of(r, PARTITIONS)]
                      != table[partition_of(READER, PARTITIONS)])
        for done, reader, cps in ((1, READER, (0,)), (3, second, (1, 3)), (4, READER, (2,))):
            publish_now(nats_cluster.nodes[done % 2].mqtt_url, [
                scan(i, now - 100 + i, reader, SPLIT_TAGS) for i in cps])
            wait_for(f"{done} of the split route's scans stored", lambda n=done: the_round(
                a, started, "HS-RT")["done"] == n, 20)
        expected["patrol_scan"] += 4
        split = wait_for("the split route's round completed by its owner", lambda: all(
            the_round(h, started, "HS-RT")["state"] == "completed" for h in (a, b))
            and the_round(a, started, "HS-RT"), 20)
        assert split["done"] == 4, split
        seen = {name: seen_by(h) for name, h in hubs.items()}
        assert seen["hub-a"] and seen["hub-b"] and not seen["hub-a"] & seen["hub-b"]
        for name, devices in seen.items():
            for device in devices:
                assert table[partition_of(device, PARTITIONS)] == name, device

        # 1b. Officer actions on the hub that does not own the device stick on the owner.
        owner = hubs[table[partition_of(ALARM_DEVICE, PARTITIONS)] or ""]
        elsewhere = b if owner is a else a
        alarm_id = raised[0]["id"]
        assert elsewhere.post(f"/api/alarms/{alarm_id}/ack")["state"] == "active_ack"
        elsewhere.post(f"/api/alarms/{alarm_id}/assign", {"assignee": "li"})
        other = wait_for("the other device's alarm", lambda: [
            x for x in alarms_of(a, OTHER_DEVICE) if x["rule"] == "knocked_over"], 20)[0]
        other_owner = hubs[table[partition_of(OTHER_DEVICE, PARTITIONS)] or ""]
        other_elsewhere = b if other_owner is a else a
        other_elsewhere.post(f"/api/alarms/{other['id']}/clear", {"note": "seen upright"})
        repeats = [tilt(ALARM_DEVICE, now - 800 + i, 21.0) for i in range(20)]
        repeats += [tilt(OTHER_DEVICE, now - 800 + i, 2.0) for i in range(3)]  # upright again
        finish(*[p for p in (Paced(nats_cluster.nodes[1].mqtt_url, repeats, 1000),)
                 if not p.start()])
        expected["flashing_light"] += len(repeats)
        wait_for("the repeats exactly once", exactly(influx_db, expected), 30)
        held = owner.get(f"/api/alarms/{alarm_id}")  # the owner's memory
        assert held["state"] == "active_ack" and held["assignee"] == "li", held
        assert held["count"] >= raised[0]["count"] + 20, held  # the repeats counted
        stored = alarm(owner, ALARM_DEVICE, alarm_id)  # after the owner wrote its repeats
        assert stored["state"] == "active_ack" and stored["acked_by"] == "ops", stored
        assert stored["assignee"] == "li" and stored["count"] == held["count"], stored
        cleared_by_hand = alarm(other_owner, OTHER_DEVICE, other["id"])
        assert cleared_by_hand["state"] == "cleared_unack", cleared_by_hand
        assert cleared_by_hand["cleared_by"] == "ops", cleared_by_hand  # not the rule's clear
        # the condition clears on the owner: the acknowledged alarm is closed (cleared_ack);
        # then the device tilts again: a new alarm, the one step 2 follows
        again = [tilt(ALARM_DEVICE, now - 700 + i, 2.0) for i in range(5)]
        again += [tilt(ALARM_DEVICE, now - 600 + i, 20.0) for i in range(10)]
        finish(*[p for p in (Paced(nats_cluster.nodes[0].mqtt_url, again, 1000),)
                 if not p.start()])
        expected["flashing_light"] += len(again)
        wait_for("the clear and the new breach exactly once", exactly(influx_db, expected), 30)
        closed = alarm(owner, ALARM_DEVICE, alarm_id)
        assert closed["state"] == "cleared_ack" and closed["assignee"] == "li", closed
        history = elsewhere.get(f"/api/alarms/{alarm_id}")["history"]
        assert [(h["action"], h["actor"], h["hub"], h["to_state"]) for h in history] == [
            ("raise", "system", owner.settings["HUB_NODE_ID"], "active_unack"),
            ("ack", "ops", elsewhere.settings["HUB_NODE_ID"], "active_ack"),
            ("assign", "ops", elsewhere.settings["HUB_NODE_ID"], "active_ack"),
            ("clear", "system", owner.settings["HUB_NODE_ID"], "cleared_ack")], history
        raised = wait_for("a new alarm after the closed one", lambda: [
            x for x in alarms_of(a, ALARM_DEVICE)
            if x["rule"] == "knocked_over" and x["id"] != alarm_id], 20)
        assert len(raised) == 1 and raised[0]["state"] == "active_unack", raised

        # 1c. Every hub shows every device, with the hub holding it; both alarms on the other
        # hub's live stream, each raised once; a new value on the other hub within the bound.
        every = seen["hub-a"] | seen["hub-b"]
        shown = wait_for("both hubs showing every device with values", lambda: all(
            shown_by(h) == {d: table[partition_of(d, PARTITIONS)] for d in every}
            for h in (a, b)), VIEW_BOUND_S + 5)
        assert shown
        both = {alarm_id, raised[0]["id"]}
        wait_for("the alarms on the other hub's event stream", lambda: both <= {
            x["id"] for x in stream.alarms(ALARM_DEVICE, "raise")}, 20)
        assert console_online(a) == console_online(b) == len(every)  # the console's status
        lags = []
        for i, value in enumerate((31.0, 32.0, 33.0)):
            publish_now(nats_cluster.nodes[1].mqtt_url,
                        [tilt(ALARM_DEVICE, now - 560 + i, value)])
            lags.append(time_until(lambda v=value: viewer.get(
                f"/api/devices/{ALARM_DEVICE}")["values"]["tilt_deg"] == v, VIEW_BOUND_S))
        expected["flashing_light"] += 3
        print(f"\nview lag (PUBACK to the value on the other hub's API): "
              f"{', '.join(f'{x:.2f}' for x in lags)} s")
        view = viewer.get(f"/api/devices/{ALARM_DEVICE}")
        assert view["held_by"] == holder.settings["HUB_NODE_ID"] and view["online"] is True
        raises = [x["id"] for x in stream.alarms(ALARM_DEVICE, "raise")]
        assert sorted(raises) == sorted(both), raises  # each event once
        counts = viewer.get("/api/cluster")["view"]
        assert counts["rows_received"] and counts["events_received"], counts

        # 2. SIGKILL the alarm device's owner mid-stream.
        victim_name = table[partition_of(ALARM_DEVICE, PARTITIONS)]
        assert victim_name is not None
        victim = hubs[victim_name]
        survivor = b if victim is a else a
        second = load_messages(1500, 60, start=now - 5400, models=models)
        paced = Paced(nats_cluster.nodes[2].mqtt_url, second.messages, 300)
        paced.start()
        wait_for("the stream under way", lambda: paced.sent > 300, 20)
        victim.kill()
        killed_at = time.monotonic()
        wait_for("the survivor owning and fetching every partition",
                 lambda: set(owners(survivor).values()) == {survivor.settings["HUB_NODE_ID"]}
                 and survivor.health()["cluster"]["active"] == list(range(PARTITIONS)),
                 TAKEOVER_S + 10)
        took = time.monotonic() - killed_at
        assert took <= TAKEOVER_S, f"takeover took {took:.1f} s"
        clear_msgs = [tilt(ALARM_DEVICE, now - 300 + i, 2.0) for i in range(10)]
        scans = [scan(2, now - 60), scan(3, now - 50)]  # the round goes on on the new owner
        clearer = Paced(nats_cluster.nodes[0].mqtt_url, clear_msgs + scans, 200)
        clearer.start()
        finish(paced, clearer)
        for measurement, count in second.points.items():
            expected[measurement] += count
        expected["flashing_light"] += len(clear_msgs)
        expected["patrol_scan"] += len(scans)
        wait_for("every point exactly once after the kill", exactly(influx_db, expected), 60)
        cleared = wait_for("the alarm cleared by the new owner", lambda: [
            x for x in alarms_of(survivor, ALARM_DEVICE)
            if x["rule"] == "knocked_over" and x["state"] == "cleared_unack"], 30)
        alarms = [x for x in alarms_of(survivor, ALARM_DEVICE)
                  if x["rule"] == "knocked_over" and x["id"] != alarm_id]
        assert len(alarms) == 1 and cleared[0]["id"] == raised[0]["id"], alarms  # no duplicate
        finished = wait_for("the round finished on the new owner", lambda: the_round(
            survivor, started)["state"] == "completed" and the_round(survivor, started), 20)
        assert finished["done"] == 4, finished
        assert finished["checkpoints"][0]["scanned_at"] == begun["checkpoints"][0]["scanned_at"]
        assert survivor.health()["status"] == "ok"

        # 3. Kill the node leading $MQTT_msgs, the survivor's MQTT publisher's node, while
        # devices publish to another; add a hub.
        dead = home
        lead_on(nats_cluster, "$MQTT_msgs", nats_cluster.nodes[dead].name)
        assert publisher_port(survivor) == nats_cluster.nodes[dead].mqtt_port
        alive = [i for i in range(3) if i != dead]
        status_topic = f"hub/status/{survivor.settings['HUB_NODE_ID']}"
        watch = w = Watch(nats_cluster.nodes[alive[1]].mqtt_url, [status_topic, "hub/alarms/#"])
        wait_for("the survivor's retained status", lambda: w.got(status_topic, b"online".__eq__),
                 20)
        third = load_messages(1500, 60, start=now - 3600, models=models)
        paced = Paced(nats_cluster.nodes[alive[0]].mqtt_url, third.messages, 300)
        paced.start()
        wait_for("the stream under way", lambda: paced.sent > 300, 20)
        heard = len(w.messages)
        nats_cluster.nodes[dead].kill()
        failed_over = wait_for("the survivor's publisher on another node", lambda: (
            survivor.health()["cluster"]["publisher_connected"]
            and publisher_port(survivor) != nats_cluster.nodes[dead].mqtt_port), 40)
        assert failed_over
        wait_for("its hub/status online again, heard on another node", lambda: [
            m for m in w.messages[heard:] if m[0] == status_topic and m[1] == b"online"], 30)
        old_topic = f"hub/alarms/loadtest/{ALARM_DEVICE}/knocked_over"  # cleared, not acked
        wait_for("its open alarms republished from the new node", lambda: [
            m for m in w.messages[heard:] if m[0] == old_topic and b'"cleared_unack"' in m[1]],
            30)
        wait_for("more published after the node died", lambda: paced.sent > 700, 30)
        c = make_hub(tmp_path, "hub-c", nats_cluster, pg_url, influx_db, sites,
                     mqtt_node=alive[1])
        hubs["hub-c"] = c
        start_all(c)
        wait_for("the partitions rebalanced over two hubs", balanced([survivor, c]), 40)
        # the survivor's next alarm: retained, through its new node, to a subscriber elsewhere
        mine = owners(survivor)
        struck = next(d for _m, d in load_devices(60, models) if _m == "XS-FL200"
                      and d not in (ALARM_DEVICE, OTHER_DEVICE)
                      and mine[partition_of(d, PARTITIONS)] == survivor.settings["HUB_NODE_ID"])
        publish_now(nats_cluster.nodes[alive[0]].mqtt_url, [tilt(struck, time.time(), 40.0)])
        alarm_topic = f"hub/alarms/loadtest/{struck}/knocked_over"
        retained = wait_for("the survivor's new retained alarm on another node",
                            lambda: w.got(alarm_topic, lambda p: b'"active_unack"' in p), 30)
        assert json.loads(retained[0])["device_id"] == struck
        finish(paced)
        for measurement, count in third.points.items():
            expected[measurement] += count
        expected["flashing_light"] += 1
        try:
            wait_for("every point exactly once after the node died", exactly(influx_db, expected),
                     60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stream_state(nats_cluster)}") from None
        before = {n: h.health()["pipeline"]["processed"]
                  for n, h in hubs.items() if h is not victim}
        last = load_messages(300, 60, start=now - 1200, models=models)
        finish(*[p for p in (Paced(nats_cluster.nodes[alive[1]].mqtt_url, last.messages, 1000),)
                 if not p.start()])
        for measurement, count in last.points.items():
            expected[measurement] += count
        wait_for("the last batch exactly once", exactly(influx_db, expected), 60)
        for name, processed in before.items():  # both take a share after the rebalance
            assert hubs[name].health()["pipeline"]["processed"] > processed, name
    finally:
        for closing in (sse, watch):
            if closing is not None:
                closing.close()
        for h in hubs.values():
            h.stop()


def node_index(cluster: NatsCluster, name: str) -> int:
    """The index of the node of that name."""
    return next(i for i, n in enumerate(cluster.nodes) if n.name == name)


def publisher_port(hub: HubProcess) -> int:
    """The MQTT port of the node the hub's publisher is on (or tries), from /api/health."""
    return int(hub.health()["broker"]["url"].rsplit(":", 1)[1])


def console_online(hub: HubProcess) -> int:
    """The console status panel's count of online devices."""
    import re

    import httpx

    html = httpx.get(f"{hub.api}/console/p/status", headers=hub._headers(), timeout=10).text
    found = re.search(r'class="tile ok"><b>(\d+)</b>', html)
    assert found, html[:500]
    return int(found.group(1))


def lead_on(cluster: NatsCluster, stream: str, name: str, timeout: float = 60.0) -> None:
    """Make the named node the stream's leader: step the leader down until it is (the server
    elects one of the others at random)."""
    import asyncio

    import nats

    async def run() -> None:
        nc = await nats.connect([n.url for n in cluster.nodes if n.running], connect_timeout=3)
        try:
            js = nc.jetstream(timeout=5)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    info = await js.stream_info(stream)
                    leader = info.cluster.leader if info.cluster else None
                    if leader == name:
                        return
                    if leader is not None:
                        await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"",
                                         timeout=5)
                await asyncio.sleep(1.0)
            raise AssertionError(f"{name} did not become the leader of {stream}")
        finally:
            await nc.close()
    asyncio.run(run())


def stream_leader(cluster: NatsCluster, stream: str) -> str:
    """The name of the node leading a stream's replicas."""
    import asyncio

    import nats

    async def read() -> str:
        nc = await nats.connect([n.url for n in cluster.nodes if n.running], connect_timeout=3)
        try:
            info = await nc.jetstream(timeout=5).stream_info(stream)
            assert info.cluster is not None and info.cluster.leader is not None
            return info.cluster.leader
        finally:
            await nc.close()
    return asyncio.run(read())


def stream_state(cluster: NatsCluster) -> str:
    """The stream's and its consumers' state, for a failure message."""
    import asyncio

    import nats

    async def read() -> str:
        nc = await nats.connect([n.url for n in cluster.nodes if n.running], connect_timeout=3)
        try:
            js = nc.jetstream(timeout=5)
            info = await js.stream_info("$MQTT_msgs")
            lines = [f"stream: {info.state.messages} messages, last {info.state.last_seq}"]
            for c in await js.consumers_info("$MQTT_msgs"):
                lines.append(f"  {c.name}: floor {c.ack_floor.stream_seq if c.ack_floor else None}"
                             f" pending {c.num_pending} ack_pending {c.num_ack_pending} "
                             f"start {c.config.opt_start_seq}")
            return "\n".join(lines)
        finally:
            await nc.close()
    try:
        return asyncio.run(read())
    except Exception as exc:
        return f"(stream state not read: {exc})"


def test_current_nats_takes_device_ids_with_dots_and_strays(
    tmp_path: Path, current_nats_cluster: NatsCluster, pg_url: str, influx_db: Any
) -> None:
    """On the current nats-server: devices whose ids have a '.' publish (the server maps it to
    '//'); each is held by the owner of the partition the hub computes for it, its id is
    stored as it is, every reading exactly once; QoS 0 publishes of QoS 1 topics are caught
    there too (the ``Nmqtt-Pub`` header is the same)."""
    cluster = current_nats_cluster
    dotted = [f"XS.{i:02d}" for i in range(12)]
    sites = tmp_path / "sites"
    sites.mkdir()
    doc = {"site": "dotted", "name": "点号编号", "timezone": "UTC",
           "devices": [{"id": d, "model": "XS-FL200"} for d in dotted]}
    (sites / "dotted.yaml").write_text(json.dumps(doc), encoding="utf-8")
    a = make_hub(tmp_path, "hub-a", cluster, pg_url, influx_db, sites)
    b = make_hub(tmp_path, "hub-b", cluster, pg_url, influx_db, sites)
    try:
        start_all(a, b)
        table = wait_for("16 partitions split over both hubs", balanced([a, b]), 40)
        wait_for("both stray catchers subscribed", lambda: all(
            h.health()["cluster"]["strays"]["connected"] for h in (a, b)), 30)
        assert {h.health()["cluster"]["unpublishable_devices"] == [] for h in (a, b)} == {True}
        assert {table[partition_of(d, PARTITIONS)] for d in dotted} == {"hub-a", "hub-b"}
        now = time.time()
        sound = [tilt(d, now - 600 + i, 1.0) for i in range(5) for d in dotted]
        strays = [tilt(d, now - 500 + i, 1.0) for i in range(2) for d in dotted]
        publish_now(cluster.nodes[0].mqtt_url, sound)
        publish_qos0(cluster.nodes[1].mqtt_url, strays)
        expected = {"flashing_light": len(sound) + len(strays), "patrol_scan": 0,
                    "fire_station": 0, "extinguisher": 0}
        wait_for("every reading exactly once", exactly(influx_db, expected), 40)
        tags = influx_db.server.query('SHOW TAG VALUES FROM "flashing_light" WITH KEY = '
                                      '"device_id"', db=influx_db.name)
        stored = {v[1] for v in tags["results"][0]["series"][0]["values"]}
        assert stored == set(dotted), stored
        for device in dotted:
            assert seen_by(a) | seen_by(b) >= {device}
        held = {d: h.settings["HUB_NODE_ID"] for h in (a, b) for d in seen_by(h)}
        assert held == {d: table[partition_of(d, PARTITIONS)] for d in dotted}, held
        caught = wait_for("the catchers' counts", strays_stored([a, b], len(strays)), 20)
        assert sum(caught) == len(strays), caught
    finally:
        for hub in (a, b):
            hub.stop()
