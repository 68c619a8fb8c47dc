"""What a cluster hub shows of the other hubs: their devices' latest state and their live events.

Every hub holds the live state of the devices of the partitions it owns; its API is to answer
for every device all the same. So each hub publishes, over NATS core (no stream: a view, not a
record), on the connection its intake already has:

- ``hubview.<node>.devices``: the devices whose state changed, coalesced (each device once, its
  newest state) and sent every ``HUB_CLUSTER_VIEW_S`` (0.5 s), from the pipeline thread's tick;
  a JSON list of ``[device_id, model, kind, site, last_seen_ns, last_time_ns, online,
  status_reason, values]``. A partition's devices are all sent once when the hub adopts it
  (their state just came from PostgreSQL), so no hub waits for their next reading.
- ``hubview.<node>.events``: every event of the hub's live stream (``EventHub.relays``), as
  ``[[event, data], ...]``; the others ``deliver`` them to their own streams, where scopes and
  caps apply as to their own events. A hub never delivers its own subject's messages again.

Each hub keeps the latest row of every device it was told of (its own too, so a device it has
just handed over still shows its last values until its new owner's first publication), merged
by ``last_seen``: an older row never replaces a newer one. At start and after the cluster
connection comes back (NATS core is at most once: what was sent meanwhile is gone) the rows
are filled from the ``devices`` table the owners save (``HUB_STATE_SAVE_S``), and every event
stream is told to ``resync``.

Only in cluster mode: single-machine mode neither imports nor runs any of this.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.cluster.partition import partition_of
from hub.model import FieldValue, Reading
from hub.state import DeviceRow, DeviceStates, LiveState

if TYPE_CHECKING:
    from hub.api.events import EventHub
    from hub.cluster.handover import Handover
    from hub.cluster.intake import ClusterIntake
    from hub.runtime import Hub

log = logging.getLogger(__name__)

PREFIX = "hubview"
CHUNK_ROWS = 1000  # devices per message; halved while a message is over the server's limit
FALLBACK_MAX_PAYLOAD = 1024 * 1024  # NATS's default max_payload

# (node or None when read from the database, model, kind, site, last_seen_ns, last_time_ns,
#  online, status_reason, values as JSON: a str, sized to fit, where orjson's bytes keep a
#  4 KiB buffer each)
Row = tuple[str | None, str, str, str, int | None, int | None, bool | None, str | None, str]


class FleetView:
    """The rows of every device of the cluster, and the relay of live events between hubs."""

    def __init__(self, node_id: str, partitions: int, states: DeviceStates, handover: Handover,
                 intake: ClusterIntake, every_s: float,
                 extensions: Callable[[], dict[str, Any]],
                 sessions: sessionmaker[Session] | None = None) -> None:
        self.node_id = node_id
        self.partitions = partitions
        self.states = states
        self.handover = handover
        self.intake = intake
        self.every_s = every_s
        self.extensions = extensions  # the hub's, where the API puts its EventHub ("events")
        self.sessions = sessions  # the shared database: the devices table
        self.events: EventHub | None = None
        self._rows: dict[str, Row] = {}  # what the others sent, or the database said
        # the states this hub sent (references, no copies): after it hands a partition over,
        # its devices still show their last values until the new owner's first publication
        self._mine: dict[str, LiveState] = {}
        self._lock = threading.Lock()
        self._dirty: set[str] = set()  # the pipeline thread's
        self._owned: frozenset[int] = frozenset()
        self._sent = 0.0
        self._outbox: list[list[Any]] = []  # events waiting for the intake's loop
        self._outbox_lock = threading.Lock()
        self.rows_sent = 0
        self.rows_received = 0
        self.events_sent = 0
        self.events_received = 0

    @classmethod
    def attach(cls, hub: Hub, handover: Handover, intake: ClusterIntake) -> FleetView:
        """Wire a view into a cluster hub: hooks, the states' peers, the intake's NATS side."""
        view = cls(hub.settings.resolved_node_id(), hub.settings.cluster_partitions, hub.states,
                   handover, intake, hub.settings.cluster_view_s,
                   lambda: getattr(hub, "extensions", {}), hub.sessions)
        hub.states.peers = view
        hub.pipeline.add_reading_hook("cluster-view", view.on_reading)
        hub.pipeline.add_tick_hook("cluster-view", view.on_tick)
        intake.on_connect.append(view.on_connect)
        intake.reconnect_hooks.append(view.on_reconnect)
        return view

    # ------------------------------------------------------------------ the pipeline thread

    def on_reading(self, reading: Reading) -> None:
        """A device this hub holds changed: send its state with the next batch."""
        self._dirty.add(reading.device_id)

    def on_tick(self, _now: int) -> None:
        """Find the event stream, mark adopted partitions' devices, send what changed."""
        if self.events is None:
            self._find_events()
        owned = frozenset(self.handover.owned)
        if owned != self._owned:
            self._owned_changed(owned)
        if self._dirty and time.monotonic() - self._sent >= self.every_s:
            self._sent = time.monotonic()
            dirty, self._dirty = self._dirty, set()
            self._send(dirty)

    def _owned_changed(self, owned: frozenset[int]) -> None:
        adopted = owned - self._owned
        self._owned = owned
        count = self.partitions
        if adopted:  # their states were just loaded: tell the others at once
            states = self.states
            self._dirty.update(d for d in list(states.device_ids())
                               if states.get(d) is not None and partition_of(d, count) in adopted)

    def _send(self, device_ids: set[str]) -> None:
        rows: list[list[Any]] = []
        mine: dict[str, LiveState] = {}
        get = self.states.get
        for device_id in device_ids:
            s = get(device_id)
            if s is None:
                continue
            mine[device_id] = s
            rows.append([device_id, s.model, s.kind, s.site, s.last_seen_ns, s.last_time_ns,
                         s.online, s.status_reason, s.values])
        with self._lock:
            self._mine.update(mine)
        subject = f"{PREFIX}.{self.node_id}.devices"
        for start in range(0, len(rows), CHUNK_ROWS):
            self._publish_rows(subject, rows[start:start + CHUNK_ROWS])
        self.rows_sent += len(rows)

    def _publish_rows(self, subject: str, rows: list[list[Any]]) -> None:
        payload = orjson.dumps(rows)
        limit = self.intake.max_payload or FALLBACK_MAX_PAYLOAD
        if len(payload) > limit - 1024 and len(rows) > 1:
            half = len(rows) // 2
            self._publish_rows(subject, rows[:half])
            self._publish_rows(subject, rows[half:])
            return
        if len(payload) <= limit:  # one device larger than a message: not in the view
            self.intake.publish_core(subject, payload)

    def _find_events(self) -> None:
        from hub.api.events import EventHub

        events = self.extensions().get("events")
        if isinstance(events, EventHub):
            self.events = events
            events.relays.append(self.relay)

    # ------------------------------------------------------------------ any thread

    def relay(self, event: str, data: dict[str, Any]) -> None:
        """An event of this hub's live stream: to the other hubs (batched per loop turn)."""
        with self._outbox_lock:
            first = not self._outbox
            self._outbox.append([event, data])
        if first:
            self.intake.call_soon(self._flush_events)

    def _flush_events(self) -> None:
        with self._outbox_lock:
            batch, self._outbox = self._outbox, []
        if batch:
            try:
                payload = orjson.dumps(batch)
            except TypeError as exc:  # an event's data that is not JSON: a bug, not fatal
                log.error("cluster view: events not relayed: %s", exc)
                return
            self.events_sent += len(batch)
            self.intake.publish_core(f"{PREFIX}.{self.node_id}.events", payload)

    def state(self, device_id: str) -> tuple[LiveState, str | None] | None:
        """The latest row of a device as a state (not ours to change), and who sent it; for a
        device this hub no longer holds, its last state here (held by none we know of)."""
        row = self._rows.get(device_id)
        mine = self._mine.get(device_id)
        if mine is not None and (row is None or (mine.last_seen_ns or 0) >= (row[4] or 0)):
            return mine, None
        if row is None:
            return None
        node, model, kind, site, seen, at, online, reason, values = row
        state = LiveState(device_id, model, kind, site)
        state.last_seen_ns, state.last_time_ns = seen, at
        state.online, state.status_reason = online, reason
        decoded: dict[str, FieldValue] = orjson.loads(values)
        state.values = decoded
        return state, node

    def ids(self) -> list[str]:
        """Every device in the view."""
        with self._lock:
            return list({**self._rows, **self._mine})

    def brief(self) -> dict[str, tuple[str, str, bool | None]]:
        """Every device in the view: (site, kind, online)."""
        with self._lock:
            brief = {d: (row[3], row[2], row[6]) for d, row in self._rows.items()}
            for d, s in self._mine.items():
                row = self._rows.get(d)
                if row is None or (s.last_seen_ns or 0) >= (row[4] or 0):
                    brief[d] = (s.site, s.kind, s.online)
            return brief

    def health(self) -> dict[str, int]:
        """Counts for /api/cluster."""
        return {"devices": len(self.ids()), "rows_sent": self.rows_sent,
                "rows_received": self.rows_received, "events_sent": self.events_sent,
                "events_received": self.events_received}

    # ------------------------------------------------------------------ the intake's loop

    async def on_connect(self, nc: Client) -> None:
        """Subscribe to the other hubs' devices and events; fill in from the database."""
        self._fill_from_database()
        try:
            await nc.subscribe(f"{PREFIX}.*.devices", cb=self._on_devices)
            await nc.subscribe(f"{PREFIX}.*.events", cb=self._on_events)
        except Exception:  # the view only: never the intake's connect
            log.exception("cluster view: not subscribed; the others' devices are not shown")

    def on_reconnect(self) -> None:
        """Back on the cluster: what was sent meanwhile is lost; reread and resync."""
        self._fill_from_database()
        if self.events is not None:
            self.events.resync()

    def _sender(self, msg: Msg) -> str | None:
        node = msg.subject[len(PREFIX) + 1:msg.subject.rfind(".")]
        return None if node == self.node_id else node

    async def _on_devices(self, msg: Msg) -> None:
        node = self._sender(msg)
        if node is None:
            return
        try:
            rows = orjson.loads(msg.data)
            parsed: list[tuple[str, Row]] = [
                (str(r[0]), (node, sys.intern(str(r[1])), sys.intern(str(r[2])),
                             sys.intern(str(r[3])), r[4], r[5], r[6], r[7],
                             orjson.dumps(r[8]).decode()))
                for r in rows]
        except (orjson.JSONDecodeError, IndexError, TypeError, KeyError) as exc:
            log.warning("cluster view: a malformed device batch from %s: %s", node, exc)
            return
        self._merge(parsed, replace_equal=True)
        self.rows_received += len(parsed)

    async def _on_events(self, msg: Msg) -> None:
        node = self._sender(msg)
        events = self.events
        if node is None or events is None:
            return
        try:
            batch = orjson.loads(msg.data)
            items = [(str(event), dict(data)) for event, data in batch]
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            log.warning("cluster view: a malformed event batch from %s: %s", node, exc)
            return
        for event, data in items:
            events.deliver(event, data)
        self.events_received += len(items)

    def _merge(self, rows: list[tuple[str, Row]], *, replace_equal: bool) -> None:
        """Keep each device's newest row (a sender's change of the same ``last_seen``, e.g.
        offline by heartbeat, replaces; the database's only fills in what is older)."""
        with self._lock:
            held, mine = self._rows, self._mine
            for device_id, row in rows:
                old = held.get(device_id)
                if old is not None:
                    new_seen, old_seen = row[4] or 0, old[4] or 0
                    if new_seen < old_seen or (new_seen == old_seen and not replace_equal):
                        continue
                held[device_id] = row
                if replace_equal and device_id in mine:  # another hub holds it now
                    del mine[device_id]

    def _fill_from_database(self) -> None:
        threading.Thread(target=self._read_database, name="cluster-view-fill",
                         daemon=True).start()

    def _read_database(self) -> None:
        sessions = self.sessions
        if sessions is None:
            return
        started = time.monotonic()
        try:
            with sessions() as session:
                found = session.execute(select(
                    DeviceRow.device_id, DeviceRow.model, DeviceRow.kind, DeviceRow.site,
                    DeviceRow.last_seen_ns, DeviceRow.last_time_ns, DeviceRow.online,
                    DeviceRow.status_reason, DeviceRow.values_json)).all()
        except Exception as exc:
            log.warning("cluster view: the devices table was not read: %s", exc)
            return
        rows: list[tuple[str, Row]] = [
            (r[0], (None, sys.intern(r[1]), sys.intern(r[2]), sys.intern(r[3]), r[4], r[5],
                    r[6], r[7], r[8])) for r in found]
        self._merge(rows, replace_equal=False)
        log.info("cluster view: %d device rows read from the database in %.0f ms", len(rows),
                 (time.monotonic() - started) * 1000)

