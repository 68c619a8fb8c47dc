"""The alarm lifecycle: one open alarm per (device, rule), ThingsBoard's four states.

Transitions (raise, reopen, escalate, de-escalate, clear, ack, assign, comment) are sent out at
once: an ``alarm`` point, the retained MQTT topic and the webhooks. Their rows and history are
written off the pipeline's thread (a commit under load took 10-67 ms): by the hub's flush hook,
in the store writer's thread before the batch that caused them is acknowledged; a writer thread
of this service is the backstop (every ``flush_interval_s``, at once past ``max_pending``, and
at once when a transition hook queued an op, e.g. a notification to send);
officer actions and reads write what is pending first.
Repeats of an active alarm (count, value, last seen) stay in memory and are written and
republished at most every ``flush_interval_s``. Thread-safe: the pipeline thread raises and
clears, API threads ack, clear, assign and comment.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, MutableSequence, Sequence
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from hub.alarms import metrics
from hub.alarms.merge import merge, officer_fields, synced
from hub.alarms.model import (
    ACTIVE_ACK,
    ACTIVE_STATES,
    ACTIVE_UNACK,
    CLEARED_ACK,
    CLEARED_UNACK,
    SEVERITIES,
    SEVERITY_RANK,
    STATE_ALIASES,
    STATES,
    SYSTEM,
    Alarm,
    AlarmNotFound,
    InvalidTransition,
    iso,
)
from hub.alarms.store import AlarmStore, HistoryEntry, StaleAlarms
from hub.alarms.webhooks import WebhookSender
from hub.model import FieldValue, Point
from hub.settings import Settings
from hub.sites import SiteRegistry

log = logging.getLogger(__name__)

EmitPoints = Callable[[list[Point]], None]
TransitionHook = Callable[[str, Alarm, str], Callable[[Session], None] | None]
Publish = Callable[[str, bytes, bool], None]


def _topic_part(text: str) -> str:
    return text.replace("/", "_").replace("+", "_").replace("#", "_") or "_"


def parse_states(text: str | Sequence[str] | None) -> list[str] | None:
    """Expand a state filter (comma list; aliases active, cleared, unack, open)."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    states: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item in STATE_ALIASES:
            states.extend(STATE_ALIASES[item])
        elif item in STATES:
            states.append(item)
        else:
            raise ValueError(f"unknown state {item!r}: use {', '.join(STATES)} "
                             f"or {', '.join(STATE_ALIASES)}")
    return states or None


class AlarmService:
    """Raises, updates and clears alarms and records every transition."""

    def __init__(
        self,
        engine: Engine,
        *,
        emit_points: EmitPoints | None = None,
        publish: Publish | None = None,
        webhooks: WebhookSender | None = None,
        sites: SiteRegistry | None = None,
        clock: Callable[[], int] = time.time_ns,
        flush_interval_s: float = 5.0,
        topic_prefix: str = "hub/alarms",
        max_pending: int = 500,
    ) -> None:
        self.store = AlarmStore(engine)
        self.emit_points = emit_points
        self.publish = publish
        self.webhooks = webhooks
        self.sites = sites or SiteRegistry([])
        self.clock = clock
        self.flush_ns = int(flush_interval_s * 1e9)
        self.topic_prefix = topic_prefix.rstrip("/")
        self._lock = threading.RLock()
        self._open: dict[tuple[str, str], Alarm] = {}
        self._by_id: dict[str, Alarm] = {}
        self._dirty: dict[str, Alarm] = {}
        # transitions not yet written: rows (True = insert) and history, one transaction per flush
        self._pending_rows: dict[str, tuple[Alarm, bool]] = {}
        self._pending_history: list[dict[str, Any]] = []
        self.max_pending = max_pending
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        # transition hooks return an op run in the transaction that writes the transition
        self.transition_hooks: list[TransitionHook] = []
        self._pending_ops: list[Callable[[Session], None]] = []
        self.write_listeners: list[Callable[[], None]] = []
        # cluster mode (hub.cluster.wiring): writes carry the row version and merge on a
        # conflict; ``owns`` says which devices' alarms this hub holds; ``announce`` tells the
        # owner of a device that an officer changed one of its alarms here
        self.shared = False
        self.owns: Callable[[str], bool] | None = None
        self.announce: Callable[[Alarm], None] | None = None
        self._to_announce: list[Alarm] = []
        self._last_flush = clock()
        for alarm in self.store.load_open():
            self._remember(alarm)
        metrics.ALARMS_OPEN.set(len(self._open))
        # Lock order: _write_lock before _lock, never the other way round.
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name="alarm-writer",
                                        daemon=True)
        self._writer.start()

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: Engine, *, emit_points: EmitPoints | None = None,
        publish: Publish | None = None, sites: SiteRegistry | None = None,
    ) -> AlarmService:
        """Build the service with the webhook settings (HUB_WEBHOOK_URLS, HUB_WEBHOOK_SECRET)."""
        webhooks = WebhookSender.from_text(
            settings.webhook_urls, settings.webhook_secret,
            queue_size=settings.webhook_queue_size, max_attempts=settings.webhook_max_attempts)
        if webhooks is not None and not settings.webhook_secret:
            log.warning("webhooks configured without HUB_WEBHOOK_SECRET: bodies are unsigned")
        return cls(engine, emit_points=emit_points, publish=publish, webhooks=webhooks,
                   sites=sites)

    # -- rule-facing API ---------------------------------------------------------------------

    def raise_or_update(
        self, device_id: str, site: str, kind: str, rule: str, severity: str, value: Any,
        message: str, message_zh: str, at_ns: int, details: dict[str, Any] | None = None,
        *, model: str | None = None,
    ) -> str:
        """Open a new alarm, reopen a cleared one, change its severity or count a repeat.

        Returns the alarm id. A cleared_ack alarm is closed, so a breach after it opens a new
        alarm. Escalation makes an acknowledged alarm unacknowledged again; de-escalation keeps
        the acknowledgement.
        """
        if severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {severity!r}: use {', '.join(SEVERITIES)}")
        with self._lock:
            alarm = self._open.get((device_id, rule))
            if alarm is None:
                return self._create(device_id, site, kind, rule, severity, value, message,
                                    message_zh, at_ns, details, model)
            before = alarm.state
            alarm.value = value
            alarm.message = message
            alarm.message_zh = message_zh
            if details is not None:
                alarm.details = details
            alarm.last_seen_ns = max(alarm.last_seen_ns, at_ns)
            alarm.count += 1
            if alarm.state in (CLEARED_UNACK,):
                alarm.state = ACTIVE_UNACK
                alarm.severity = severity
                alarm.cleared_ns = None
                alarm.cleared_by = None
                alarm.acked_ns = None
                alarm.acked_by = None
                self._transition(alarm, "reopen", SYSTEM, at_ns, before)
            elif severity != alarm.severity:
                escalate = SEVERITY_RANK[severity] < SEVERITY_RANK[alarm.severity]
                alarm.severity = severity
                if escalate and alarm.state == ACTIVE_ACK:
                    alarm.state = ACTIVE_UNACK
                    alarm.acked_ns = None
                    alarm.acked_by = None
                self._transition(alarm, "escalate" if escalate else "deescalate", SYSTEM,
                                 at_ns, before)
            else:
                alarm.updated_ns = self.clock()
                self._dirty[alarm.id] = alarm
            return alarm.id

    def auto_clear(self, device_id: str, rule: str, at_ns: int,
                   note: str | None = None) -> str | None:
        """Clear the active alarm of (device, rule) because its condition cleared."""
        with self._lock:
            alarm = self._open.get((device_id, rule))
            if alarm is None or alarm.state not in ACTIVE_STATES:
                return None
            self._do_clear(alarm, SYSTEM, at_ns, note or "condition cleared")
            return alarm.id

    def add_listener(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``listener(action, alarm_json)`` on every transition (holds the lock: be brief)."""
        self.listeners.append(listener)

    def add_transition_hook(self, hook: TransitionHook) -> None:
        """Call ``hook(action, alarm, actor)`` on every transition (lock held: be brief); an op
        it returns runs in the transaction that writes the transition."""
        self.transition_hooks.append(hook)

    def add_write_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each write of transitions has committed."""
        self.write_listeners.append(listener)

    def peek(self, alarm_id: str) -> dict[str, Any] | None:
        """The JSON of an alarm held in memory (open, or closed and not yet written), or None."""
        with self._lock:
            alarm = self._by_id.get(alarm_id)
            if alarm is None and alarm_id in self._pending_rows:
                alarm = self._pending_rows[alarm_id][0]
            return None if alarm is None else alarm.to_json()

    def open_alarms(self) -> list[tuple[str, str, str, str, str]]:
        """Return (device_id, site, kind, rule, severity) of every active alarm."""
        with self._lock:
            return [(a.device_id, a.site, a.kind, a.rule, a.severity)
                    for a in self._open.values() if a.state in ACTIVE_STATES]

    def rule_times(self) -> dict[str, dict[str, int]]:
        """Device -> rule -> the newest device time a rule changed its alarm held in memory (a
        raise or repeat, or a clear by the rule: a person's clear is wall-clock time)."""
        times: dict[str, dict[str, int]] = {}
        with self._lock:
            for a in self._open.values():
                at = a.last_seen_ns
                if a.cleared_by == SYSTEM and a.cleared_ns is not None:
                    at = max(at, a.cleared_ns)
                rules = times.setdefault(a.device_id, {})
                rules[a.rule] = max(rules.get(a.rule, at), at)
        return times

    def forget_devices(self, keep: Callable[[str], bool]) -> int:
        """Write what is pending, then drop the open alarms of devices ``keep`` refuses from
        memory (a cluster hub hands them over; the new owner reloads them); return how many."""
        self.flush(force=True)
        with self._lock:
            gone = [a for a in self._open.values() if not keep(a.device_id)]
            for alarm in gone:
                self._forget(alarm)
            metrics.ALARMS_OPEN.set(len(self._open))
        return len(gone)

    def reload_devices(self, wanted: Callable[[str], bool]) -> list[tuple[str, str, str, str, str]]:
        """Load the open alarms of the ``wanted`` devices from the store (another hub may have
        changed them); return them as ``open_alarms`` does."""
        fresh = [a for a in self.store.load_open() if wanted(a.device_id)]
        with self._lock:
            for alarm in list(self._open.values()):
                if wanted(alarm.device_id):
                    self._forget(alarm)
            for alarm in fresh:
                self._remember(alarm)
            metrics.ALARMS_OPEN.set(len(self._open))
            return [(a.device_id, a.site, a.kind, a.rule, a.severity)
                    for a in fresh if a.state in ACTIVE_STATES]

    # -- officer-facing API ------------------------------------------------------------------

    def ack(self, alarm_id: str, user: str) -> dict[str, Any]:
        """Acknowledge an alarm (active_unack -> active_ack, cleared_unack -> cleared_ack)."""
        with self._lock:
            alarm = self._find(alarm_id)
            before = alarm.state
            if before == ACTIVE_UNACK:
                alarm.state = ACTIVE_ACK
            elif before == CLEARED_UNACK:
                alarm.state = CLEARED_ACK
            else:
                raise InvalidTransition(f"alarm {alarm_id} is {before}: already acknowledged")
            alarm.acked_ns = self.clock()
            alarm.acked_by = user
            self._transition(alarm, "ack", user, alarm.acked_ns, before)
            result = alarm.to_json()
        self.flush(force=True)
        return result

    def clear(self, alarm_id: str, user: str, note: str | None = None) -> dict[str, Any]:
        """Clear an alarm by hand (active_unack -> cleared_unack, active_ack -> cleared_ack)."""
        with self._lock:
            alarm = self._find(alarm_id)
            if alarm.state not in ACTIVE_STATES:
                raise InvalidTransition(f"alarm {alarm_id} is {alarm.state}: already cleared")
            self._do_clear(alarm, user, self.clock(), note)
            result = alarm.to_json()
        self.flush(force=True)
        return result

    def assign(self, alarm_id: str, user: str, assignee: str | None) -> dict[str, Any]:
        """Assign an alarm to someone (None unassigns); not allowed once closed."""
        with self._lock:
            alarm = self._find(alarm_id)
            if alarm.state == CLEARED_ACK:
                raise InvalidTransition(f"alarm {alarm_id} is closed (cleared_ack)")
            alarm.assignee = assignee or None
            note = f"assigned to {assignee}" if assignee else "unassigned"
            self._transition(alarm, "assign", user, self.clock(), alarm.state, note)
            result = alarm.to_json()
        self.flush(force=True)
        return result

    def comment(self, alarm_id: str, user: str, text: str) -> dict[str, Any]:
        """Add a comment to an alarm's history (any state)."""
        if not text.strip():
            raise ValueError("comment text is empty")
        with self._lock:
            alarm = self._find(alarm_id)
            alarm.updated_ns = self.clock()
            self._queue(alarm, HistoryEntry("comment", user, alarm.updated_ns, alarm.state, text))
            self._notify("comment", alarm)
            result = alarm.to_json()
        self.flush(force=True)
        return result

    def get(self, alarm_id: str) -> dict[str, Any]:
        """Return an alarm's JSON with its history; raise AlarmNotFound."""
        self.flush(force=True)
        if self.shared:
            # an officer's action on another hub may be newer than memory (its word not yet
            # heard): merge the stored version first, as hearing it would
            self.sync(alarm_id)
        with self._lock:
            data = self._find(alarm_id).to_json()
        data["history"] = self.store.history(alarm_id)
        return data

    def list(
        self,
        *,
        state: str | Sequence[str] | None = None,
        severity: str | Sequence[str] | None = None,
        device_id: str | None = None,
        site: str | None = None,
        kind: str | None = None,
        rule: str | None = None,
        assignee: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        sort: str = "severity",
        limit: int = 100,
        offset: int = 0,
        sites: Sequence[str] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Return (page of alarm JSON, total); most severe then newest first by default.

        ``sites`` limits the result to those sites (a caller's scope; empty: nothing).
        """
        states = parse_states(state)
        severities = severity.split(",") if isinstance(severity, str) else severity
        if severities:
            severities = [s.strip() for s in severities if s.strip()]
            unknown = [s for s in severities if s not in SEVERITY_RANK]
            if unknown:
                raise ValueError(f"unknown severity {unknown[0]!r}: use {', '.join(SEVERITIES)}")
        if sort not in ("severity", "time"):
            raise ValueError("sort must be severity or time")
        self.flush(force=True)
        # The database is current now; the query runs without the lock (the pipeline goes on).
        alarms, total = self.store.query(
            states=states, severities=severities, device_id=device_id, site=site,
            kind=kind, rule=rule, assignee=assignee, since_ns=since_ns, until_ns=until_ns,
            sort=sort, limit=limit, offset=offset, sites=sites)
        return [a.to_json() for a in alarms], total

    # -- housekeeping ------------------------------------------------------------------------

    def flush(self, force: bool = False) -> int:
        """Write pending transitions now, and repeats (count, value, last seen) when due.

        Reads and officer actions call it before they look at the database; it must not be
        called with ``_lock`` held. Returns how many alarm rows were written.
        """
        written = self._flush(force)
        if self._to_announce:  # cluster mode: outside the locks (a network call)
            with self._lock:
                rows, self._to_announce = self._to_announce, []
            for row in rows:
                try:
                    if self.announce is not None:
                        self.announce(row)
                except Exception:  # the owner's next write finds the new version anyway
                    log.warning("telling the owner of alarm %s failed", row.id, exc_info=True)
        return written

    def _flush(self, force: bool) -> int:
        with self._write_lock:
            with self._lock:
                now = self.clock()
                repeats_due = bool(self._dirty) and (
                    force or now - self._last_flush >= self.flush_ns)
                if not self._pending_rows and not repeats_due and not self._pending_ops:
                    return 0
                pending = dict(self._pending_rows)
                repeats: Sequence[Alarm] = ()
                if repeats_due:
                    self._last_flush = now
                    repeats = [a for a in self._dirty.values() if a.id not in pending]
                    self._dirty.clear()
                originals = [a for a, _new in pending.values()] + list(repeats)
                rows = [(self._copy(a), new) for a, new in pending.values()]
                rows += [(self._copy(a), False) for a in repeats]
                history = list(self._pending_history)
                ops = list(self._pending_ops)
                self._pending_rows.clear()
                self._pending_history.clear()
                self._pending_ops.clear()
            try:
                if self.shared:
                    self._write_checked(originals, rows, history, ops)
                else:
                    self.store.write_batch(rows, history, ops)
            except Exception:
                if not ops or not self._write_without(rows, history, ops):
                    log.exception("writing %d alarms failed; retrying on the next flush",
                                  len(rows))
                    self._requeue(pending, repeats, history, ops)
                    return 0
            if ops:
                for listener in self.write_listeners:
                    listener()
            with self._lock:
                for alarm in repeats:
                    if alarm.id in self._by_id:
                        self._publish(alarm)
            if self.shared:
                self._written(originals, rows)
            return len(rows)

    def _copy(self, alarm: Alarm) -> Alarm:
        snapshot = copy.copy(alarm)
        if self.shared and snapshot.updated_ns <= snapshot.stored_ns:
            snapshot.updated_ns = snapshot.stored_ns + 1  # a new version, whatever the clocks
        return snapshot

    def _write_checked(self, originals: MutableSequence[Alarm],
                       rows: MutableSequence[tuple[Alarm, bool]],
                       history: Sequence[dict[str, Any]],
                       ops: Sequence[Callable[[Session], None]]) -> None:
        """Write under the rows' versions; merge what another hub changed, then again."""
        for _attempt in range(10):
            try:
                self.store.write_batch(rows, history, ops, check=True)
                return
            except StaleAlarms as exc:
                stale = set(exc.ids)
            fresh = self.store.get_many(sorted(stale))
            with self._lock:
                for i in reversed(range(len(rows))):
                    if rows[i][0].id in stale and rows[i][0].id not in fresh:
                        del rows[i], originals[i]  # gone (purged): nothing to update
                for i, (row, new) in enumerate(rows):
                    if row.id not in stale:
                        continue
                    original = originals[i]
                    stored = fresh[row.id]
                    before = original.state
                    if original.stored_ns == row.stored_ns:  # not merged meanwhile (sync)
                        merge(original, stored, owner=self._holds(original.device_id))
                    self._merged(original, before)
                    rows[i] = (self._copy(original), new)
                    for entry in reversed(history):  # the transition's row shows the outcome
                        if entry["alarm_id"] == row.id:
                            entry["to_state"] = original.state
                            break
            log.info("alarms: %d rows changed by another hub meanwhile: merged", len(stale))
        raise RuntimeError("alarm rows kept changing under this hub's writes")

    def _written(self, originals: Sequence[Alarm], rows: Sequence[tuple[Alarm, bool]]) -> None:
        """Record the versions just written; queue word to the owners of alarms held
        elsewhere (sent by ``flush`` once the locks are released)."""
        with self._lock:
            for original, (row, _new) in zip(originals, rows, strict=True):
                if original.stored_ns == row.stored_ns:  # no newer version merged meanwhile
                    synced(original, row.updated_ns)
                    original.base = officer_fields(row)
                if self.announce is not None and not self._holds(original.device_id):
                    self._to_announce.append(row)

    def sync(self, alarm_id: str) -> bool:
        """Another hub changed this alarm's row: merge it into memory if held here.

        Returns True when something changed. Holds the write lock, so no write of this hub is
        under way on an older version meanwhile.
        """
        with self._write_lock:
            with self._lock:
                held = self._by_id.get(alarm_id)
                if held is None:
                    return False
            stored = self.store.get(alarm_id)
            with self._lock:
                if stored is None or self._by_id.get(alarm_id) is not held or \
                        stored.updated_ns == held.stored_ns:
                    return False
                before = held.state
                merge(held, stored, owner=True)
                self._merged(held, before)
                return True

    def _merged(self, alarm: Alarm, before: str) -> None:
        """After a merge (lock held): publish a changed state, close a cleared_ack one."""
        if alarm.state == before:
            return
        if alarm.state == CLEARED_ACK and alarm.id in self._by_id:
            if alarm.id in self._dirty and alarm.id not in self._pending_rows:
                self._pending_rows[alarm.id] = (alarm, False)  # its last repeats still written
            self._forget(alarm)
            metrics.ALARMS_OPEN.set(len(self._open))
        self._publish(alarm)
        self._notify("sync", alarm)

    def _write_without(self, rows: Sequence[tuple[Alarm, bool]],
                       history: Sequence[dict[str, Any]],
                       ops: Sequence[Callable[[Session], None]]) -> bool:
        # A hook's op must never keep alarms out of the database: write them alone, then
        # each op in its own transaction (a failing one is logged, counted and dropped).
        try:
            self.store.write_batch(rows, history)
        except Exception:
            return False
        log.exception("a transition hook's op failed; alarms written without it, ops one by one")
        for op in ops:
            try:
                self.store.write_batch((), (), (op,))
            except Exception:
                metrics.ALARM_OUTPUT_ERRORS.labels("transition_hook").inc()
                log.exception("a transition hook's op failed again: dropped")
        return True

    def _requeue(self, pending: dict[str, tuple[Alarm, bool]], repeats: Sequence[Alarm],
                 history: Sequence[dict[str, Any]],
                 ops: Sequence[Callable[[Session], None]] = ()) -> None:
        with self._lock:
            for alarm_id, (alarm, new) in pending.items():
                queued = self._pending_rows.get(alarm_id)
                self._pending_rows[alarm_id] = (alarm, new or (queued is not None and queued[1]))
            for alarm in repeats:
                self._dirty.setdefault(alarm.id, alarm)
            self._pending_history[:0] = history
            self._pending_ops[:0] = ops

    def _write_loop(self) -> None:
        while not self._closing:
            self._wake.wait(self.flush_ns / 1e9 if self.flush_ns > 0 else 1.0)
            self._wake.clear()
            if self._closing:
                return
            try:
                self.flush()
            except Exception:
                log.exception("alarm writer failed")

    def close(self) -> None:
        """Write everything pending, stop the writer thread and the webhook workers."""
        self._closing = True
        self._wake.set()
        self._writer.join(10)
        self.flush(force=True)
        if self.webhooks is not None:
            self.webhooks.close()

    # -- internals ---------------------------------------------------------------------------

    def _holds(self, device_id: str) -> bool:
        """True when this hub keeps the device's alarms in memory (always, unless clustered)."""
        return self.owns is None or self.owns(device_id)

    def _remember(self, alarm: Alarm) -> None:
        self._open[(alarm.device_id, alarm.rule)] = alarm
        self._by_id[alarm.id] = alarm

    def _forget(self, alarm: Alarm) -> None:
        if self._open.get((alarm.device_id, alarm.rule)) is alarm:
            del self._open[(alarm.device_id, alarm.rule)]
        self._by_id.pop(alarm.id, None)
        self._dirty.pop(alarm.id, None)

    def _find(self, alarm_id: str) -> Alarm:
        alarm = self._by_id.get(alarm_id)
        if alarm is None and alarm_id in self._pending_rows:  # closed, not written yet
            alarm = self._pending_rows[alarm_id][0]
        if alarm is None:
            alarm = self.store.get(alarm_id)
        if alarm is None:
            raise AlarmNotFound(alarm_id)
        return alarm

    def _create(self, device_id: str, site: str, kind: str, rule: str, severity: str,
                value: Any, message: str, message_zh: str, at_ns: int,
                details: dict[str, Any] | None, model: str | None) -> str:
        entry = self.sites.device(device_id)
        community = None
        if entry is not None:
            reg_site, device = entry
            model = model or device.model
            if reg_site.tag_community:
                community = device.community
        alarm = Alarm(
            id=str(uuid.uuid4()), device_id=device_id, site=site, kind=kind, rule=rule,
            model=model or "unknown", community=community, severity=severity,
            state=ACTIVE_UNACK, message=message, message_zh=message_zh, value=value,
            details=details, raised_ns=at_ns, last_seen_ns=at_ns, count=1,
        )
        self._remember(alarm)
        self._transition(alarm, "raise", SYSTEM, at_ns, None, new=True)
        return alarm.id

    def _do_clear(self, alarm: Alarm, user: str, at_ns: int, note: str | None) -> None:
        before = alarm.state
        alarm.state = CLEARED_ACK if before == ACTIVE_ACK else CLEARED_UNACK
        alarm.cleared_ns = at_ns
        alarm.cleared_by = user
        self._transition(alarm, "clear", user, at_ns, before, note)

    def _transition(self, alarm: Alarm, action: str, actor: str, at_ns: int,
                    before: str | None, note: str | None = None, *, new: bool = False) -> None:
        alarm.updated_ns = self.clock()
        self._queue(alarm, HistoryEntry(action, actor, at_ns, before, note), new=new)
        if len(self._pending_history) >= self.max_pending:
            self._wake.set()
        if alarm.state == CLEARED_ACK:
            self._forget(alarm)
        elif alarm.id not in self._by_id and self._holds(alarm.device_id):
            self._remember(alarm)
        metrics.ALARM_TRANSITIONS.labels(action, alarm.severity).inc()
        metrics.ALARMS_OPEN.set(len(self._open))
        self._emit_point(alarm, at_ns)
        self._publish(alarm)
        self._notify(action, alarm)
        for hook in self.transition_hooks:
            try:
                op = hook(action, alarm, actor)
            except Exception:
                log.exception("alarm transition hook failed")
                continue
            if op is not None:
                self._pending_ops.append(op)
                self._wake.set()  # someone is waiting for this one (a notification): write now
        if self.webhooks is not None:
            self.webhooks.submit(f"alarm.{action}", {
                "actor": actor, "at": iso(at_ns), "from_state": before, "note": note,
                "alarm": alarm.to_json()})

    def _notify(self, action: str, alarm: Alarm) -> None:
        for listener in self.listeners:
            try:
                listener(action, alarm.to_json())
            except Exception:
                log.exception("alarm listener failed")

    def _queue(self, alarm: Alarm, entry: HistoryEntry, new: bool = False) -> None:
        self._dirty.pop(alarm.id, None)
        queued = self._pending_rows.get(alarm.id)
        self._pending_rows[alarm.id] = (alarm, new or (queued is not None and queued[1]))
        self._pending_history.append(self.store.history_row(alarm, entry))

    def _emit_point(self, alarm: Alarm, at_ns: int) -> None:
        if self.emit_points is None:
            return
        # same series + timestamp would overwrite the previous transition in InfluxDB
        time_ns = max(at_ns, alarm.last_point_ns + 1)
        alarm.last_point_ns = time_ns
        tags = [("device_id", alarm.device_id), ("site", alarm.site), ("model", alarm.model),
                ("kind", alarm.kind), ("rule", alarm.rule)]
        if alarm.community:
            tags.append(("community", alarm.community))
        fields: list[tuple[str, FieldValue]] = [
            ("alarm_id", alarm.id), ("state", alarm.state), ("severity", alarm.severity),
            ("message", alarm.message)]
        if isinstance(alarm.value, int | float) and not isinstance(alarm.value, bool):
            fields.append(("value", float(alarm.value)))
        try:
            self.emit_points([Point("alarm", tuple(tags), tuple(fields), time_ns)])
        except Exception:
            metrics.ALARM_OUTPUT_ERRORS.labels("points").inc()
            log.exception("emitting the alarm point failed")

    def topic(self, alarm: Alarm) -> str:
        """Return the retained MQTT topic of an alarm."""
        return (f"{self.topic_prefix}/{_topic_part(alarm.site)}/"
                f"{_topic_part(alarm.device_id)}/{_topic_part(alarm.rule)}")

    def _publish(self, alarm: Alarm) -> None:
        if self.publish is None:
            return
        payload = b"" if alarm.state == CLEARED_ACK else orjson.dumps(alarm.to_json())
        try:
            self.publish(self.topic(alarm), payload, True)
        except Exception:
            metrics.ALARM_OUTPUT_ERRORS.labels("mqtt").inc()
            log.exception("publishing the alarm failed")

    def republish_all(self) -> int:
        """Publish the retained JSON of every open alarm again (e.g. after a reconnect)."""
        with self._lock:
            alarms: Iterable[Alarm] = list(self._open.values())
            for alarm in alarms:
                self._publish(alarm)
            return len(self._open)
