"""Assemble the hub from settings: profiles, sites, stores, pipeline, MQTT; start and stop."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hub.alarms.service import AlarmService
from hub.clock import HubClock
from hub.db import create_all, make_engine, make_sessionmaker
from hub.evidence.service import EvidenceService
from hub.evidence.store import FileEvidenceStore
from hub.ingest.normalize import Normalizer
from hub.ingest.pipeline import Pipeline
from hub.ingest.refusals import DeadLetterLog, RefusalLog
from hub.intake.process import IntakeProcess
from hub.model import InboundMessage, Reading, Refusal
from hub.patrol.service import PatrolService
from hub.profiles.loader import load_profiles
from hub.rules.engine import RuleEngine
from hub.rules.readiness import ReadinessBook
from hub.setaside.rows import refusal_of
from hub.settings import Settings
from hub.sites import load_sites
from hub.state import DeviceStates
from hub.store.base import PointStore
from hub.store.embedded import EmbeddedStore
from hub.store.influx import InfluxV1Store
from hub.store.spool import Spool
from hub.store.writer import DurableWriter
from hub.tuning.gcfreeze import GcFreezer

if TYPE_CHECKING:
    from hub.cluster.handover import Handover
    from hub.cluster.intake import ClusterIntake
    from hub.intake.thread import ThreadIntake
    from hub.notify.service import NotifyService

log = logging.getLogger(__name__)


def make_store(settings: Settings) -> PointStore:
    """InfluxDB through the v1 API when HUB_INFLUX_URL is set, else the embedded SQLite store."""
    if settings.influx_url:
        store = InfluxV1Store(
            settings.influx_url, settings.influx_db, username=settings.influx_username,
            password=settings.influx_password, token=settings.influx_token,
        )
        return store
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedStore(settings.data_dir / "telemetry.sqlite")


def make_mqtt(
    settings: Settings, subscriptions: list[tuple[str, int]],
    on_message: Callable[[InboundMessage], None],
) -> IntakeProcess | ThreadIntake | ClusterIntake:
    """The MQTT intake: paho in a child process (default; the pipeline pulls from it) or in a
    thread of this one (it pushes each message through ``on_message``)."""
    s = settings
    if s.cluster_url:
        from hub.cluster.wiring import make_intake  # nats: only in cluster mode

        return make_intake(s)
    if s.mqtt_intake == "process":
        return IntakeProcess(
            s.mqtt_url, s.mqtt_client_id, subscriptions, ca_file=s.mqtt_ca_file,
            cert_file=s.mqtt_cert_file, key_file=s.mqtt_key_file, protocol=s.mqtt_protocol,
            client=s.mqtt_client, max_payload_bytes=s.max_payload_bytes)
    from hub.intake.thread import ThreadIntake  # paho: only in thread mode is it in this process

    return ThreadIntake(
        s.mqtt_url, s.mqtt_client_id, subscriptions, on_message, ca_file=s.mqtt_ca_file,
        cert_file=s.mqtt_cert_file, key_file=s.mqtt_key_file, protocol=s.mqtt_protocol)


class Hub:
    """One hub process: everything wired, nothing started until ``start``."""

    def __init__(self, settings: Settings, *, clock: HubClock | None = None) -> None:
        self.settings = settings
        self.clock = clock or HubClock(settings.clock)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.profiles = load_profiles(settings.profiles_dir)
        self.sites = load_sites(settings.sites_dir)
        self.normalizer = Normalizer(self.profiles, self.sites, settings.max_payload_bytes,
                                     max_unregistered=settings.max_unregistered_devices)
        self.engine = make_engine(settings.resolved_database_url())
        self.sessions = make_sessionmaker(self.engine)
        create_all(self.engine)
        self.refusals = RefusalLog(self.sessions)
        self.dead_letters = DeadLetterLog(self.sessions)
        self.states = DeviceStates(self.profiles, self.sites, self.normalizer, self.sessions)
        self.store = make_store(settings)
        self.spool = Spool(settings.data_dir / "spool", settings.spool_max_bytes)
        self.writer = DurableWriter(
            self.store, self.spool, on_rejected=self.dead_letters.record, retry_max_s=5.0
        )
        self.mqtt = make_mqtt(settings, self.normalizer.router.subscriptions(
            settings.mqtt_shared_group), self._submit)
        self.pipeline = Pipeline(
            self.normalizer, self.states, self.refusals, self.writer, self.mqtt.ack_many,
            batch_size=settings.batch_size, batch_interval_s=settings.batch_interval_s,
            clock=self.clock, tick_interval_s=0.25, save_interval_s=settings.state_save_s,
            source=getattr(self.mqtt, "receive", None),
        )
        self.alarms = AlarmService.from_settings(
            settings, self.engine, emit_points=self.pipeline.emit_points,
            publish=self.mqtt.publish, sites=self.sites,
        )
        self.notify: NotifyService | None = None
        if settings.notify_file is not None:  # imported only when on (resident memory)
            from hub.notify.service import NotifyService

            self.notify = NotifyService.from_settings(settings, self.engine, self.sites,
                                                      self.clock)
            if self.notify is not None:
                self.notify.attach(self.alarms)
        self.rules = RuleEngine.from_settings(
            settings, self.alarms, self.engine, profiles=self.profiles, sites=self.sites,
            clock=self.clock,
        )
        # readiness of stations, from the same resolved rules (console, dashboards)
        self.readiness = ReadinessBook(self.rules.rule_sets, self.sites)
        self.pipeline.add_tick_hook("mqtt-count", self._count_received)
        self.gc_freezer = GcFreezer(settings.gc_freeze_s)
        self.pipeline.add_tick_hook("gc-freeze", self.gc_freezer.on_tick)
        self.pipeline.add_reading_hook("rules", self.rules.on_reading)
        self.pipeline.add_tick_hook("rules", self.rules.on_tick)
        self.pipeline.add_stop_hook("rules", self._stop_rules)
        # Alarm transitions a batch caused are in the database before its messages are acked.
        self.pipeline.add_flush_hook("alarms", self._flush_alarms)
        # departments get hand-overs on their channel when notifications are on, else a log
        self.patrol = PatrolService.from_settings(
            settings, self.engine, self.alarms, self.sites, clock=self.clock,
            handover=self.notify.handover if self.notify is not None else None,
            report=self.notify.report if self.notify is not None else None,
            refuse=self._refuse_reading)
        if self.notify is not None:
            self.patrol.hazards.deliveries = self.notify.handover_status
        self.evidence = EvidenceService(FileEvidenceStore(settings.data_dir / "evidence"),
                                        self.sessions, self.engine,
                                        settings.evidence_max_bytes)
        self.pipeline.add_reading_hook("patrol", self.patrol.on_reading)
        self.pipeline.add_tick_hook("patrol", self.patrol.on_tick)
        self.pipeline.add_flush_hook("patrol", self.patrol.tracker.flush)
        self.patrol.tracker.on_set_aside = self._set_aside
        self.patrol.on_refused = self.refusals.record
        self.states.on_set_aside = self._set_aside
        self.pipeline.add_stop_hook("patrol", self.patrol.tracker.flush)
        self.mqtt.on_connected = self.alarms.republish_all
        self.cluster: Handover | None = None
        if settings.cluster_url:
            from hub.cluster.wiring import attach

            self.cluster = attach(self)
        self.started_ns: int | None = None
        self._stopped = False
        self.extensions: dict[str, Any] = {}
        # devices and checkpoints onboarded through the API, laid over the site files
        from hub.onboarding.wiring import make_onboarding

        self.onboarding = make_onboarding(self)
        self.onboarding.load()

    def _set_aside(self, table: str, row: Any, reason: str) -> None:
        """A state-store row the database refused: a refusal an operator can read."""
        self.refusals.record(refusal_of(table, row, reason, time.time_ns()))

    def _flush_alarms(self) -> None:
        self.alarms.flush()

    def _stop_rules(self) -> None:
        self.rules.stop()
        self.alarms.close()

    def _refuse_reading(self, reading: Reading, reason: str, detail: str) -> None:
        # a reading a later stage refuses (a hazard with no site): recorded like a refusal
        profile = next((p for p in self.profiles if p.model == reading.model), None)
        spec = profile.messages.get(reading.message) if profile is not None else None
        topic = spec.topic.replace("{device_id}", reading.device_id) if spec else reading.message
        head = json.dumps(reading.values, ensure_ascii=False, default=str).encode()[:512]
        self.refusals.record(Refusal(topic, reading.received_ns, reason, detail, head,
                                     reading.device_id, reading.model))

    def _count_received(self, _now: int) -> None:
        self.mqtt.count_received()

    def _submit(self, message: InboundMessage) -> None:
        self.pipeline.submit(message)

    def start(self, wait_connected_s: float = 0.0) -> None:
        """Load state, start the pipeline and connect to the broker."""
        if self.cluster is not None:
            # a cluster hub owns no partition yet: it loads each one's state when it takes it
            self.cluster.forget_all()
            loaded = 0
        else:
            loaded = self.states.load()
        log.info(
            "hub: %d profiles, %d sites, %d registered devices, %d device states loaded",
            len(self.profiles), len(self.sites.sites), len(self.sites.devices), loaded,
        )
        self.gc_freezer.freeze()  # profiles, sites and saved state: alive for good
        self.pipeline.start()
        if self.notify is not None:
            self.notify.start()
        self.mqtt.start(wait_s=wait_connected_s)
        self.started_ns = time.time_ns()

    def stop(self) -> None:
        """Drain the pipeline, make the last batch durable, ack it, then disconnect (once)."""
        if self._stopped:
            return
        self._stopped = True
        log.info("hub stopping: draining the pipeline")
        self.pipeline.stop()
        self.writer.stop(timeout=30)
        if self.notify is not None:
            self.notify.close()
        self.mqtt.stop()
        self.store.close()
        self.engine.dispose()
        log.info("hub stopped")

    def health(self) -> dict[str, Any]:
        """Broker, store, spool, queue and device counts, with an overall status."""
        writer = self.writer.health()
        broker_ok = self.mqtt.connected
        store_ok = bool(writer.get("store_ok"))
        pipeline_ok = self.pipeline.running
        notify = self.notify.health() if self.notify is not None else None
        notify_ok = notify is None or notify["status"] == "ok"
        cluster = None
        if self.cluster is not None:
            from hub.cluster.wiring import health

            cluster = health(self)
        cluster_ok = cluster is None or not cluster["unowned"]
        status = ("ok" if broker_ok and store_ok and pipeline_ok and notify_ok and cluster_ok
                  else "degraded")
        body = {
            "status": status,
            "broker": {"connected": broker_ok, "url": self._safe_mqtt_url(),
                       "last_error": self.mqtt.last_error,
                       "intake": self.settings.mqtt_intake,
                       "client": (self.settings.mqtt_client
                                  if self.settings.mqtt_intake == "process" else "paho"),
                       "intake_pid": getattr(self.mqtt, "pid", None)},
            "store": {
                "kind": self.store.name, "ok": store_ok, "last_error": writer.get("last_error"),
            },
            "spool": {"batches": writer.get("spool_batches", 0),
                      "bytes": writer.get("spool_bytes", 0)},
            "pipeline": {"running": pipeline_ok, "queued": self.pipeline.queue_depth,
                         "writer_queued": writer.get("queued", 0),
                         "processed": self.pipeline.processed,
                         "ticks": self.pipeline.ticks},
            "devices": self.states.counts(),
            "refusals": self.refusals.counts(),
            "notify": notify,
        }
        if cluster is not None:
            body["cluster"] = cluster
        return body

    def _safe_mqtt_url(self) -> str:
        url = self.mqtt.url
        scheme = "mqtts" if url.tls else "mqtt"
        user = f"{url.username}:***@" if url.username else ""
        return f"{scheme}://{user}{url.host}:{url.port}"
