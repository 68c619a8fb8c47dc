"""QoS 0 publishes of QoS 1 topics ("strays") in cluster mode: caught and stored, not lost.

The NATS MQTT layer keeps in ``$MQTT_msgs`` only what a device published at QoS 1, and the hubs
read their QoS 1 topics from there. A device that publishes such a topic at QoS 0 (firmware
that differs from its profile, a last will set at QoS 0) reaches nothing but the NATS subject
``hubp.<partition>.<subject>``. Every hub runs a catcher process subscribed to ``hubp.>`` in one
queue group: each message reaches one catcher of the cluster, which drops the QoS 1 ones (the
server marks every MQTT publish with its QoS in the ``Nmqtt-Pub`` header) and republishes the
rest to ``hubq.<partition>.<subject>`` with a message id (the stream's duplicate window absorbs
a retried publish). ``HUB_READINGS`` keeps them there for the partition's owner like any QoS 0
topic; the rules, the store and the acks are unchanged.

A process of its own: every QoS 1 message of the cluster crosses one catcher once, and that
parsing stays off the pipeline's interpreter. What a catcher holds when it dies is lost, as
QoS 0 allows; each loss it can see is counted and logged with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from prometheus_client import Counter

from hub.cluster.jetstream import connect
from hub.cluster.partition import PARTITION_PREFIX, QOS0_PREFIX, subject_to_topic
from hub.settings import Settings

log = logging.getLogger(__name__)

QUEUE_GROUP = "hub-strays"
QOS_HEADER = "Nmqtt-Pub"  # set by nats-server on every message an MQTT client published
QUEUE_MAX = 10_000  # strays waiting for the stream: beyond this one is lost, and counted
WORKERS = 32  # concurrent publishes to the stream
ATTEMPTS = 5  # publishes of one stray before it is counted lost (0.2 s, doubling)
REPORT_S = 1.0
TOPICS_NAMED = 1_000  # distinct topics a catcher names in the log (one line each, first time)
RESTART_DELAY_S = 1.0

STRAYS = Counter("hub_cluster_strays_total",
                 "QoS 0 publishes of QoS 1 topics caught by this hub's catcher, by outcome",
                 ["outcome"])
for _outcome in ("stored", "lost"):
    STRAYS.labels(_outcome)


class StrayCatcher:
    """The hub's side: starts the catcher process, restarts it, counts what it reports."""

    def __init__(self, settings: Settings) -> None:
        assert settings.cluster_url is not None
        self.settings = settings
        self.stored = 0
        self.lost = 0
        self.connected = False
        self.last_error: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the catcher process and the thread that reads its reports."""
        self._thread = threading.Thread(target=self._supervise, name="cluster-strays",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the catcher (what it holds is lost, as QoS 0 allows)."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
        if self._thread is not None:
            self._thread.join(5)

    def health(self) -> dict[str, Any]:
        """What /api/health and /api/cluster say of this hub's catcher."""
        return {"connected": self.connected, "stored": self.stored, "lost": self.lost,
                "last_error": self.last_error}

    def _supervise(self) -> None:
        while not self._stopping:
            s = self.settings
            config = {"cluster_url": s.cluster_url, "node_id": s.resolved_node_id(),
                      "mqtt_ca_file": str(s.mqtt_ca_file) if s.mqtt_ca_file else None,
                      "mqtt_cert_file": str(s.mqtt_cert_file) if s.mqtt_cert_file else None,
                      "mqtt_key_file": str(s.mqtt_key_file) if s.mqtt_key_file else None}
            proc = subprocess.Popen([sys.executable, "-m", "hub.cluster.strays"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self._proc = proc
            assert proc.stdin is not None and proc.stdout is not None
            with contextlib.suppress(OSError):  # credentials on a pipe, not on the command line
                proc.stdin.write(json.dumps(config).encode())
                proc.stdin.close()
            for report in _reports(proc.stdout):
                self._count(report)
            code = proc.wait()
            self.connected = False
            if self._stopping:
                return
            self.last_error = f"stray catcher exited (code {code}); restarting"
            log.error("%s", self.last_error)
            time.sleep(RESTART_DELAY_S)

    def _count(self, report: dict[str, Any]) -> None:
        stored, lost = int(report.get("stored", 0)), int(report.get("lost", 0))
        self.stored += stored
        self.lost += lost
        STRAYS.labels("stored").inc(stored)
        STRAYS.labels("lost").inc(lost)
        self.connected = bool(report.get("connected", self.connected))
        self.last_error = report.get("error") or self.last_error
        for topic in report.get("topics", ()):
            log.warning("QoS 0 publish on %s, a QoS 1 topic of its profile: stored through "
                        "%s.<partition> (at most once in cluster mode; fix the device or its "
                        "profile)", topic, QOS0_PREFIX)
        for reason in report.get("reasons", ()):
            log.error("stray lost: %s", reason)


def _reports(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    for line in stream:
        with contextlib.suppress(ValueError):
            report = json.loads(line)
            if isinstance(report, dict):
                yield report


# ---------------------------------------------------------------------- the catcher process


class _Catcher:
    """The process's loop: the queue-group subscription and the publishes to the stream."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_MAX)
        self.stored = 0
        self.lost = 0
        self.reasons: list[str] = []
        self.topics: list[str] = []
        self.named: set[str] = set()
        self.connected = False
        self.error: str | None = None
        self.prefix = f"{settings.resolved_node_id()}-{os.getpid()}-{time.time_ns()}"
        self.sent = 0

    async def run(self) -> None:
        """Catch strays until the process is stopped."""
        async def disconnected() -> None:
            self.connected = False

        async def reconnected() -> None:
            self.connected = True

        async def error(exc: Exception) -> None:
            self.error = f"{type(exc).__name__}: {exc}"
            if "slow consumer" in str(exc).lower():
                self._lose(None, "the catcher fell behind and the client dropped messages "
                                 "unexamined (slow consumer)")

        nc = await connect(self.settings, f"hub-{self.settings.resolved_node_id()}-strays",
                           disconnected_cb=disconnected, reconnected_cb=reconnected,
                           error_cb=error)
        js = nc.jetstream(timeout=5)
        await nc.subscribe(f"{PARTITION_PREFIX}.>", queue=QUEUE_GROUP, cb=self._on_message,
                           pending_msgs_limit=200_000, pending_bytes_limit=256 * 1024 * 1024)
        await nc.flush()
        self.connected = True
        workers = [asyncio.create_task(self._worker(js)) for _ in range(WORKERS)]
        try:
            while True:
                self._report()
                await asyncio.sleep(REPORT_S)
        finally:
            for task in workers:
                task.cancel()

    async def _on_message(self, msg: Any) -> None:
        headers = msg.headers
        if headers is not None and headers.get(QOS_HEADER, "0") != "0":
            return  # QoS 1 or 2: stored in $MQTT_msgs before PUBACK, read from there
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._lose(msg, f"{QUEUE_MAX} strays already waiting for the stream")

    async def _worker(self, js: Any) -> None:
        while True:
            msg = await self.queue.get()
            self.sent += 1
            headers = dict(msg.headers or {})
            headers["Nats-Msg-Id"] = f"{self.prefix}-{self.sent}"
            subject = QOS0_PREFIX + msg.subject[len(PARTITION_PREFIX):]
            wait = 0.2
            for attempt in range(ATTEMPTS):
                try:
                    await js.publish(subject, msg.data, headers=headers)
                except Exception as exc:
                    if attempt == ATTEMPTS - 1:
                        self._lose(msg, f"the stream did not take it: {type(exc).__name__}: "
                                        f"{exc}")
                    else:
                        await asyncio.sleep(wait)
                        wait *= 2
                else:
                    self.stored += 1
                    self._name(msg.subject)
                    break

    def _name(self, subject: str) -> None:
        topic = subject_to_topic(subject.split(".", 2)[2])
        if topic not in self.named and len(self.named) < TOPICS_NAMED:
            self.named.add(topic)
            self.topics.append(topic)

    def _lose(self, msg: Any, why: str) -> None:
        self.lost += 1
        if len(self.reasons) < 20:
            where = "" if msg is None else f" ({subject_to_topic(msg.subject.split('.', 2)[2])})"
            self.reasons.append(why + where)

    def _report(self) -> None:
        report = {"stored": self.stored, "lost": self.lost, "connected": self.connected,
                  "error": self.error, "topics": self.topics, "reasons": self.reasons}
        self.stored = self.lost = 0
        self.topics, self.reasons, self.error = [], [], None
        try:
            sys.stdout.write(json.dumps(report) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # the hub is gone (killed): so is its catcher
            os._exit(0)


def main() -> None:
    """The catcher process: its settings come on stdin."""
    config = json.loads(sys.stdin.read())
    fields = {k: v for k, v in config.items() if v is not None}
    settings = Settings(**fields)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_Catcher(settings).run())


if __name__ == "__main__":
    main()
