"""The floor: a bare paho subscriber on a persistent session that does nothing but ack.

``python bench/_floor.py URL CLIENT_ID create``  subscribes (QoS 1, the hub's filters) and leaves
``python bench/_floor.py URL CLIENT_ID drain N`` reconnects and prints JSON
``{"received": n, "seconds": s, "cpu_us_per_msg": c}``: time from CONNACK to the N-th message
and the process's CPU per message over that time. Same client settings
as the hub (MQTT 5, manual acks, receive maximum 65535, 1000 in flight).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from hub.ingest.router import TopicRouter  # noqa: E402
from hub.intake.paho_client import parse_mqtt_url  # noqa: E402
from hub.profiles.loader import load_profiles  # noqa: E402
from hub.settings import Settings  # noqa: E402


def main() -> int:
    url, client_id, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    want = int(sys.argv[4]) if mode == "drain" else 0
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 600.0
    parsed = parse_mqtt_url(url)
    filters = TopicRouter(load_profiles(Settings().profiles_dir)).subscriptions()
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=paho.MQTTv5, manual_ack=True)
    c.max_inflight_messages_set(1000)
    connected = threading.Event()
    done = threading.Event()
    state = {"n": 0, "t0": 0.0, "t1": 0.0, "cpu0": 0.0, "cpu1": 0.0}

    def on_connect(client: paho.Client, *_a: object) -> None:
        state["t0"] = time.perf_counter()
        state["cpu0"] = time.process_time()
        if mode == "create":
            client.subscribe(filters)
        connected.set()

    def on_message(client: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        client.ack(msg.mid, msg.qos)
        state["n"] += 1
        if state["n"] >= want:
            state["t1"] = time.perf_counter()
            state["cpu1"] = time.process_time()
            done.set()

    subscribed = threading.Event()
    c.on_connect = on_connect
    c.on_message = on_message
    c.on_subscribe = lambda *_a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 86400
    props.ReceiveMaximum = 65535
    c.connect(parsed.host, parsed.port, keepalive=30, clean_start=(mode == "create"),
              properties=props)
    c.loop_start()
    if not connected.wait(10):
        print(json.dumps({"error": "no connect"}))
        return 1
    if mode == "create":
        subscribed.wait(10)
        c.disconnect()
        c.loop_stop()
        print(json.dumps({"subscribed": [f for f, _ in filters]}))
        return 0
    done.wait(timeout)
    c.disconnect()
    c.loop_stop()
    seconds = (state["t1"] or time.perf_counter()) - state["t0"]
    cpu = (state["cpu1"] or time.process_time()) - state["cpu0"]
    print(json.dumps({"received": state["n"], "seconds": seconds,
                      "cpu_us_per_msg": round(cpu / max(1, state["n"]) * 1e6, 1)}))
    return 0 if state["n"] >= want else 1


if __name__ == "__main__":
    sys.exit(main())
