"""Officer actions on any hub of a cluster: the owner of the device hears of them at once.

An officer may ack, clear, assign or comment an alarm on any hub. That hub writes the row under
its version (``hub.alarms.merge``: the write applies only if nobody changed the row since it was
read, else it merges and writes again), in the same transaction as the history row naming the
user and the hub and the notification outbox's cancel, then publishes the alarm id on NATS core
subject ``hub.alarm.<partition>``. Every hub subscribes ``hub.alarm.*``; the one holding the
alarm in memory (the owner of the device's partition, or a hub adopting that partition right now)
merges the stored row before its next write. A lost message costs nothing but time: the owner's
next write of that alarm finds a newer version and merges then.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from nats.aio.client import Client
from nats.aio.msg import Msg

from hub.cluster.partition import partition_of

if TYPE_CHECKING:
    from hub.alarms.model import Alarm
    from hub.alarms.service import AlarmService
    from hub.cluster.handover import Handover
    from hub.cluster.intake import ClusterIntake

log = logging.getLogger(__name__)
SUBJECT = "hub.alarm"


class AlarmSync:
    """Announces officer changes of alarms held elsewhere and merges the ones announced here."""

    def __init__(self, intake: ClusterIntake, alarms: AlarmService, partitions: int) -> None:
        self.intake = intake
        self.alarms = alarms
        self.partitions = partitions
        self.merged = 0

    @classmethod
    def attach(cls, intake: ClusterIntake, alarms: AlarmService,
               handover: Handover) -> AlarmSync:
        """Put the alarm service in cluster mode: versioned writes, held alarms, announcements."""
        sync = cls(intake, alarms, handover.partitions)
        alarms.shared = True
        alarms.owns = lambda device_id: handover.part(device_id) in handover.owned
        alarms.store.node = intake.node_id
        alarms.announce = sync.announce
        intake.on_connect.append(sync.subscribe)
        return sync

    async def subscribe(self, nc: Client) -> None:
        """Subscribe every partition's subject (a hub adopting one must hear it too)."""
        loop = asyncio.get_running_loop()

        async def heard(msg: Msg) -> None:
            # the merge reads the database: off the intake's loop
            loop.run_in_executor(None, self._merge, msg.data.decode(errors="replace"))

        await nc.subscribe(f"{SUBJECT}.*", cb=heard)

    def _merge(self, alarm_id: str) -> None:
        try:
            if self.alarms.sync(alarm_id):
                self.merged += 1
                log.info("cluster: alarm %s changed on another hub: merged", alarm_id)
        except Exception:  # the next write of it merges anyway
            log.warning("cluster: merging alarm %s failed", alarm_id, exc_info=True)

    def announce(self, alarm: Alarm) -> None:
        """Tell the owner of the alarm's device that its row changed (after the commit)."""
        subject = f"{SUBJECT}.{partition_of(alarm.device_id, self.partitions)}"
        self.intake.call(self._publish(subject, alarm.id.encode()), timeout=3)

    async def _publish(self, subject: str, data: bytes) -> None:
        nc = self.intake.client
        if nc is None:
            raise RuntimeError("not connected to the cluster")
        await nc.publish(subject, data)
        await nc.flush(timeout=2)
