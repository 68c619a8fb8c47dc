"""PT-NFC1 handheld patrol reader: scans and hazards as JSON with ISO 8601 +08:00 times.

The reader has no periodic telemetry. At each scheduled round of its route the inspector on
duty walks the checkpoints 2-8 minutes apart; in coverage gaps (basements, stairwells) the
reader buffers scans and uploads them later, oldest first, with ``ts`` = scan time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from hub.sites import Checkpoint, Device, PatrolRoute, Site
from simulators.message import SimMessage
from simulators.models.base import COMMON_FAULTS, DeviceSim, jdump

MODEL = "PT-NFC1"
READER_FAULTS = COMMON_FAULTS | {
    "last_will", "battery_drain", "skip_checkpoint", "out_of_order", "late_upload",
    "unknown_tag", "moved_tag", "hazard_report",
}
# What inspectors find on a walk: general hazards (a major one is a scenario's hazard_report
# with grade: major, so a simulated day's alarms stay what its scenario expects)
HAZARDS = (
    ("fire_exit_blocked", "安全出口被货物堵塞"),
    ("fire_exit_blocked", "stairwell B blocked by goods"),
    ("extinguisher_expired", "灭火器压力不足/过期"),
    ("gas_cylinder_unsafe", "液化气钢瓶未固定, 无报警器"),
    ("wiring_exposed", "电线私拉乱接, 线头裸露"),
    ("ebike_indoor_charging", "电动车在楼道内充电"),
    ("combustibles_stacked", "可燃杂物堆放于消防通道"),
    ("emergency_light_fault", "应急照明灯不亮"),
)


@dataclass(frozen=True, slots=True)
class NfcScan:
    """One ``patrol/{reader}/scan`` message; ``ts`` is the aware scan time."""

    reader: str
    tag_uid: str
    patroller: str
    ts: datetime
    lat: float
    lon: float
    battery_pct: int

    def encode(self) -> bytes:
        """Return the payload exactly as the datasheet writes it."""
        return jdump({"reader": self.reader, "tag_uid": self.tag_uid,
                      "patroller": self.patroller,
                      "ts": self.ts.replace(microsecond=0).isoformat(),
                      "lat": round(self.lat, 4), "lon": round(self.lon, 4),
                      "battery_pct": self.battery_pct})


@dataclass(frozen=True, slots=True)
class NfcHazard:
    """One ``patrol/{reader}/hazard`` message."""

    reader: str
    patroller: str
    tag_uid: str
    ts: datetime
    category: str
    note: str
    photo_ref: str
    grade: str | None = None

    def encode(self) -> bytes:
        """Return the payload exactly as the datasheet writes it (grade only when given)."""
        body = {"reader": self.reader, "patroller": self.patroller, "tag_uid": self.tag_uid,
                "ts": self.ts.replace(microsecond=0).isoformat(),
                "category": self.category, "note": self.note, "photo_ref": self.photo_ref}
        if self.grade is not None:
            body["grade"] = self.grade
        return jdump(body)


def photo_ref(local: datetime) -> str:
    """Return the reader's photo file name for a local time: img/2026/11/28/0804-40.jpg."""
    return f"img/{local:%Y/%m/%d}/{local:%H%M-%S}.jpg"


@dataclass
class Walk:
    """One planned walk of a route."""

    route: PatrolRoute
    patroller: str
    window_end: datetime
    scans: list[tuple[datetime, Checkpoint]]


class PtNfc1Sim(DeviceSim):
    """A handheld reader walked along its community's route at every scheduled round."""

    model: ClassVar[str] = MODEL
    kind: ClassVar[str] = "patrol_reader"
    interval_s: ClassVar[float] = 3600.0
    has_will: ClassVar[bool] = True
    faults: ClassVar[frozenset[str]] = READER_FAULTS

    def __init__(self, site: Site, device: Device, seed: int | str, start: datetime) -> None:
        super().__init__(site, device, seed, start)
        self.routes = [r for r in site.routes if device.id in r.readers]
        self.checkpoints = {c.id: c for c in site.checkpoints}
        self.inspectors = {i.id for i in site.inspectors}
        self.known_tags = {c.tag_uid.upper() for c in site.checkpoints}
        community = {c.id: c for c in site.communities}.get(device.community or "")
        self.home = (device.lat or (community.lat if community else None) or 0.0,
                     device.lon or (community.lon if community else None) or 0.0)
        self.pending_skip: list[str | None] = []
        self.pending_swap = 0
        self.outages: list[tuple[datetime, datetime]] = []  # late_upload windows
        self.drain: tuple[datetime, float, float, float] | None = None
        self.resume_at: datetime | None = None
        self.planned: set[tuple[datetime, str]] = set()
        self.next_tick = self._next_round_start(start, include_running=True)

    @property
    def status_topic(self) -> str:
        return f"patrol/{self.id}/status"

    @property
    def data_topic(self) -> str:
        return f"patrol/{self.id}/scan"

    # -- schedule --------------------------------------------------------------------------
    def _rounds_on(self, day: date) -> list[tuple[datetime, datetime, PatrolRoute, int]]:
        out = []
        for route in self.routes:
            if day.weekday() not in route.weekdays or day in route.skip_dates:
                continue
            for i, rnd in enumerate(route.rounds):
                begin = datetime.combine(day, rnd.start, tzinfo=self.tz)
                out.append((begin, begin + timedelta(minutes=rnd.window_min), route, i))
        return sorted(out, key=lambda r: (r[0], r[2].id))

    def _next_round_start(self, t: datetime, include_running: bool = False) -> datetime | None:
        day = self.local(t).date()
        for offset in range(-1 if include_running else 0, 9):
            for begin, end, _route, _i in self._rounds_on(day + timedelta(days=offset)):
                if begin > t or (include_running and begin <= t < end - timedelta(minutes=20)):
                    return begin if begin > t else t
        return None

    def tick(self, t: datetime) -> list[SimMessage]:
        out: list[SimMessage] = []
        day = self.local(t).date()
        for begin, end, route, i in self._rounds_on(day) + self._rounds_on(day - timedelta(1)):
            running = begin <= t < end - timedelta(minutes=20)
            if (begin == t or (running and t == self.start)) and \
                    (begin, route.id) not in self.planned:
                out += self._walk_messages(self._plan(route, i, begin, end, t))
                self.planned.add((begin, route.id))
                if len(self.planned) > 64:
                    self.planned.remove(min(self.planned))
        self.next_tick = self._next_round_start(t + timedelta(seconds=1))
        return out

    def inspector_on_duty(self, route: PatrolRoute, day: date, round_index: int) -> str:
        """Inspectors take turns: one per round, rotating through the route's team."""
        team = route.inspectors or sorted(self.inspectors) or [f"{self.id}-P"]
        n_rounds = max(1, len(route.rounds))
        return team[(day.toordinal() * n_rounds + round_index) % len(team)]

    def _plan(self, route: PatrolRoute, index: int, begin: datetime, end: datetime,
              now: datetime) -> Walk:
        rng = self.rng
        order = list(route.checkpoints)
        if route.order == "any":  # walked in the natural order with some local detours
            for _ in range(len(order) // 3):
                j = rng.randrange(len(order) - 1)
                order[j], order[j + 1] = order[j + 1], order[j]
        if self.pending_skip:
            wanted = self.pending_skip.pop(0)
            victim = wanted if wanted in order else rng.choice(order[1:] or order)
            order.remove(victim)
        if self.pending_swap and len(order) >= 3:
            self.pending_swap -= 1
            j = rng.randrange(1, len(order) - 1)
            order[j], order[j + 1] = order[j + 1], order[j]
        # inside the 15 minutes a round may take to start (round_not_started): normal runs are quiet
        walk_start = max(begin + timedelta(minutes=rng.uniform(0, 12)), now)
        gaps = [rng.uniform(120, 480) for _ in order[1:]]
        room = (end - timedelta(minutes=4) - walk_start).total_seconds()
        if sum(gaps) > room:
            gaps = [g * max(room, 30 * len(gaps)) / sum(gaps) for g in gaps]
        times = [walk_start]
        for g in gaps:
            times.append(times[-1] + timedelta(seconds=g))
        patroller = self.inspector_on_duty(route, self.local(begin).date(), index)
        return Walk(route, patroller, end,
                    [(tm, self.checkpoints[c]) for tm, c in zip(times, order, strict=True)])

    def battery_at(self, t: datetime, scans_today: int = 0) -> int:
        """Reader battery: full after the overnight charge, draining through the day."""
        if self.drain is not None:
            d0, b0, b1, over = self.drain
            frac = min(1.0, (t - d0).total_seconds() / over) if over > 0 else 1.0
            return max(0, round(b0 + (b1 - b0) * frac))
        local = self.local(t)
        hours = max(0.0, local.hour + local.minute / 60 - 6.5)
        return max(5, round(100 - 1.2 * hours - 0.15 * scans_today))

    def _position(self, cp: Checkpoint, jitter_m: float = 7.0) -> tuple[float, float]:
        lat = (cp.lat if cp.lat is not None else self.home[0])
        lon = (cp.lon if cp.lon is not None else self.home[1])
        d = jitter_m / 111_000
        return (lat + self.rng.gauss(0, d),
                lon + self.rng.gauss(0, d / math.cos(math.radians(lat or 1))))

    def scan(self, cp_tag: str, patroller: str, ts: datetime, pos: tuple[float, float],
             n: int = 0) -> NfcScan:
        """Build a scan reading."""
        return NfcScan(self.id, cp_tag, patroller, self.local(ts), pos[0], pos[1],
                       self.battery_at(ts, n))

    def _walk_messages(self, walk: Walk) -> list[SimMessage]:
        rng = self.rng
        scans = walk.scans
        upload: list[datetime] = [ts for ts, _cp in scans]
        # a coverage gap in one walk out of four: 2-4 scans buffered, sent when back in coverage
        if len(scans) >= 4 and rng.random() < 0.25:
            i = rng.randrange(0, len(scans) - 2)
            j = min(len(scans) - 1, i + rng.randint(1, 3))
            if j + 1 < len(scans):
                # coverage returns on the way to the next checkpoint: buffer goes out first
                gap = (scans[j + 1][0] - scans[j][0]).total_seconds()
                back = scans[j][0] + timedelta(seconds=gap * rng.uniform(0.3, 0.8))
            else:
                back = min(scans[j][0] + timedelta(seconds=rng.uniform(120, 600)),
                           walk.window_end - timedelta(seconds=30))
                back = max(back, scans[j][0] + timedelta(seconds=5))
            for k in range(i, j + 1):
                upload[k] = back + timedelta(milliseconds=200 * (k - i))
        for k, (ts, _cp) in enumerate(scans):  # planned late_upload outages
            for a, b in self.outages:
                if a <= ts < b:  # after the older backlog the late_upload fault sends first
                    upload[k] = b + timedelta(seconds=30, milliseconds=200 * k)
        out: list[SimMessage] = []
        for k, (ts, cp) in enumerate(scans):
            reading = self.scan(cp.tag_uid, walk.patroller, ts, self._position(cp), k)
            out.append(self.message(self.data_topic, reading.encode(), 1, upload[k],
                                    device_time=ts))
            if rng.random() < 0.03:  # found something worth reporting
                out += self._hazard(walk.patroller, cp, ts + timedelta(
                    seconds=rng.uniform(30, 110)), None, None, at=None)
        return out

    def _hazard(self, patroller: str, cp: Checkpoint, ts: datetime, category: str | None,
                note: str | None, at: datetime | None, fault: str | None = None,
                grade: str | None = None) -> list[SimMessage]:
        if category is None or note is None:
            cat, text = self.rng.choice(HAZARDS)
            category, note = category or cat, note or text
        local = self.local(ts)
        reading = NfcHazard(self.id, patroller, cp.tag_uid, local, category, note,
                            photo_ref(local), grade)
        return [self.message(f"patrol/{self.id}/hazard", reading.encode(), 1, at or ts,
                             device_time=ts, fault=fault)]

    # -- delivery --------------------------------------------------------------------------
    def deliver(self, msg: SimMessage, t: datetime) -> datetime | bool:
        if msg.action is not None or (not self.silent and self.connected):
            return True
        return self.resume_at if self.resume_at and self.resume_at > t else False

    def report(self, t: datetime) -> list[SimMessage]:
        return []

    # -- faults ----------------------------------------------------------------------------
    def prepare(self, fault: str, params: dict[str, Any], at: datetime) -> None:
        """Learn of a future fault before the run (late uploads buffer earlier scans)."""
        if fault == "late_upload":
            self.outages.append((at - timedelta(hours=float(params["hours"])), at))

    def _duty(self, t: datetime) -> tuple[PatrolRoute | None, str]:
        if not self.routes:
            return None, sorted(self.inspectors)[0] if self.inspectors else f"{self.id}-P"
        route = self.routes[0]
        local = self.local(t)
        index = 0
        for i, rnd in enumerate(route.rounds):
            if rnd.start <= local.time():
                index = i
        return route, self.inspector_on_duty(route, local.date(), index)

    def _checkpoint(self, params: dict[str, Any]) -> Checkpoint:
        wanted = params.get("checkpoint")
        if wanted:
            if wanted not in self.checkpoints:
                raise ValueError(f"{self.id}: unknown checkpoint {wanted!r}")
            return self.checkpoints[wanted]
        route = self.routes[0] if self.routes else None
        ids = route.checkpoints if route else list(self.checkpoints)
        return self.checkpoints[self.rng.choice(ids)]

    def fault_go_silent(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.resume_at = t + timedelta(seconds=params["duration_s"]) \
            if params.get("duration_s") else None
        return super().fault_go_silent(params, t)

    def fault_last_will(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.resume_at = t + timedelta(seconds=params["reconnect_after_s"]) \
            if params.get("reconnect_after_s") else None
        return super().fault_last_will(params, t)

    def fault_battery_drain(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.drain = (t, float(self.battery_at(t)), float(params.get("to_pct", 10)),
                      float(params.get("over_s", 300)))
        return []

    def fault_skip_checkpoint(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.pending_skip.append(params.get("checkpoint"))
        return []

    def fault_out_of_order(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.pending_swap += 1
        return []

    def fault_unknown_tag(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        tag = params.get("tag_uid")
        while not tag or tag.upper() in self.known_tags:
            tag = "04" + "".join(self.rng.choice("0123456789ABCDEF") for _ in range(12))
        route, patroller = self._duty(t)
        cp = self.checkpoints[route.checkpoints[0]] if route else None
        pos = self._position(cp) if cp else self.home
        return [self.message(self.data_topic, self.scan(tag, patroller, t, pos).encode(), 1, t,
                             fault="unknown_tag")]

    def fault_moved_tag(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        cp = self._checkpoint(params)
        _route, patroller = self._duty(t)
        distance = float(params.get("distance_m", 800))
        bearing = self.rng.uniform(0, 2 * math.pi)
        lat = (cp.lat or self.home[0]) + distance * math.cos(bearing) / 111_000
        lon = (cp.lon or self.home[1]) + distance * math.sin(bearing) / (
            111_000 * math.cos(math.radians(lat)))
        return [self.message(self.data_topic,
                             self.scan(cp.tag_uid, patroller, t, (lat, lon)).encode(), 1, t,
                             fault="moved_tag")]

    def fault_hazard_report(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        cp = self._checkpoint(params)
        _route, patroller = self._duty(t)
        scan = self.message(self.data_topic, self.scan(cp.tag_uid, patroller, t,
                                                       self._position(cp)).encode(), 1, t)
        later = t + timedelta(seconds=45)
        return [scan, *self._hazard(patroller, cp, later, params.get("category"),
                                    params.get("note"), at=later, fault="hazard_report",
                                    grade=params.get("grade"))]

    def fault_late_upload(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        """Back in coverage after ``hours``: upload the walk made back then, oldest first.

        Scheduled walks inside the simulated part of the outage were buffered already (see
        ``prepare``) and follow 30 s later; the walk at ``t - hours`` is synthesised when it
        lies before the start of the run.
        """
        route = self.routes[0] if self.routes else None
        begin = t - timedelta(hours=float(params["hours"]))
        if route is None or begin >= self.start:
            return []
        walk = self._plan(route, 0, begin, begin + timedelta(minutes=90), begin)
        out = []
        for k, (ts, cp) in enumerate(walk.scans):
            reading = self.scan(cp.tag_uid, walk.patroller, ts, self._position(cp), k)
            out.append(self.message(self.data_topic, reading.encode(), 1,
                                    t + timedelta(milliseconds=200 * k), device_time=ts,
                                    fault="late_upload"))
        return out

    def restore(self, t: datetime) -> None:
        self.drain = None
        self.pending_skip.clear()
        self.pending_swap = 0

    # -- garbage hooks ---------------------------------------------------------------------
    def sample_payload(self, t: datetime, device_time: datetime) -> bytes:
        route, patroller = self._duty(t)
        cp = self.checkpoints[route.checkpoints[0]] if route else None
        tag = cp.tag_uid if cp else "04000000000000"
        return self.scan(tag, patroller, device_time, self._position(cp) if cp else self.home
                         ).encode()

    def wrong_types_payload(self, t: datetime) -> bytes:
        return jdump({"reader": 3, "tag_uid": 4711, "patroller": None, "ts": 1764316992,
                      "lat": "29.03N", "lon": [111.69], "battery_pct": "81%"})

    def unknown_device_payload(self, t: datetime) -> tuple[str, bytes]:
        payload = self.sample_payload(t, t).replace(self.id.encode(), b"FP-R99")
        return "patrol/FP-R99/scan", payload

