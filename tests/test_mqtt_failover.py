"""``HUB_MQTT_URL`` with several URLs: parsing, the order they are tried in, and failover of the
intake process's MQTT client (lean, the default, and paho) from a dead broker to the next one,
with its status and retained publishes going there. Real Mosquitto brokers; no cluster."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.intake.common import MqttUrl, UrlRing, parse_mqtt_urls
from hub.intake.process import IntakeProcess
from tests.support.mqtt_util import Collector
from tests.support.require import require_binary
from tests.support.services import MosquittoServer, free_port


def test_one_url_parses_as_a_list_of_one() -> None:
    assert parse_mqtt_urls("mqtt://u:p@h:1884") == [MqttUrl("h", 1884, False, "u", "p")]


def test_several_urls_keep_their_order_and_credentials() -> None:
    urls = parse_mqtt_urls(" mqtt://a:1883 , mqtt://u:p%40w@b:1884,,mqtt://c ")
    assert [(u.host, u.port) for u in urls] == [("a", 1883), ("b", 1884), ("c", 1883)]
    assert (urls[1].username, urls[1].password) == ("u", "p@w")


@pytest.mark.parametrize(("value", "reason"), [
    ("", "empty"), (" , ", "empty"), ("mqtt://a:1883,http://b", "scheme"),
    ("mqtt://a:1883,mqtts://b:8883", "mixes mqtt:// and mqtts://"), ("mqtt://a:x", "bad port"),
])
def test_bad_lists_are_refused_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_mqtt_urls(value)


def test_the_ring_moves_on_after_each_failure_and_backs_off_per_round() -> None:
    ring = UrlRing(parse_mqtt_urls("mqtt://a,mqtt://b,mqtt://c"), 1.0, 30.0)
    assert ring.current.host == "a"
    tried = []
    for _ in range(7):
        wait = ring.failed()
        tried.append((ring.current.host, wait))
    # a round of the list at 1 s, the next round at 2 s, ...: a dead node costs one short wait
    assert tried == [("b", 1.0), ("c", 1.0), ("a", 1.0), ("b", 2.0), ("c", 2.0), ("a", 2.0),
                     ("b", 4.0)]
    ring.connected()  # on b: stays there; the next loss goes on to c at the short wait
    assert ring.current.host == "b"
    assert (ring.failed(), ring.current.host) == (1.0, "c")


def test_one_url_is_the_plain_backoff_on_that_broker() -> None:
    ring = UrlRing(parse_mqtt_urls("mqtt://a"), 1.0, 30.0)
    waits = [ring.failed() for _ in range(7)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert ring.current.host == "a"


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[MosquittoServer, MosquittoServer]]:
    """Two independent started mosquittos (stand-ins for two nodes of one cluster)."""
    binary = require_binary("mosquitto")
    first = MosquittoServer(tmp_path / "m1", binary=binary)
    second = MosquittoServer(tmp_path / "m2", binary=binary)
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.stop()
        second.stop()


def wait_until(what: str, check: object, timeout: float = 20.0) -> None:
    """Poll a callable until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("client", ["lean", "paho"])
def test_the_publisher_fails_over_in_list_order_and_republishes_there(
    two_brokers: tuple[MosquittoServer, MosquittoServer], client: str
) -> None:
    first, second = two_brokers
    dead = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens: the first try fails
    intake = IntakeProcess(f"{dead},{first.url},{second.url}", f"hub-{client}", [],
                           status_topic="hub/status/hub-a", protocol="3.1.1", client=client)
    republished: list[float] = []
    intake.on_connected = lambda: republished.append(time.monotonic())
    watch = Collector(second.url, "hub/#")
    stop = threading.Event()
    # the child's status frames are read where the pipeline pulls messages: pull as it does
    pump = threading.Thread(target=lambda: [intake.receive(0.1) for _ in iter(stop.is_set, True)],
                            daemon=True)
    pump.start()
    try:
        assert intake.start(wait_s=20), intake.last_error
        assert (intake.url.host, intake.url.port) == ("127.0.0.1", first.port)  # dead: skipped
        intake.publish("hub/alarms/s/d/r", b'{"n": 1}', retain=True)
        first.kill()
        killed = time.monotonic()
        wait_until("a connection to the second broker",
                   lambda: intake.connected and intake.url.port == second.port)
        took = time.monotonic() - killed
        intake.publish("hub/alarms/s/d/r", b'{"n": 2}', retain=True)
        got = watch.wait_for(lambda t, p: t == "hub/alarms/s/d/r" and p == b'{"n": 2}')
        assert got, watch.messages
        assert watch.wait_for(lambda t, p: t == "hub/status/hub-a" and p == b"online")
        assert len(republished) >= 2  # the hub's "republish retained alarms" on each connect
        assert took < 10, f"failover took {took:.1f} s"
    finally:
        watch.close()
        intake.stop()
        stop.set()
        pump.join(5)
