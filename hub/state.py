"""Latest values and online/offline per device, persisted to the state store."""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import BigInteger, Boolean, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from hub.db import DEVICE_ID_CHARS, Base
from hub.ingest.normalize import Normalizer, status_point
from hub.model import FieldValue, Reading
from hub.profiles.schema import Profile
from hub.setaside.rows import OnBad, write_rows
from hub.sites import SiteRegistry

HEARTBEAT_FACTOR = 3
SAVE_CHUNK = 2000

log = logging.getLogger(__name__)
_COLUMNS = ("device_id", "model", "kind", "site", "last_seen_ns", "last_time_ns", "online",
            "status_reason", "values_json")


class DeviceRow(Base):
    """The persisted state of one device."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_CHARS), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(64), index=True)
    last_seen_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_time_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    online: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    status_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    values_json: Mapped[str] = mapped_column(Text, default="{}")


class _Layout:
    """The keys of a device's latest values, in order, shared by every device with those keys."""

    __slots__ = ("index", "keys")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.index = {key: i for i, key in enumerate(keys)}


_LAYOUTS: dict[tuple[str, ...], _Layout] = {}
_NO_VALUES = _Layout(())
_NO_VALS: tuple[FieldValue, ...] = ()


def _layout(keys: tuple[str, ...]) -> _Layout:
    layout = _LAYOUTS.get(keys)
    if layout is None:
        layout = _LAYOUTS[keys] = _Layout(tuple(sys.intern(k) for k in keys))
    return layout


class LiveState:
    """What the hub knows of one device now.

    The latest values are kept as a tuple in the order of a shared key layout (one per set of
    keys, not one dict per device: 100,000 devices); ``values`` gives them as a new dict.
    """

    __slots__ = (
        "_layout", "_vals", "device_id", "kind", "last_seen_ns", "last_time_ns", "model",
        "online", "site", "status_reason",
    )

    def __init__(self, device_id: str, model: str, kind: str, site: str) -> None:
        self.device_id = device_id
        self.model = model
        self.kind = kind
        self.site = site
        self.last_seen_ns: int | None = None
        self.last_time_ns: int | None = None
        self.online: bool | None = None
        self.status_reason: str | None = None
        self._layout = _NO_VALUES
        self._vals = _NO_VALS

    @property
    def values(self) -> dict[str, FieldValue]:
        """The latest value of every field (a new dict)."""
        return dict(zip(self._layout.keys, self._vals, strict=True))

    @values.setter
    def values(self, values: dict[str, FieldValue]) -> None:
        self._layout = _layout(tuple(values))
        self._vals = tuple(values.values())

    def update_values(self, new: dict[str, FieldValue]) -> None:
        """``values.update(new)``: same keys, same order."""
        if not new:
            return
        layout = self._layout
        if len(new) == len(layout.keys) and tuple(new) == layout.keys:
            # every key, in the layout's order: a device's next report of the same shape
            # (the usual case; bench/pipeline_micro.py)
            self._vals = tuple(new.values())
            return
        index = layout.index
        if index.keys() >= new.keys():  # a set comparison in C, not a generator per key
            vals = list(self._vals)
            for key, value in new.items():
                vals[index[key]] = value
            self._vals = tuple(vals)
            return
        merged = self.values
        merged.update(new)
        self.values = merged


def _iso(ns: int | None) -> str | None:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat() if ns is not None else None


class PeerStates(Protocol):
    """A cluster hub's view of the devices other hubs hold (``hub.cluster.view``)."""

    node_id: str

    def state(self, device_id: str) -> tuple[LiveState, str | None] | None:
        """The latest state another hub published of a device, and that hub's id."""

    def ids(self) -> list[str]:
        """Every device in the view."""

    def brief(self) -> dict[str, tuple[str, str, bool | None]]:
        """Every device in the view: (site, kind, online)."""

    def health(self) -> dict[str, int]:
        """Counts for /api/cluster."""


class DeviceStates:
    """All device states; updated from the pipeline thread, read from the API."""

    def __init__(
        self, profiles: list[Profile], sites: SiteRegistry, normalizer: Normalizer,
        sessions: sessionmaker[Session] | None = None,
    ) -> None:
        self.profiles = {p.model: p for p in profiles}
        self.sites = sites
        self.normalizer = normalizer
        self._sessions = sessions
        self._devices: dict[str, LiveState] = {}
        self._dirty: set[str] = set()
        self._to_save: list[str] = []  # taken at the save period, snapshotted a chunk a tick
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._save_queue: queue.Queue[list[dict[str, Any]]] | None = None
        self.on_set_aside: OnBad | None = None  # told of a state row the database refused
        self.peers: PeerStates | None = None  # a cluster hub: the devices the others hold
        self._timeouts = {
            p.model: int(HEARTBEAT_FACTOR * p.report_interval_s * 1e9)
            for p in profiles if not p.last_will
        }

    # ------------------------------------------------------------------ pipeline thread

    def observe(self, reading: Reading) -> list[Reading]:
        """Update from a reading; return status readings for online transitions it implies."""
        state = self._devices.get(reading.device_id)
        if state is None:
            state = LiveState(reading.device_id, reading.model, reading.kind, reading.site)
            with self._lock:
                self._devices[reading.device_id] = state
        self._dirty.add(reading.device_id)
        if reading.online is not None:
            state.online = reading.online
            state.status_reason = reading.status_reason
            state.last_seen_ns = reading.received_ns
            return []
        # The latest receipt (see hub.clock): in wall-clock mode receipts only grow anyway.
        state.last_seen_ns = reading.received_ns
        if state.last_time_ns is None or reading.time_ns >= state.last_time_ns:
            state.last_time_ns = reading.time_ns
            if reading.message not in ("scan", "hazard"):
                state.update_values(reading.values)
            else:
                rv = reading.values
                state.update_values({k: rv[k] for k in ("battery_pct", "lat", "lon") if k in rv})
        if state.online is not True:
            state.online = True
            state.status_reason = "message"
            # Stamped like the message that implies it, so rules see one device-time order.
            return [self._status_reading(state, True, "message", reading.time_ns,
                                         reading.received_ns, implied=True)]
        return []

    def check_heartbeats(self, now_ns: int) -> list[Reading]:
        """Mark silent devices of models without a last will offline; return those readings."""
        transitions = []
        for state in list(self._devices.values()):
            timeout = self._timeouts.get(state.model)
            if timeout is None or state.online is not True or state.last_seen_ns is None:
                continue
            if now_ns - state.last_seen_ns > timeout:
                state.online = False
                state.status_reason = "heartbeat_timeout"
                self._dirty.add(state.device_id)
                transitions.append(
                    self._status_reading(state, False, "heartbeat_timeout", now_ns, now_ns)
                )
        return transitions

    def _status_reading(
        self, state: LiveState, online: bool, reason: str, at: int, received: int,
        implied: bool = False,
    ) -> Reading:
        _site, tags = self.normalizer.base_tags(state.device_id, state.model)
        point = status_point(tags, state.kind, online, reason, at)
        return Reading(
            device_id=state.device_id, model=state.model, kind=state.kind, site=state.site,
            message="status", time_ns=at, received_ns=received, points=(point,),
            values={"online": online}, online=online, status_reason=reason, implied=implied,
        )

    # ------------------------------------------------------------------ persistence

    def save(self, wait: bool = True) -> None:
        """Persist the states changed since the last save.

        The rows are snapshotted on the calling thread (the pipeline's: cheap) and written by a
        background thread with one bulk upsert; ``wait`` blocks until every queued save is in
        the database (at stop).
        """
        if self._sessions is None:
            return
        self.begin_save()
        self.continue_save(None)
        if wait and self._save_queue is not None:
            self._save_queue.join()

    def begin_save(self) -> None:
        """Take the devices changed since the last save into the list still to be saved."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        self._to_save.extend(d for d in dirty if d not in self._queued)
        self._queued.update(dirty)

    def continue_save(self, limit: int | None) -> None:
        """Snapshot up to ``limit`` devices (all with None) and hand them to the writer.

        Spread over ticks, so that the pipeline thread never pauses long (alarm latency).
        """
        if self._sessions is None or not self._to_save:
            return
        if limit is None or limit >= len(self._to_save):
            dirty, self._to_save = self._to_save, []
        else:
            dirty, self._to_save = self._to_save[:limit], self._to_save[limit:]
        self._queued.difference_update(dirty)
        if not self._queued:
            self._queued = set()  # a set never shrinks: 100,000 ids left a 4 MB table behind
        if dirty:
            rows = []
            for device_id in dirty:
                s = self._devices.get(device_id)
                if s is None:
                    continue
                rows.append(self._row(s))
            if rows:
                self._saves().put(rows)

    @staticmethod
    def _row(s: LiveState) -> dict[str, Any]:
        return {
            "device_id": s.device_id, "model": s.model, "kind": s.kind, "site": s.site,
            "last_seen_ns": s.last_seen_ns, "last_time_ns": s.last_time_ns,
            "online": s.online, "status_reason": s.status_reason,
            "values_json": orjson.dumps(s.values).decode(),
        }

    def _saves(self) -> queue.Queue[list[dict[str, Any]]]:
        if self._save_queue is None:
            self._save_queue = queue.Queue()
            threading.Thread(target=self._save_loop, name="device-state-writer",
                             daemon=True).start()
        return self._save_queue

    def _save_loop(self) -> None:
        assert self._save_queue is not None
        while True:
            rows = self._save_queue.get()
            try:
                # a row the database refuses is set aside (a refusal), never retried forever
                write_rows("devices", rows, self._write_rows, self.on_set_aside)
            except Exception:  # the database is down: save them again next time
                log.exception("saving %d device states failed; retrying on the next save",
                              len(rows))
                with self._lock:
                    self._dirty.update(r["device_id"] for r in rows)
            finally:
                self._save_queue.task_done()

    def _write_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert rows in chunks: one DBAPI executemany (SQLite / PostgreSQL), else ORM."""
        assert self._sessions is not None
        with self._sessions.begin() as session:
            connection = session.connection()
            dialect = connection.dialect
            if dialect.name in ("sqlite", "postgresql"):
                mark = "?" if dialect.paramstyle == "qmark" else "%s"
                sql = (
                    f"INSERT INTO devices ({', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join([mark] * len(_COLUMNS))}) "
                    "ON CONFLICT (device_id) DO UPDATE SET "
                    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
                )
                cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                for start in range(0, len(rows), SAVE_CHUNK):
                    cursor.executemany(
                        sql, [tuple(r[c] for c in _COLUMNS) for r in rows[start:start + SAVE_CHUNK]]
                    )
                cursor.close()
                return
            for start in range(0, len(rows), SAVE_CHUNK):
                chunk = rows[start:start + SAVE_CHUNK]
                session.execute(delete(DeviceRow).where(
                    DeviceRow.device_id.in_([r["device_id"] for r in chunk])))
                session.execute(DeviceRow.__table__.insert(), chunk)  # type: ignore[attr-defined]

    def load(self, wanted: Callable[[str], bool] | None = None) -> int:
        """Load persisted states (at start; a cluster hub: of the ``wanted`` devices it takes
        over); return how many."""
        if self._sessions is None:
            return 0
        with self._sessions() as session:
            rows = session.scalars(select(DeviceRow)).all()
        if wanted is not None:
            rows = [row for row in rows if wanted(row.device_id)]
        for row in rows:
            state = LiveState(row.device_id, row.model, row.kind, row.site)
            registered = self.sites.device(row.device_id)
            if registered is not None:
                state.site = registered[0].site
            elif row.model in self.profiles:  # tracked: counts towards the unregistered cap
                self.normalizer.base_tags(row.device_id, row.model)
            state.last_seen_ns = row.last_seen_ns
            state.last_time_ns = row.last_time_ns
            state.online = row.online
            state.status_reason = row.status_reason
            state.values = orjson.loads(row.values_json)
            self._devices[row.device_id] = state
        return len(rows)

    def release(self, keep: Callable[[str], bool]) -> int:
        """Save the states of devices ``keep`` refuses now (in this thread) and forget them (a
        cluster hub hands them over); return how many."""
        self.save(wait=True)  # an older queued row must not land after the one written here
        with self._lock:
            gone = [s for d, s in self._devices.items() if not keep(d)]
        rows = [self._row(s) for s in gone]
        if rows and self._sessions is not None:  # a bad row set aside, not the hand-over
            write_rows("devices", rows, self._write_rows, self.on_set_aside)
        with self._lock:
            for s in gone:
                del self._devices[s.device_id]
                self._dirty.discard(s.device_id)
        return len(gone)

    # ------------------------------------------------------------------ readers (any thread)

    def get(self, device_id: str) -> LiveState | None:
        """Return the state of a device that has reported, or None."""
        return self._devices.get(device_id)

    def describe(self, device_id: str) -> dict[str, Any] | None:
        """Return the API view of a device (registered or seen), or None if unknown."""
        state = self._devices.get(device_id)
        peers = self.peers
        held_by: str | None = None
        if peers is not None:  # a cluster hub: ours, else what the hub holding it published
            held_by = peers.node_id
            if state is None:
                found = peers.state(device_id)
                state, held_by = found if found is not None else (None, None)
        entry = self.sites.device(device_id)
        if state is None and entry is None:
            return None
        result: dict[str, Any] = {"device_id": device_id, "registered": entry is not None}
        if peers is not None:
            result["held_by"] = held_by
        if entry is not None:
            site, device = entry
            profile = self.profiles.get(device.model)
            result.update(
                site=site.site, model=device.model, kind=profile.kind if profile else None,
                community=device.community, name=device.name, lat=device.lat, lon=device.lon,
                place=device.place,
            )
        if state is not None:
            result.update(
                model=state.model, kind=state.kind, site=result.get("site", state.site),
                online=state.online, status_reason=state.status_reason,
                last_seen=_iso(state.last_seen_ns), last_time=_iso(state.last_time_ns),
                values=state.values,
            )
        else:
            result.update(online=None, status_reason=None, last_seen=None, last_time=None,
                          values={})
        return result

    def device_ids(self) -> Iterable[str]:
        """All devices that are registered or have reported."""
        with self._lock:
            seen = list(self._devices)
        peers = self.peers.ids() if self.peers is not None else ()
        return dict.fromkeys([*self.sites.devices, *seen, *peers]).keys()

    def group_counts(self) -> list[dict[str, Any]]:
        """Per site and kind: total, online, offline, never seen (the console's status panel)."""
        with self._lock:
            local = {d: (s.site, s.kind, s.online) for d, s in self._devices.items()}
        # a cluster hub: the others' devices too, ours where both know one
        seen = {**self.peers.brief(), **local} if self.peers is not None else local
        groups: dict[tuple[str, str], dict[str, Any]] = {}

        def add(site: str, kind: str, online: bool | None) -> None:
            row = groups.get((site, kind))
            if row is None:
                row = groups[(site, kind)] = {"site": site, "kind": kind, "total": 0,
                                              "online": 0, "offline": 0, "never": 0}
            row["total"] += 1
            row["online" if online else "offline" if online is False else "never"] += 1

        for device_id, device in self.sites.devices.items():
            state = seen.pop(device_id, None)
            profile = self.profiles.get(device.model)
            add(device.site.site, profile.kind if profile else "unknown",
                state[2] if state is not None else None)
        for site, kind, online in seen.values():
            add(site, kind, online)
        return [groups[key] for key in sorted(groups)]

    def counts(self) -> dict[str, int]:
        """Counts for health: seen, online, offline, unassigned."""
        states = list(self._devices.values())
        return {
            "registered": len(self.sites.devices),
            "seen": len(states),
            "online": sum(1 for s in states if s.online),
            "offline": sum(1 for s in states if s.online is False),
            "unassigned": sum(1 for s in states if s.site == "unassigned"),
        }
