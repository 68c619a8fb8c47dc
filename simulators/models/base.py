"""What every simulated device shares: seeded state, ticks, faults, silence and last will.

A device model is two things kept apart: a frozen *reading* dataclass per message type with an
``encode() -> bytes`` that writes the datasheet format (pure, testable against the datasheet
examples), and a ``DeviceSim`` that holds physical state, advances it and builds readings.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from hub.sites import Device, Site
from simulators.environment import DailyWeather
from simulators.message import SimMessage
from simulators.timeutil import zone

EPOCH_1970 = datetime(1970, 1, 1, 0, 0, 17, tzinfo=UTC)
TWO_MIB = 2 * 1024 * 1024

COMMON_FAULTS = frozenset({"go_silent", "duplicate", "garbage", "restore"})
GARBAGE_KINDS = (
    "binary", "truncated", "oversized", "wrong_types", "empty", "clock_1970", "unknown_device",
    "hostile_text",
)
# what a broken or hostile device puts in its strings: a bidi override, a NUL, 300 characters
HOSTILE_TEXT = "\u202e\x00" + "X" * 300


@dataclass
class FollowUp:
    """A fault's later half (door closes, power returns, device reconnects)."""

    delay_s: float
    fault: str
    params: dict[str, Any] = field(default_factory=dict)


class DeviceSim:
    """Base class of the five device simulators."""

    model: ClassVar[str]
    kind: ClassVar[str]
    interval_s: ClassVar[float]
    has_will: ClassVar[bool] = False
    faults: ClassVar[frozenset[str]] = COMMON_FAULTS

    def __init__(self, site: Site, device: Device, seed: int | str, start: datetime) -> None:
        self.site = site
        self.device = device
        self.id = device.id
        self.tz = zone(site.timezone)
        self.rng = random.Random(f"{seed}:{device.id}")
        self.weather = DailyWeather(f"{seed}:{site.site}")
        self.start = start
        self.silent = False
        self.connected = True
        self.last_message: SimMessage | None = None
        self.followups: list[FollowUp] = []
        self.counts: dict[str, int] = {}
        # first report at a per-device phase inside the interval, so traffic is spread out
        self.next_tick: datetime | None = start + timedelta(
            seconds=self.rng.uniform(0, self.interval_s))
        self.last_step = start

    # -- topics ----------------------------------------------------------------------------
    @property
    def status_topic(self) -> str | None:
        """The retained status topic carrying online / the last will, if the model has one."""
        return None

    # -- helpers ---------------------------------------------------------------------------
    def local(self, t: datetime) -> datetime:
        """Return ``t`` in the site's time zone."""
        return t.astimezone(self.tz)

    def message(self, topic: str, payload: bytes, qos: int, t: datetime, *,
                retain: bool = False, device_time: datetime | None = None,
                action: str | None = None, fault: str | None = None) -> SimMessage:
        """Build a SimMessage of this device."""
        return SimMessage(topic=topic, payload=payload, qos=qos, retain=retain,
                          device_time=device_time or t, at=t, device=self.id,
                          model=self.model, action=action, fault=fault)

    def connect_messages(self, t: datetime) -> list[SimMessage]:
        """Messages at (re)connect: the retained ``online`` status for models with a will."""
        if self.status_topic is None:
            return []
        return [self.message(self.status_topic, b"online", 1, t, retain=True, action="connect")]

    # -- time ------------------------------------------------------------------------------
    def tick(self, t: datetime) -> list[SimMessage]:
        """Advance state to ``t`` and return the periodic report (none while silent)."""
        dt = max(0.0, (t - self.last_step).total_seconds())
        self.step(t, dt)
        self.last_step = t
        self.next_tick = t + timedelta(seconds=self.interval_s)
        if self.silent or not self.connected:
            return []
        return self.report(t)

    def step(self, t: datetime, dt: float) -> None:
        """Advance the physical state by ``dt`` seconds ending at ``t``."""

    def report(self, t: datetime) -> list[SimMessage]:
        """Return the periodic messages for time ``t``."""
        raise NotImplementedError

    def deliver(self, msg: SimMessage, t: datetime) -> datetime | bool:
        """Decide about a queued message at ``t``: True send, False drop, datetime re-queue."""
        return not (self.silent or not self.connected) or msg.action is not None

    # -- faults ----------------------------------------------------------------------------
    def apply_fault(self, fault: str, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        """Inject a fault at ``t``; return the messages it causes at once."""
        self.counts[fault] = self.counts.get(fault, 0) + 1
        handler = getattr(self, f"fault_{fault.lstrip('_')}", None)
        if handler is None:
            raise ValueError(f"{self.id} ({self.model}) does not support fault {fault!r}")
        out: list[SimMessage] = handler(params, t) or []
        return out

    def fault_go_silent(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.silent = True
        if params.get("duration_s"):
            self.followups.append(FollowUp(params["duration_s"], "_resume"))
        return []

    def fault_resume(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.silent = False
        return []

    def fault_last_will(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        assert self.status_topic is not None
        self.connected = False
        if params.get("reconnect_after_s"):
            self.followups.append(FollowUp(params["reconnect_after_s"], "_reconnect"))
        return [self.message(self.status_topic, b"offline", 1, t, retain=True, action="will",
                             fault="last_will")]

    def fault_reconnect(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.connected = True
        return self.connect_messages(t)

    def fault_duplicate(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        last = self.last_message
        out: list[SimMessage] = []
        if last is None:  # nothing sent yet: send a report now, then repeat it
            last = self.message(self.data_topic, self.sample_payload(t, t), self.data_qos, t)
            out.append(last)
        count = int(params.get("count", 1))
        out += [SimMessage(last.topic, last.payload, last.qos, last.retain, last.device_time,
                           t, self.id, self.model, None, "duplicate") for _ in range(count)]
        return out

    def fault_restore(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.silent = False
        self.restore(t)
        return []

    def restore(self, t: datetime) -> None:
        """Undo model-specific faults."""

    def fault_garbage(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        kind = params.get("kind", "binary")
        topic, qos = self.data_topic, self.data_qos
        if kind == "binary":
            n = int(params.get("size") or 0) or self.rng.randint(24, 600)
            payload = bytes([0x00, 0xFF, 0xFE, 0x80]) + self.rng.randbytes(n)
        elif kind == "truncated":
            full = self.sample_payload(t, t)
            payload = full[: max(1, len(full) * 2 // 3)]
        elif kind == "oversized":
            payload = self.oversized_payload(t, int(params.get("size") or TWO_MIB))
        elif kind == "wrong_types":
            payload = self.wrong_types_payload(t)
        elif kind == "empty":
            payload = b""
        elif kind == "clock_1970":
            payload = self.sample_payload(t, EPOCH_1970 + timedelta(seconds=(t - self.start)
                                                                     .total_seconds()))
        elif kind == "unknown_device":
            topic, payload = self.unknown_device_payload(t)
        elif kind == "hostile_text":
            payload = self.hostile_text_payload(t)
        else:
            raise ValueError(f"unknown garbage kind {kind!r}")
        return [self.message(topic, payload, qos, t, fault="garbage")]

    # -- garbage hooks (JSON defaults; CSV devices override) ---------------------------------
    @property
    def data_topic(self) -> str:
        """The topic of the periodic report."""
        raise NotImplementedError

    data_qos: int = 1

    def sample_payload(self, t: datetime, device_time: datetime) -> bytes:
        """Encode the current state as a normal report stamped ``device_time``."""
        raise NotImplementedError

    def wrong_types_payload(self, t: datetime) -> bytes:
        """A report whose fields have the wrong JSON types."""
        raise NotImplementedError

    def unknown_device_payload(self, t: datetime) -> tuple[str, bytes]:
        """A well-formed report from a device id no site lists."""
        raise NotImplementedError

    def hostile_text_payload(self, t: datetime) -> bytes:
        """A normal report whose text values (but the device id) are ``HOSTILE_TEXT``."""
        doc = json.loads(self.sample_payload(t, t))
        for key, value in doc.items():
            if isinstance(value, str) and value != self.id:
                doc[key] = HOSTILE_TEXT
        return jdump(doc)

    def oversized_payload(self, t: datetime, size: int) -> bytes:
        """A syntactically valid JSON report padded to ``size`` bytes."""
        doc = json.loads(self.sample_payload(t, t))
        doc["pad"] = ""
        base = len(json.dumps(doc).encode())
        doc["pad"] = "A" * max(0, size - base)
        return json.dumps(doc).encode()


def jdump(doc: dict[str, Any]) -> bytes:
    """Serialise like the devices do: ``json.dumps`` default separators, UTF-8, no escaping."""
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")
