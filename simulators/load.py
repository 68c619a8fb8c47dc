"""Benchmark load: N devices at R messages/s in total, over P processes.

Each process owns one paho client (no network thread: ``publish`` writes straight to the
socket), a slice of the devices with payloads pre-encoded by the real encoders as templates
(only the timestamp is spliced in per message) and a token bucket that paces it at R/P msg/s.
The result reports what was handed to the socket and what the broker acknowledged (QoS 1) or
what was written (QoS 0).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from simulators.models.hn_bsd3 import Bsd3Report
from simulators.models.mfs_gw1 import Extinguisher, MfsTelemetry
from simulators.models.pt_nfc1 import NfcScan
from simulators.models.xs_fl200 import Fl200Telemetry
from simulators.models.yk_fs8 import Fs8Data
from simulators.mqtturl import parse_mqtt_url

LOAD_MODELS = ("XS-FL200", "HN-BSD3", "PT-NFC1", "MFS-GW1", "YK-FS8")
_CST = timezone(timedelta(hours=8))
_SENTINEL = datetime(2099, 12, 31, 23, 59, 59, tzinfo=_CST)
_SENTINEL_MS = 4102415999000
_SENTINEL_S = 4102415999


def load_device_id(model: str, i: int) -> str:
    """Device id of the i-th load device of a model (formats as in the field)."""
    return {"XS-FL200": f"LD-FL-{i:06d}", "HN-BSD3": f"869{i:012d}",
            "PT-NFC1": f"LD-R{i:06d}", "MFS-GW1": f"LD-MFS-{i:06d}",
            "YK-FS8": f"YK8-9{i % 100000:05d}"}[model]


def load_tag(i: int) -> str:
    """The NFC tag a load reader scans."""
    return f"04FF{i:010X}"


def load_devices(n: int, models: list[str] | None = None) -> list[tuple[str, str]]:
    """(model, id) of ``n`` load devices, models taken round robin."""
    models = list(models or LOAD_MODELS)
    bad = set(models) - set(LOAD_MODELS)
    if bad:
        raise ValueError(f"unknown model(s) {', '.join(sorted(bad))}; known: "
                         f"{', '.join(LOAD_MODELS)}")
    return [(models[i % len(models)], load_device_id(models[i % len(models)], i))
            for i in range(n)]


def template(model: str, device: str, i: int) -> tuple[str, bytes, bytes, str]:
    """Return (topic, payload before the timestamp, after it, timestamp style)."""
    if model == "XS-FL200":
        body = Fl200Telemetry(_SENTINEL_MS, "flash", "ok", 12450 + i % 300, 18020, 1.8, 1.5,
                              charging=True, veh_count=i % 40, temp_c=21.5).encode()
        return f"roadsafety/flashlight/{device}/telemetry", *_split(body, str(_SENTINEL_MS)), "ms"
    if model == "HN-BSD3":
        body = Bsd3Report(device, _SENTINEL.replace(tzinfo=None), "F", True, 1245, 1802, 18, 15,
                          i % 40).encode()
        return f"hnbsd/{device}/up", *_split(body, "20991231T235959"), "bsd"
    if model == "PT-NFC1":
        body = NfcScan(device, load_tag(i), f"LD-P{i:06d}", _SENTINEL, 29.0312, 111.6935,
                       81).encode()
        return f"patrol/{device}/scan", *_split(body, "2099-12-31T23:59:59+08:00"), "iso"
    if model == "MFS-GW1":
        body = MfsTelemetry(device, _SENTINEL_S, 0.02, 18.6, 64, 0.32,
                            (Extinguisher(1, True, 1.18), Extinguisher(2, True, 1.22)),
                            False, True, 97).encode()
        return f"firestation/{device}/telemetry", *_split(body, str(_SENTINEL_S)), "s"
    body = Fs8Data(device, _SENTINEL.replace(tzinfo=None), 186, 64, 2, 320, (1180, 1210), 0, 1,
                   97).encode()
    return f"yk/{device}/data", *_split(body, "2099-12-31 23:59:59"), "yk"


def _split(body: bytes, sentinel: str) -> tuple[bytes, bytes]:
    before, sep, after = body.partition(sentinel.encode())
    assert sep, sentinel
    return before, after


def _stamp(style: str, t: float) -> bytes:
    if style == "ms":
        return str(int(t * 1000)).encode()
    if style == "s":
        return str(int(t)).encode()
    local = time.gmtime(t + 8 * 3600)
    if style == "bsd":
        return time.strftime("%Y%m%dT%H%M%S", local).encode()
    if style == "iso":
        return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", local).encode()
    return time.strftime("%Y-%m-%d %H:%M:%S", local).encode()


@dataclass
class LoadResult:
    """Outcome of a load run."""

    devices: int
    rate_target: float
    processes: int
    qos: int
    duration_s: float
    sent: int = 0
    acked: int = 0
    per_process: list[dict[str, Any]] = field(default_factory=list)

    @property
    def send_rate(self) -> float:
        """Messages handed to the sockets per second."""
        return self.sent / self.duration_s if self.duration_s else 0.0

    @property
    def ack_rate(self) -> float:
        """Messages acknowledged (QoS 1) or written (QoS 0) per second of the run."""
        return self.acked / self.duration_s if self.duration_s else 0.0

    def lines(self) -> list[str]:
        """A human summary."""
        return [
            f"load: {self.devices} devices, target {self.rate_target:.0f} msg/s, "
            f"{self.processes} processes, QoS {self.qos}, {self.duration_s:.1f} s",
            f"sent {self.sent} ({self.send_rate:.0f} msg/s), "
            f"{'acknowledged' if self.qos else 'written'} {self.acked} "
            f"({self.ack_rate:.0f} msg/s, {100 * self.ack_rate / self.rate_target:.0f}% of "
            f"target)",
        ]


def _worker(index: int, devices: list[tuple[str, str, int]], rate: float, duration: float,
            url_text: str, qos: int, ready: Any, go: Any, counter: Any, out: Any) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    url = parse_mqtt_url(url_text)
    temps = [template(model, dev, i) for model, dev, i in devices]
    last = [0.0] * len(temps)
    acked = [0]

    def on_publish(*_args: Any) -> None:
        acked[0] += 1

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hub-sim-load-{index}-"
                         f"{mp.current_process().pid}", protocol=mqtt.MQTTv311)
    if url.username:
        client.username_pw_set(url.username, url.password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(url.host, url.port, keepalive=60)
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        client.loop(0.05)
    ready.release()
    go.wait()
    burst = max(20.0, rate * 0.02)
    tokens, sent, k, n = 0.0, 0, 0, len(temps)
    start = time.perf_counter()
    prev = start
    end = start + duration
    stamp_cache: dict[tuple[str, int], bytes] = {}
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        tokens = min(burst, tokens + (now - prev) * rate)
        prev = now
        if tokens < 1:
            client.loop(0)
            time.sleep(min(0.002, (1 - tokens) / rate))
            continue
        wall = time.time()
        while tokens >= 1:
            topic, before, after, style = temps[k]
            t = max(wall, last[k] + (0.001 if style == "ms" else 1.0))
            last[k] = t
            key = (style, int(t * 1000) if style == "ms" else int(t))
            stamp = stamp_cache.get(key)
            if stamp is None:
                if len(stamp_cache) > 4096:
                    stamp_cache.clear()
                stamp = stamp_cache[key] = _stamp(style, t)
            client.publish(topic, before + stamp + after, qos=qos)
            tokens -= 1
            sent += 1
            k = k + 1 if k + 1 < n else 0
            if sent % 64 == 0:
                client.loop(0)
                counter.value = sent
    elapsed = time.perf_counter() - start
    counter.value = sent
    drain_until = time.monotonic() + 10
    while acked[0] < sent and time.monotonic() < drain_until:
        client.loop(0.01)
    client.disconnect()
    out.put({"process": index, "sent": sent, "acked": acked[0], "elapsed": elapsed,
             "devices": n})


def run_load(devices: int, rate: float, duration: float, mqtt_url: str, processes: int = 2,
             qos: int = 0, models: list[str] | None = None,
             progress: Callable[[str], None] | None = None) -> LoadResult:
    """Publish from ``devices`` load devices at ``rate`` msg/s for ``duration`` seconds."""
    if devices < 1 or rate <= 0 or duration <= 0 or processes < 1:
        raise ValueError("devices, rate, duration and processes must be positive")
    processes = min(processes, devices)
    parse_mqtt_url(mqtt_url)
    all_devices = [(m, d, i) for i, (m, d) in enumerate(load_devices(devices, models))]
    ctx = mp.get_context("spawn")
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    out = ctx.Queue()
    counters = [ctx.Value("q", 0, lock=False) for _ in range(processes)]
    procs = [ctx.Process(target=_worker, args=(i, all_devices[i::processes], rate / processes,
                                               duration, mqtt_url, qos, ready, go,
                                               counters[i], out), daemon=True)
             for i in range(processes)]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=60):
            for p in procs:
                p.terminate()
            raise ConnectionError("load workers did not connect within 60 s")
    go.set()
    t0 = time.monotonic()
    next_report = t0 + 2
    results: list[dict[str, Any]] = []
    while len(results) < processes:
        try:
            results.append(out.get(timeout=0.5))
        except Exception:  # queue.Empty
            if not any(p.is_alive() for p in procs) and out.empty():
                break
        now = time.monotonic()
        if progress and now >= next_report and now - t0 < duration:
            next_report = now + 2
            total = sum(c.value for c in counters)
            progress(f"load: {now - t0:5.1f} s  sent {total}  ({total / (now - t0):.0f} msg/s)")
    for p in procs:
        p.join(timeout=5)
    res = LoadResult(devices, rate, processes, qos,
                     max((r["elapsed"] for r in results), default=duration),
                     sum(r["sent"] for r in results), sum(r["acked"] for r in results),
                     sorted(results, key=lambda r: r["process"]))
    return res


def write_load_site(path: Path, devices: int, models: list[str] | None = None) -> None:
    """Write a site file registering the load devices (and the tags load readers scan)."""
    devs = load_devices(devices, models)
    doc: dict[str, Any] = {
        "site": "loadtest", "name": "负载测试", "name_en": "Load test",
        "devices": [{"id": d, "model": m} for m, d in devs],
        "checkpoints": [{"id": f"LD-CP{i:06d}", "tag_uid": load_tag(i), "name": f"load {i}"}
                        for i, (m, _d) in enumerate(devs) if m == "PT-NFC1"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# written by hub-sim load --write-site at {datetime.now(UTC):%Y-%m-%d}\n"
                    + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
