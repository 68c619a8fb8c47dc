"""Cluster mode in the hub's wiring: the intake, the handover hook, the fleet view, health."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hub.cluster.alarmsync import AlarmSync
from hub.cluster.handover import Handover
from hub.cluster.intake import ClusterIntake
from hub.cluster.strays import StrayCatcher
from hub.cluster.view import FleetView
from hub.intake.common import STATUS_TOPIC
from hub.intake.process import IntakeProcess
from hub.settings import Settings

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger(__name__)
# a hazard created, dispatched or reopened on another hub joins this hub's ladder watch within
# this time (its rungs are hours apart; the owner of its partition climbs them)
HAZARD_RELOAD_S = 5.0


class _Every(threading.Thread):
    """Runs ``action`` every ``period_s`` on a thread of its own (a database read that must
    not stall the pipeline thread: 18-89 ms for 2,000 open hazards on PostgreSQL)."""

    def __init__(self, name: str, period_s: float, action: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.period_s, self.action = period_s, action
        self.stopped = threading.Event()

    def on_tick(self, _now: int) -> None:
        """Pipeline tick hook: start with the pipeline (not when the hub is only built)."""
        if self.ident is None and not self.stopped.is_set():
            self.start()

    def run(self) -> None:
        """Act every period until stopped."""
        while not self.stopped.wait(self.period_s):
            try:
                self.action()
            except Exception:  # the state store away: the next round tries again
                log.warning("cluster: %s failed", self.name, exc_info=True)


def make_intake(settings: Settings) -> ClusterIntake:
    """The JetStream intake, with an MQTT connection (HUB_MQTT_URL: a node's MQTT listener)
    for the retained alarm topics and this node's ``hub/status/<node id>``, and the catcher
    of QoS 0 publishes of QoS 1 topics."""
    node = settings.resolved_node_id()
    s = settings
    publisher = IntakeProcess(
        s.mqtt_url, f"{s.mqtt_client_id}-{node}", [], ca_file=s.mqtt_ca_file,
        cert_file=s.mqtt_cert_file, key_file=s.mqtt_key_file, protocol=s.mqtt_protocol,
        status_topic=f"{STATUS_TOPIC}/{node}", client=s.mqtt_client)
    strays = StrayCatcher(settings) if settings.cluster_strays else None
    return ClusterIntake(settings, publisher, strays)


def attach(hub: Hub) -> Handover:
    """Give the intake its handover (rules, alarms, device states) on the pipeline thread."""
    intake = hub.mqtt
    assert isinstance(intake, ClusterIntake)
    handover = Handover(hub.settings.cluster_partitions, hub.rules, hub.alarms, hub.states,
                        hub.patrol.tracker)
    intake.handover = handover
    AlarmSync.attach(intake, hub.alarms, handover)
    # One sender per partition: notifications and hazard ladders follow the lease, so a dead
    # hub's pending escalations are sent by the next owner and no two hubs send one twice.
    hub.patrol.hazards.owns = lambda key: handover.part(key) in handover.owned
    hub.patrol.hazards.node = intake.node_id
    rewatch = _Every("hazard-rewatch", HAZARD_RELOAD_S, hub.patrol.hazards.rewatch_open)
    hub.pipeline.add_tick_hook("hazard-rewatch", rewatch.on_tick)
    hub.pipeline.add_stop_hook("hazard-rewatch", rewatch.stopped.set)
    if hub.notify is not None:
        hub.notify.owner_for = lambda key: f"p{handover.part(key)}"
        hub.notify.outbox.serving = lambda: [f"p{p}" for p in tuple(handover.owned)]
    hub.pipeline.add_tick_hook("cluster", handover.on_tick)
    FleetView.attach(hub, handover, intake)  # every hub's devices and events on every hub
    intake.device_ids = lambda: list(hub.sites.devices)  # checked against the server's MQTT
    return handover


def health(hub: Hub) -> dict[str, Any] | None:
    """The cluster part of /api/health (None in single-machine mode)."""
    intake = hub.mqtt
    return intake.health() if isinstance(intake, ClusterIntake) else None
