"""DurableWriter against the real InfluxDB: outages, replay, exactly-once, back-pressure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from hub.ingest.lineproto import encode_point
from hub.model import Point
from hub.store.embedded import EmbeddedStore
from hub.store.influx import InfluxV1Store
from hub.store.spool import Spool
from hub.store.writer import DurableWriter
from tests.support.services import InfluxServer

T = 1_700_000_000_000_000_000
DB = "hub"


def lines_for(batch_no: int, n: int = 20) -> list[bytes]:
    return [
        encode_point(
            Point(
                "flashing_light",
                (("device_id", f"fl-{j % 5}"), ("site", "x")),
                (("battery_v", 12.0 + j / 100), ("batch", batch_no)),
                T + batch_no * 1000 + j,
            )
        )
        for j in range(n)
    ]


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def settled(read: Callable[[], int], quiet_s: float = 0.5, timeout: float = 20.0) -> int:
    """The value once it has not changed for ``quiet_s`` (it stalls under back-pressure)."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    raise AssertionError(f"still changing after {timeout} s (last {last})")


def count(server: InfluxServer) -> int:
    body = server.query('SELECT COUNT("battery_v") FROM "flashing_light"', db=DB)
    series = body["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


class Recorder:
    """Collects on_durable calls (in order) and rejected lines."""

    def __init__(self) -> None:
        self.durable: list[int] = []
        self.rejected: list[tuple[bytes, str]] = []
        self.lock = threading.Lock()

    def ack(self, batch_no: int) -> Callable[[], None]:
        def done() -> None:
            with self.lock:
                self.durable.append(batch_no)

        return done

    def reject(self, items: list[tuple[bytes, str]]) -> None:
        self.rejected.extend(items)


@pytest.fixture
def influx_store(influx_own: InfluxServer) -> Iterator[InfluxV1Store]:
    store = InfluxV1Store(influx_own.url, DB, timeout_s=2.0)
    store.ensure_database()
    yield store
    store.close()


@pytest.fixture
def new_writer() -> Iterator[Callable[..., DurableWriter]]:
    """Build writers that are stopped at teardown even when a test fails half-way."""
    started: list[DurableWriter] = []

    def make(*args: object, **kwargs: object) -> DurableWriter:
        writer = DurableWriter(*args, **kwargs)  # type: ignore[arg-type]
        started.append(writer)
        return writer

    yield make
    for writer in started:
        writer.stop(2)


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_outage_spools_in_order_and_lands_exactly_once(
    influx_own: InfluxServer,
    influx_store: InfluxV1Store,
    tmp_path: Path,
    new_writer: Callable[..., DurableWriter],
) -> None:
    rec = Recorder()
    spool = Spool(tmp_path / "spool", max_bytes=1 << 26)
    writer = new_writer(influx_store, spool, rec.reject, retry_initial_s=0.05, retry_max_s=0.3)
    spooled_before = metric("hub_points_spooled_total")
    started = time.time()
    for i in range(10):
        writer.submit(lines_for(i), rec.ack(i))
    wait_for(lambda: len(rec.durable) == 10)
    assert count(influx_own) == 200
    last_write = metric("hub_store_last_write_timestamp_seconds")
    assert started <= last_write <= time.time()  # operators alert on a stale store with it

    influx_own.kill()  # SIGKILL mid-stream: acknowledged writes are in its WAL
    for i in range(10, 30):
        writer.submit(lines_for(i), rec.ack(i))
    wait_for(lambda: len(rec.durable) == 30)
    assert metric("hub_store_last_write_timestamp_seconds") == last_write  # nothing accepted
    health = writer.health()
    assert health["store_ok"] is False
    assert health["spool_batches"] >= 19  # the first one may have been tried on the store
    assert health["last_error"]
    assert metric("hub_points_spooled_total") - spooled_before >= 19 * 20

    influx_own.start()
    for i in range(30, 40):  # new batches may go straight in while the spool drains
        writer.submit(lines_for(i), rec.ack(i))
    wait_for(lambda: writer.health()["spool_batches"] == 0 and len(rec.durable) == 40)
    assert writer.stop(10)
    assert rec.durable == list(range(40))  # acknowledged strictly in submission order
    assert rec.rejected == []
    assert writer.health()["store_ok"] is True
    assert count(influx_own) == 40 * 20  # every point, once (same series + time overwrites)
    assert metric("hub_spool_bytes") == 0


def test_restart_of_influx_while_writing(
    influx_own: InfluxServer,
    influx_store: InfluxV1Store,
    tmp_path: Path,
    new_writer: Callable[..., DurableWriter],
) -> None:
    rec = Recorder()
    writer = new_writer(
        influx_store, Spool(tmp_path / "spool", 1 << 26), rec.reject, retry_initial_s=0.05
    )
    feeder = threading.Thread(
        target=lambda: [writer.submit(lines_for(i), rec.ack(i)) for i in range(60)], daemon=True
    )
    feeder.start()
    wait_for(lambda: len(rec.durable) >= 5)
    influx_own.restart()
    feeder.join(20)
    wait_for(lambda: len(rec.durable) == 60 and writer.health()["spool_batches"] == 0)
    writer.stop(10)
    assert rec.durable == list(range(60))
    assert count(influx_own) == 60 * 20


def test_rejected_lines_reported_and_batch_acknowledged(
    influx_own: InfluxServer,
    influx_store: InfluxV1Store,
    tmp_path: Path,
    new_writer: Callable[..., DurableWriter],
) -> None:
    rec = Recorder()
    writer = new_writer(influx_store, Spool(tmp_path / "spool", 1 << 20), rec.reject)
    bad = b'flashing_light,device_id=fl-0,site=x battery_v="twelve" %d' % (T + 5)
    writer.submit(lines_for(0), rec.ack(0))
    writer.submit([*lines_for(1, 3), bad, *lines_for(2, 3)], rec.ack(1))
    writer.stop(10)
    assert rec.durable == [0, 1]
    assert [line for line, _ in rec.rejected] == [bad]
    assert "field type conflict" in rec.rejected[0][1]
    assert count(influx_own) == 20 + 3 + 3


def test_torn_spool_tail_replayed_without_garbage(
    influx_own: InfluxServer,
    influx_store: InfluxV1Store,
    tmp_path: Path,
    new_writer: Callable[..., DurableWriter],
) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, 1 << 20)
    spool.append(lines_for(0))
    spool.append(lines_for(1))
    spool.close()
    (segment,) = directory.glob("seg-*.spool")
    with segment.open("ab") as f:  # a crash in the middle of a third append
        f.write(b"HSB1\x40\x00\x00\x00\x01\x02\x03\x04flashing_light,device_id=fl-9 batt")
    rec = Recorder()
    writer = new_writer(influx_store, Spool(directory, 1 << 20), rec.reject, retry_initial_s=0.05)
    wait_for(lambda: writer.health()["spool_batches"] == 0)
    writer.stop(10)
    assert rec.rejected == []
    assert count(influx_own) == 40
    assert list(directory.glob("seg-*.spool")) == []


def test_spool_full_applies_back_pressure(
    influx_own: InfluxServer,
    influx_store: InfluxV1Store,
    tmp_path: Path,
    new_writer: Callable[..., DurableWriter],
) -> None:
    rec = Recorder()
    spool = Spool(tmp_path / "spool", max_bytes=4000)  # room for a few batches only
    writer = new_writer(
        influx_store, spool, rec.reject, retry_initial_s=0.05, retry_max_s=0.2, queue_batches=1
    )
    influx_own.stop()
    submitted: list[int] = []

    def feed() -> None:
        for i in range(12):
            writer.submit(lines_for(i), rec.ack(i))
            submitted.append(i)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    # wait on state: batches go to the spool until it is full, then the count stands still
    wait_for(lambda: writer.health()["spool_bytes"] > 0)
    stalled = settled(lambda: len(rec.durable))
    assert 0 < stalled < 12
    assert feeder.is_alive()  # submit blocks: back-pressure reaches the caller
    assert len(submitted) < 12
    assert writer.health()["spool_bytes"] > 0
    time.sleep(0.5)
    assert len(rec.durable) == stalled  # nothing acknowledged that is not durable

    influx_own.start()
    feeder.join(20)
    wait_for(lambda: len(rec.durable) == 12 and writer.health()["spool_batches"] == 0)
    writer.stop(10)
    assert rec.durable == list(range(12))
    assert count(influx_own) == 12 * 20


def test_stop_flushes_queue_to_spool(
    influx_own: InfluxServer, tmp_path: Path, new_writer: Callable[..., DurableWriter]
) -> None:
    store = InfluxV1Store(influx_own.url, DB, timeout_s=2.0)
    influx_own.stop()
    rec = Recorder()
    directory = tmp_path / "spool"
    writer = new_writer(store, Spool(directory, 1 << 20), rec.reject, retry_initial_s=5)
    for i in range(3):
        writer.submit(lines_for(i), rec.ack(i))
    assert writer.stop(10)
    assert rec.durable == [0, 1, 2]
    assert Spool(directory, 1 << 20).depth()[0] == 3
    with pytest.raises(RuntimeError):
        writer.submit(lines_for(9), rec.ack(9))
    store.close()


def test_embedded_store_behind_the_writer(
    tmp_path: Path, new_writer: Callable[..., DurableWriter]
) -> None:
    store = EmbeddedStore(tmp_path / "t.sqlite")
    rec = Recorder()
    writer = new_writer(store, Spool(tmp_path / "spool", 1 << 20), rec.reject)
    for i in range(5):
        writer.submit(lines_for(i), rec.ack(i))
    assert writer.stop(10)
    assert rec.durable == list(range(5))
    assert len(store.read_points("flashing_light")) == 100
    assert writer.health() == {
        "store_ok": True,
        "spool_batches": 0,
        "spool_bytes": 0,
        "queued": 0,
        "last_error": None,
    }
    store.close()
