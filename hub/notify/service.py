"""The notification service: policies applied to alarm transitions, the outbox, the dispatcher.

``on_transition`` is an alarm-service transition hook (pipeline or API thread, alarm lock
held): it matches the policy and silences in memory and returns the outbox op that the alarm
service runs in the transaction writing the transition. Raise and reopen plan a round of
steps (``after_s`` from now, a reminder every ``repeat_s`` after the last step); an
escalation of severity plans a new round under the policy that now matches (the old round's
pending rows are cancelled); acknowledge and clear cancel what is pending, and a clear may
tell the channels that were told. The notify file is re-read when it changes (rosters,
people, channels and policies take effect without a restart; a bad edit keeps the old file
and shows in health).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from hub.alarms.model import ACTIVE_UNACK, Alarm, iso
from hub.notify import metrics
from hub.notify.channels import driver as make_driver
from hub.notify.channels.base import ChannelDriver, Recipients
from hub.notify.config import NotifyConfig, NotifyConfigError, Policy, load_config
from hub.notify.dispatcher import Dispatcher
from hub.notify.message import label
from hub.notify.outbox import REMINDER, STEP, Due, Op, Outbox, Planned, plan, stop
from hub.notify.roster import next_change, on_duty
from hub.notify.silences import Silence, Silences
from hub.sites import SiteRegistry

if TYPE_CHECKING:
    from hub.alarms.service import AlarmService
    from hub.clock import HubClock
    from hub.patrol.departments import HandoverMessage
    from hub.patrol.monthly_send import ReportMessage
    from hub.settings import Settings

log = logging.getLogger(__name__)
RELOAD_EVERY_NS = 10**9
FAILING_AFTER = 3  # consecutive failures before a channel makes health degraded


def _fields(alarm: Alarm | dict[str, Any]) -> dict[str, Any]:
    get = alarm.get if isinstance(alarm, dict) else alarm.__getattribute__
    return {name: get(name) for name in ("site", "severity", "kind", "rule", "device_id")}


class NotifyService:
    """Escalation of alarms to people, from a notify file."""

    def __init__(self, config: NotifyConfig, engine: Engine, sites: SiteRegistry, *,
                 clock: Any, console_url: str, path: Path | None = None,
                 poll_s: float = 0.25, owner: str = "") -> None:
        self.path = path
        self.sites = sites
        self.clock = clock
        self.console_url = console_url
        self.owner = owner
        # the owner of the rows planned for a device's (or a site's) alarms: this hub, or in
        # cluster mode the device's partition (hub.cluster.wiring)
        self.owner_for: Callable[[str], str] = lambda _key: self.owner
        self.outbox = Outbox(engine, owner)
        self.silences = Silences(engine)
        self.alarms: AlarmService | None = None
        self._lock = threading.Lock()
        self._config = config
        self._drivers = {c.id: make_driver(c) for c in config.channels}
        self._stamp = self._file_stamp()
        self._last_check = 0
        self.reload_error: str | None = None
        self._silenced: set[str] = set()
        self.dispatcher = Dispatcher(self, self.outbox, poll_s=poll_s)
        for roster in config.rosters:
            if roster.site not in sites.sites:
                log.warning("notify file: roster for site %r, which no site file defines",
                            roster.site)

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine, sites: SiteRegistry,
                      clock: HubClock) -> NotifyService | None:
        """Build from HUB_NOTIFY_FILE (None when unset); raise NotifyConfigError."""
        if settings.notify_file is None:
            return None
        path = Path(settings.notify_file)
        config = load_config(path)
        console = settings.console_url or f"http://{settings.api_host}:{settings.api_port}"
        return cls(config, engine, sites, clock=clock, console_url=console, path=path,
                   poll_s=settings.notify_poll_s, owner=settings.mqtt_client_id)

    # -- wiring --------------------------------------------------------------------------------

    def attach(self, alarms: AlarmService) -> None:
        """Hook into an alarm service's transitions and writes."""
        self.alarms = alarms
        alarms.add_transition_hook(self.on_transition)
        alarms.add_write_listener(self.dispatcher.wake)

    def start(self) -> None:
        """Start dispatching."""
        self.dispatcher.start()

    def close(self) -> None:
        """Stop dispatching (rows not sent stay pending for the next start)."""
        self.dispatcher.stop()

    @property
    def config(self) -> NotifyConfig:
        """The notify file in force."""
        return self._config

    def driver(self, channel_id: str) -> ChannelDriver | None:
        """The driver of a channel in the current file, or None."""
        return self._drivers.get(channel_id)

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def maybe_reload(self, force: bool = False) -> bool:
        """Re-read the notify file when it changed; return True when a new file took effect."""
        if self.path is None:
            return False
        now = self.dispatcher.wall()
        if not force and now - self._last_check < RELOAD_EVERY_NS:
            return False
        self._last_check = now
        stamp = self._file_stamp()
        if stamp == self._stamp and not force:
            return False
        self._stamp = stamp
        try:
            config = load_config(self.path)
        except NotifyConfigError as exc:
            self.reload_error = str(exc)
            metrics.RELOADS.labels("error").inc()
            log.error("notify file not reloaded, the previous one stays in force: %s", exc)
            return False
        with self._lock:
            self._config = config
            self._drivers = {c.id: make_driver(c) for c in config.channels}
        self.reload_error = None
        for health in self.dispatcher.health.values():
            if health.state == "config_error":
                health.state = "ok"  # a new file may have fixed it: the next send tells
        metrics.RELOADS.labels("ok").inc()
        log.info("notify file reloaded: %d channels, %d rosters, %d policies",
                 len(config.channels), len(config.rosters), len(config.policies))
        return True

    # -- the alarm side (alarm lock held) ------------------------------------------------------

    def on_transition(self, action: str, alarm: Alarm, actor: str) -> Op | None:
        """Plan or stop notifications for one transition; the op joins its transaction."""
        now = self.clock()
        fields = _fields(alarm)
        config = self._config
        if action in ("raise", "reopen", "escalate"):
            if alarm.state != ACTIVE_UNACK:
                return None
            silence = self.silences.matching(fields, now)
            if silence is not None:
                self._silenced.add(alarm.id)
            found = config.policy_for(fields)
            items = self._plan(found[1], now) if found is not None else []
            if not items and action == "raise":
                return None
            return plan(alarm.id, alarm.site, items, now, new_round=action != "raise",
                        suppressed=silence is not None, owner=self.owner_for(alarm.device_id))
        if action in ("ack", "clear"):
            found = config.policy_for(fields)
            notice = action == "clear" and found is not None and found[1].notify_clear
            return stop(alarm.id, alarm.site, now, clear_notice=notice,
                        owner=self.owner_for(alarm.device_id),
                        suppressed=alarm.id in self._silenced
                        or self.silences.matching(fields, now) is not None)
        return None

    @staticmethod
    def _plan(policy: Policy, now: int) -> list[Planned]:
        items: list[Planned] = []
        for number, step in enumerate(policy.steps, start=1):
            due = now + int(step.after_s * 1e9)
            mention = tuple(step.mentions())
            items += [Planned(STEP, number, 0, channel, mention, due)
                      for channel in step.channels]
        if policy.repeat_s and policy.max_repeats > 0:
            last = policy.steps[-1]
            repeat = int(policy.repeat_s * 1e9)
            due = now + int(last.after_s * 1e9) + repeat
            items += [Planned(REMINDER, len(policy.steps), 1, channel, tuple(last.mentions()),
                              due, repeat, policy.max_repeats) for channel in last.channels]
        return items

    # -- the hazard side: hand-overs to departments ----------------------------------------------

    def handover(self, message: HandoverMessage) -> None:
        """The patrol service's hand-over hook: plan the message on the department's channel.

        Written right after the hazard's own commit (the hazard service has no transaction
        hook); the unique key (``hazard:<id>``, the history row, the channel) makes a repeat
        of the same hand-over impossible, so a retry or a restart never sends it twice.
        """
        if message.channel is None:
            log.info("hazard %s %s: no channel named in the departments file; not sent",
                     message.hazard_id, message.event)
            return
        lang = self.language_of(message.site)
        text = message.text_en if lang == "en" else message.text_zh
        text += f"\n{label('console', lang)}: {self.console_url.rstrip('/')}/"
        if self.outbox.handover(f"hazard:{message.hazard_id}", message.site, message.seq,
                                message.channel, text, self.clock(),
                                self.owner_for(message.hazard_id)):
            self.dispatcher.wake()

    def report(self, message: ReportMessage) -> None:
        """The patrol service's monthly-report hook: queue the notice on its channel once.

        A hand-over row keyed ``report:<site>:<YYYY-MM>``: the unique key makes a second
        notice of the same month impossible, after a restart too.
        """
        lang = self.language_of(message.site)
        text = message.text_en if lang == "en" else message.text_zh
        text += f"\n{label('report_pdf', lang)}: {self.console_url.rstrip('/')}{message.path}"
        if self.outbox.handover(message.key, message.site, 0, message.channel, text,
                                self.clock(), self.owner_for(message.site)):
            self.dispatcher.wake()

    def handover_status(self, hazard_id: str) -> dict[int, list[dict[str, Any]]]:
        """A hazard's hand-over deliveries by history row."""
        return self.outbox.of_handovers(f"hazard:{hazard_id}")

    # -- the dispatcher side -------------------------------------------------------------------

    def alarm_json(self, alarm_id: str) -> dict[str, Any] | None:
        """The alarm's current JSON (memory first, then the database)."""
        if self.alarms is None:
            return None
        data = self.alarms.peek(alarm_id)
        if data is None:
            stored = self.alarms.store.get(alarm_id)
            data = None if stored is None else stored.to_json()
        return data

    def silence_for(self, alarm: dict[str, Any], now: int) -> Silence | None:
        """The silence in force for an alarm, or None."""
        return self.silences.matching(_fields(alarm), now)

    def mark_silenced(self, alarm_id: str) -> None:
        """Remember that a silence suppressed a notification of this alarm."""
        self._silenced.add(alarm_id)

    def is_silenced(self, alarm: dict[str, Any]) -> bool:
        """True when a silence suppressed its notifications or is in force for it now."""
        if alarm["id"] in self._silenced:
            return True
        return self.silence_for(alarm, self.clock()) is not None

    def language_of(self, site: str) -> str:
        """The language of a site's messages."""
        return self._config.language_of(site)

    def zone(self, site: str) -> ZoneInfo:
        """A site's time zone."""
        registered = self.sites.sites.get(site)
        return ZoneInfo(registered.timezone if registered is not None else "Asia/Shanghai")

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock() / 1e9, UTC)

    def people_for(self, site: str, mention: tuple[str, ...] | list[str]) -> tuple[list[str],
                                                                                     bool]:
        """The person ids a mention spec names now (on_duty from the roster), and @all."""
        config = self._config
        roster = config.roster(site)
        ids: list[str] = []
        everyone = False
        for item in mention:
            if item == "on_duty":
                ids += on_duty(roster, self._now(), self.zone(site))
            elif item == "leaders":
                ids += list(roster.leaders) if roster is not None else []
            elif item == "all":
                everyone = True
            else:
                ids.append(item)
        return list(dict.fromkeys(ids)), everyone

    def recipients(self, row: Due) -> Recipients:
        """Whom a row's message mentions, resolved now (a roster change applies at once)."""
        ids, everyone = self.people_for(row.site, row.mention)
        people = [p for p in (self._config.person(i) for i in ids) if p is not None]
        return Recipients(
            names=tuple(p.name for p in people),
            mobiles=tuple(p.mobile for p in people if p.mobile),
            feishu_ids=tuple(p.feishu_open_id for p in people if p.feishu_open_id),
            wecom_ids=tuple(p.wecom_userid for p in people if p.wecom_userid),
            everyone=everyone)

    # -- what the API shows --------------------------------------------------------------------

    def notifications(self, alarm_id: str) -> list[dict[str, Any]]:
        """The ``notifications`` list of an alarm."""
        return self.outbox.of_alarm(alarm_id)

    def duty(self, site: str | None) -> list[dict[str, Any]]:
        """Who is on duty now and next, per site with a roster."""
        config = self._config
        rosters = [r for r in config.rosters if site is None or r.site == site]
        now = self._now()
        result = []
        for roster in rosters:
            zone = self.zone(roster.site)

            def person(pid: str) -> dict[str, Any]:
                found = config.person(pid)
                return {"id": pid, "name": found.name if found else pid,
                        "mobile": found.mobile if found else None}

            upcoming = next_change(roster, now, zone)
            result.append({
                "site": roster.site, "timezone": zone.key,
                "now": [person(p) for p in on_duty(roster, now, zone)],
                "next": None if upcoming is None else {
                    "starts_at": iso(int(upcoming.start.timestamp() * 1e9)),
                    "ends_at": iso(int(upcoming.end.timestamp() * 1e9)),
                    "people": [person(p) for p in upcoming.people]},
                "leaders": [person(p) for p in roster.leaders]})
        return result

    def health(self) -> dict[str, Any]:
        """Channel states, pending rows, the file; ``status`` degraded on a broken channel."""
        channels = {}
        degraded = self.reload_error is not None
        for channel in self._config.channels:
            health = self.dispatcher.channel_health(channel.id).to_json()
            channels[channel.id] = {"type": channel.type, **health}
            if health["state"] == "config_error" or (
                    health["consecutive_failures"] >= FAILING_AFTER):
                degraded = True
        try:
            pending = self.outbox.pending()
        except Exception:  # the state store is down: health says so elsewhere
            pending = -1
        return {"status": "degraded" if degraded else "ok",
                "file": str(self.path) if self.path else None,
                "reload_error": self.reload_error, "pending": pending,
                "channels": channels}
