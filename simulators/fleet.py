"""The fleet: every device of the site files, simulated together as a discrete-event run.

Pure: no network, no wall clock, no global random. Same sites, seed, start and scenario give
the same messages, byte for byte, however the run is sliced into windows.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.sites import Site, SiteRegistry, load_sites
from simulators.message import SimMessage
from simulators.models import MODELS, DeviceSim
from simulators.scenario import Scenario, ScenarioError
from simulators.timeutil import zone

log = logging.getLogger(__name__)

# event priorities at the same instant: faults first, then reports, then queued messages
_FAULT, _TICK, _EMIT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A fault as it was applied."""

    at: datetime
    device: str
    fault: str
    params: dict[str, Any]


def _as_sites(sites: Path | str | SiteRegistry | Iterable[Site]) -> list[Site]:
    if isinstance(sites, str | Path):
        sites = load_sites(Path(sites))
    if isinstance(sites, SiteRegistry):
        return list(sites.sites.values())
    return list(sites)


def default_start(scenario: Scenario | None, tz: str = "Asia/Shanghai") -> datetime:
    """Return now, or today at the scenario's suggested local start time (whole seconds)."""
    now = datetime.now(UTC).replace(microsecond=0)
    if scenario is None or scenario.start is None:
        return now
    local = now.astimezone(zone(tz))
    return datetime.combine(local.date(), scenario.start, tzinfo=zone(tz)).astimezone(UTC)


class Fleet:
    """All simulated devices of some sites, with an optional scenario of faults.

    ``events_between(t0, t1)`` returns the messages published in [t0, t1), ordered by
    publish time. Windows are meant to be consecutive; an earlier ``t0`` replays from the
    start (same bytes), a later one skips ahead.
    """

    def __init__(self, sites: Path | str | SiteRegistry | Iterable[Site], seed: int = 0,
                 start: datetime | None = None, scenario: Scenario | None = None,
                 only_sites: Iterable[str] | None = None) -> None:
        self.sites = _as_sites(sites)
        if only_sites is not None:
            wanted = set(only_sites)
            missing = wanted - {s.site for s in self.sites}
            if missing:
                raise ValueError(f"no such site: {', '.join(sorted(missing))}")
            self.sites = [s for s in self.sites if s.site in wanted]
        self.seed = seed
        start = start or default_start(scenario)
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.start = start.astimezone(UTC)
        self.scenario = scenario
        self.skipped_models: Counter[str] = Counter()
        self._check_scenario()
        self.reset()

    # -- setup -----------------------------------------------------------------------------
    def _check_scenario(self) -> None:
        if self.scenario is None:
            return
        models = {d.id: d.model for s in self.sites for d in s.devices}
        source = self.scenario.source or self.scenario.name or "<scenario>"
        for i, step in enumerate(self.scenario.timeline):
            model = models.get(step.device)
            if model is None:
                raise ScenarioError(f"{source}: timeline[{i}]: device {step.device!r} is not in"
                                    f" the loaded sites")
            cls = MODELS.get(model)
            if cls is None or step.fault not in cls.faults:
                raise ScenarioError(f"{source}: timeline[{i}]: {step.device} ({model}) does not"
                                    f" support fault {step.fault!r}")
            if step.fault == "battery_drain":
                key = "to_v" if cls.kind == "flashing_light" else "to_pct"
                if step.params.get(key) is None:
                    raise ScenarioError(f"{source}: timeline[{i}]: battery_drain on {model} "
                                        f"needs {key}")
        known = set(models) | {r.id for s in self.sites for r in s.routes} | \
            {c.id for s in self.sites for c in s.checkpoints}
        for i, alarm in enumerate(self.scenario.expect_alarms):
            if alarm.device not in known:
                raise ScenarioError(f"{source}: expect_alarms[{i}]: {alarm.device!r} is not in "
                                    f"the loaded sites")

    def reset(self) -> None:
        """Rebuild every device from the seed and rewind to the start."""
        self.devices: dict[str, DeviceSim] = {}
        for site in self.sites:
            for dev in site.devices:
                cls = MODELS.get(dev.model)
                if cls is None:
                    self.skipped_models[dev.model] += 1
                    continue
                self.devices[dev.id] = cls(site, dev, self.seed, self.start)
        for model, n in self.skipped_models.items():
            log.warning("no simulator for model %s (%d devices skipped)", model, n)
        self._heap: list[tuple[datetime, int, int, str, Any]] = []
        self._seq = 0
        self.cursor = self.start
        self.injected: list[InjectedFault] = []
        self.sent: Counter[str] = Counter()
        for device in self.devices.values():
            for msg in device.connect_messages(self.start):
                self._push(msg.at, _EMIT, "emit", msg)
            if device.next_tick is not None:
                self._push(device.next_tick, _TICK, "tick", device.id)
        if self.scenario is not None:
            for step in self.scenario.timeline:
                at = self.start + timedelta(seconds=step.at)
                device = self.devices[step.device]
                prepare = getattr(device, "prepare", None)
                if prepare is not None:
                    prepare(step.fault, step.params, at)
                self._push(at, _FAULT, "fault", (step.device, step.fault, step.params, True))

    def _push(self, at: datetime, prio: int, kind: str, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, prio, self._seq, kind, item))

    # -- queries ---------------------------------------------------------------------------
    @property
    def will_devices(self) -> dict[str, str]:
        """Devices with an MQTT last will: device id -> retained status topic."""
        return {d.id: d.status_topic for d in self.devices.values()
                if d.has_will and d.status_topic}

    def device_models(self) -> Counter[str]:
        """Number of simulated devices per model."""
        return Counter(d.model for d in self.devices.values())

    # -- the run ---------------------------------------------------------------------------
    def events_between(self, t0: datetime, t1: datetime) -> Iterator[SimMessage]:
        """Return the messages published in [t0, t1), in publish order."""
        t0, t1 = t0.astimezone(UTC), t1.astimezone(UTC)
        if t0 < self.cursor:
            self.reset()
        if t0 > self.cursor:
            self._advance(t0, None)
        out: list[SimMessage] = []
        self._advance(t1, out)
        return iter(out)

    def run_for(self, seconds: float) -> list[SimMessage]:
        """Return every message of the first ``seconds`` of the run (a convenience)."""
        return list(self.events_between(self.start, self.start + timedelta(seconds=seconds)))

    def _advance(self, until: datetime, out: list[SimMessage] | None) -> None:
        heap = self._heap
        while heap and heap[0][0] < until:
            at, _prio, _seq, kind, item = heapq.heappop(heap)
            if kind == "emit":
                self._emit(item, at, out)
            elif kind == "tick":
                device = self.devices[item]
                self._queue(device.tick(at), at)
                if device.next_tick is not None:
                    self._push(device.next_tick, _TICK, "tick", device.id)
                self._followups(device, at)
            else:
                device_id, fault, params, scripted = item
                device = self.devices[device_id]
                if scripted:
                    self.injected.append(InjectedFault(at, device_id, fault, params))
                try:
                    messages = device.apply_fault(fault, params, at)
                except ValueError as exc:
                    raise ScenarioError(f"{self.scenario.source if self.scenario else ''}: "
                                        f"{exc}") from None
                self._queue(messages, at)
                self._followups(device, at)
        self.cursor = max(self.cursor, until)

    def _queue(self, messages: list[SimMessage], now: datetime) -> None:
        for msg in messages:
            self._push(max(msg.at, now), _EMIT, "emit", msg)

    def _followups(self, device: DeviceSim, now: datetime) -> None:
        for f in device.followups:
            self._push(now + timedelta(seconds=f.delay_s), _FAULT, "fault",
                       (device.id, f.fault, f.params, False))
        device.followups.clear()

    def _emit(self, msg: SimMessage, at: datetime, out: list[SimMessage] | None) -> None:
        device = self.devices[msg.device]
        verdict = device.deliver(msg, at)
        if verdict is False:
            return
        if isinstance(verdict, datetime):
            self._push(verdict, _EMIT, "emit", replace(msg, at=verdict))
            return
        if msg.at != at:
            msg = replace(msg, at=at)
        if msg.action is None and msg.fault is None:
            device.last_message = msg
        self.sent[msg.model] += 1
        if out is not None:
            out.append(msg)
