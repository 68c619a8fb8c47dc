"""The intake of a cluster hub: JetStream pull consumers of the partitions it holds a lease on.

Same interface as the MQTT intake (``receive``, ``ack_many``, ``publish``, ``connected``), so
the pipeline and everything after it are unchanged. The NATS client runs on an asyncio loop in
a thread of its own; the pipeline thread pulls what the partitions' fetches put in a buffer.

Leases are JetStream key-value entries (``hub_leases``, key ``p<partition>``, value the owner's
node id) in a bucket whose ``max_age`` is the lease time: an owner renews with compare-and-set
(``update`` with the revision it holds) every scan; a dead owner's keys expire and another hub
``create``s them (which only succeeds on an absent key). Members announce themselves in
``hub_members`` the same way. Partition ``p`` belongs to ``members[p % len(members)]`` (sorted
node ids): a hub that holds partitions meant for another live member releases them, a hub takes
the free partitions meant for it, and any partition left free for three scans.

Acks: consumers ack all (``AckPolicy.ALL``), so one ack per partition per durable batch stands
for every message before it; a message's ack token is ``(consumer, number, reply subject)``.
Taking a partition over resets its durable consumer to start after the stream sequence its old
owner acknowledged last: what the old owner had not acked is delivered again at once (storage
is idempotent, rules ignore readings older than the state they loaded), without waiting for the
ack timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from hub.cluster.handover import Handover, Request
from hub.cluster.jetstream import (
    CONSUMERS_BUCKET,
    LEASE_TTL_S,
    LEASES_BUCKET,
    MEMBERS_BUCKET,
    MQTT_STREAM,
    SOURCES,
    STREAM,
    connect,
    consumer_config,
)
from hub.cluster.partition import partition_subjects, subject_to_topic, unpublishable
from hub.cluster.pull import LOST, Frame, PullConsumer
from hub.cluster.strays import StrayCatcher
from hub.intake.common import MqttUrl
from hub.intake.metrics import CONNECTED, CONNECTS, ReceivedCounter
from hub.model import InboundMessage
from hub.settings import Settings

log = logging.getLogger(__name__)

SCAN_S = 1.0  # leases renewed and the table read this often
SETTLE_SCANS = 2  # a starting hub only announces itself at first: no take-all-then-give-back
FREE_SCANS = 2  # a free partition meant for another member is taken after this many scans
FETCH_BATCH = 500
FETCH_EXPIRES_S = 1.0  # a pull request's life on the server when fewer messages are there
ENDED = (None, b"408", b"404", LOST)  # all came, expired, none there, no answer (ask again)
LOST_REPORTED = 3  # unanswered requests in a row that make a last_error
BUFFER_MAX = 20_000  # messages fetched and not yet pulled by the pipeline
LEAVE_S = 5.0  # a stopping hub's lease and member deletes, all together
RELEASE_WAIT_S = 30.0  # for the pipeline to ack what it has of a partition being released
PULL_MAX = 5000


class _Consumer:
    """One owned partition's pull consumer and how far the pipeline got with it."""

    __slots__ = ("acked", "handed", "partition", "pull", "skip")

    def __init__(self, partition: int, subject: str) -> None:
        self.partition = partition
        self.pull: PullConsumer | None = None
        self.skip = len(subject) - 1  # "$MQTT.msgs.hubp.3." of "$MQTT.msgs.hubp.3.>"
        self.handed = 0  # messages put in the buffer
        self.acked = 0  # the highest of those acknowledged (ack-all: every one before it too)


class _Lease:
    """A partition this hub holds a lease on."""

    __slots__ = ("consumers", "generation", "partition", "renewed", "revision", "state",
                 "tasks")

    def __init__(self, partition: int, revision: int) -> None:
        self.partition = partition
        self.revision = revision  # 0 until the lease is created
        self.generation = 0  # the lease revision its consumer is named after
        self.renewed = time.monotonic()
        self.state = "adopting"  # adopting -> active -> releasing; or lost
        self.consumers: list[_Consumer] = []  # one per source (see jetstream.SOURCES)
        self.tasks: list[asyncio.Task[None]] = []


def _wake(leases: list[_Lease]) -> None:
    """Have the leases' fetchers look at their state now, not when their requests end."""
    for lease in leases:
        for consumer in lease.consumers:
            if consumer.pull is not None:
                consumer.pull.wake()


class ClusterIntake(ReceivedCounter):
    """Partition leases and JetStream consumers; hands messages to the pipeline."""

    def __init__(self, settings: Settings, publisher: Any | None = None,
                 strays: StrayCatcher | None = None) -> None:
        assert settings.cluster_url is not None
        self.settings = settings
        self.strays = strays
        self.device_ids: Callable[[], list[str]] = list  # the registered devices (wiring)
        self.unpublishable: list[str] = []  # of those, the ones the server's MQTT layer refuses
        self.node_id = settings.resolved_node_id()
        self.partitions = settings.cluster_partitions
        self.publisher = publisher  # an MQTT connection for retained alarms and hub/status
        self.last_error: str | None = None
        self.handover: Handover | None = None
        self.members: list[str] = []
        self.owners: dict[int, str | None] = dict.fromkeys(range(self.partitions))
        self._leases: dict[int, _Lease] = {}
        self._free_scans = dict.fromkeys(range(self.partitions), 0)
        self._buffer: deque[InboundMessage] = deque()
        self._ready = threading.Event()  # the buffer has messages
        self._connected = threading.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pump: threading.Thread | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._admin: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._members_kv: KeyValue | None = None
        self._consumers_kv: KeyValue | None = None
        self._kv_lock: asyncio.Lock | None = None
        self._done = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # run on the intake's loop after each first connect (e.g. hub.cluster.alarmsync)
        self.on_connect: list[Callable[[Client], Coroutine[Any, Any, None]]] = []
        # called on the intake's loop after every reconnect (e.g. hub.cluster.view)
        self.reconnect_hooks: list[Callable[[], None]] = []
        self._scans = 0
        self.started_ns = time.time_ns()

    @property
    def url(self) -> MqttUrl:
        """The node's MQTT listener the publisher is on (or tries next)."""
        if self.publisher is None:
            return MqttUrl("cluster", 0, False, None, None)
        url: MqttUrl = self.publisher.url
        return url

    @property
    def on_connected(self) -> Callable[[], object] | None:
        """Called by the MQTT publisher on every connect (the hub republishes alarms)."""
        return None if self.publisher is None else self.publisher.on_connected

    @on_connected.setter
    def on_connected(self, callback: Callable[[], object] | None) -> None:
        if self.publisher is not None:
            self.publisher.on_connected = callback

    # ------------------------------------------------------------------ lifecycle

    def start(self, wait_s: float = 0.0) -> bool:
        """Connect to the cluster (retrying forever) and start claiming partitions."""
        if self.publisher is not None:
            self.publisher.start()
            self._pump = threading.Thread(target=self._pump_publisher, name="cluster-publisher",
                                          daemon=True)
            self._pump.start()
        if self.strays is not None:
            self.strays.start()
        self._thread = threading.Thread(target=self._run, name="cluster-intake", daemon=True)
        self._thread.start()
        if wait_s > 0:
            return self._connected.wait(wait_s)
        return self._connected.is_set()

    def _pump_publisher(self) -> None:
        """Read the publisher's frames: its process reports its connection (and which URL)
        and each new connection, on which the hub republishes its retained alarms, where
        messages are pulled; it subscribes to nothing, so nothing else pulls them."""
        publisher = self.publisher
        assert publisher is not None
        while not self._stopping:
            publisher.receive(0.5)

    def stop(self) -> None:
        """Give the leases and membership up (the others take over at once) and disconnect."""
        self._stopping = True
        self._ready.set()
        if self._loop is not None and not self._done.is_set():
            self._done.wait(15)
        if self._pump is not None:
            self._pump.join(5)  # one reader of the publisher's pipe at a time: its stop reads too
        if self.publisher is not None:
            self.publisher.stop()
        if self.strays is not None:
            self.strays.stop()
        CONNECTED.set(0)

    @property
    def connected(self) -> bool:
        """True while connected to a NATS node with the buckets found."""
        return self._connected.is_set()

    @property
    def pid(self) -> int | None:
        """No intake process in cluster mode."""
        return None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("cluster intake stopped")
        finally:
            self._connected.clear()
            self._done.set()
            loop.close()

    # ------------------------------------------------------------------ the pipeline's thread

    def receive(self, timeout: float) -> list[InboundMessage]:
        """Messages fetched so far, waiting up to ``timeout`` s for the first."""
        buffer = self._buffer
        if not buffer:
            self._ready.clear()
            if not buffer:
                self._ready.wait(timeout)
        count = min(len(buffer), PULL_MAX)
        return [buffer.popleft() for _ in range(count)]

    # ------------------------------------------------------------------ any thread

    def ack_many(self, tokens: list[Any]) -> None:
        """Acknowledge a durable batch: the last message of each partition in it (ack all)."""
        last: dict[_Consumer, tuple[_Consumer, int, bytes]] = {}
        for token in reversed(tokens):
            if token is not None and token[0] not in last:
                last[token[0]] = token
        loop = self._loop
        if last and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                asyncio.run_coroutine_threadsafe(self._ack(list(last.values())), loop)

    def publish(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        """Publish over the MQTT connection to a node (retained topics need MQTT)."""
        if self.publisher is not None:
            self.publisher.publish(topic, payload, retain, qos)

    @property
    def client(self) -> Client | None:
        """The NATS connection (None until connected)."""
        return self._nc

    def publish_core(self, subject: str, payload: bytes) -> None:
        """Publish on NATS core (at most once, no stream), from any thread; dropped while not
        connected yet."""
        loop, nc = self._loop, self._nc
        if loop is not None and nc is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                asyncio.run_coroutine_threadsafe(nc.publish(subject, payload), loop)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run a callback on the intake's loop soon, from any thread (dropped when stopped)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(callback)

    @property
    def max_payload(self) -> int:
        """The largest message the connected server takes (0 before connecting)."""
        return self._nc.max_payload if self._nc is not None else 0

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run a coroutine on the intake's loop from another thread and return its result."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            raise RuntimeError("cluster intake is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    # ------------------------------------------------------------------ the loop

    async def _main(self) -> None:
        self._kv_lock = asyncio.Lock()
        while not self._stopping:
            try:
                await self._connect()
                break
            except Exception as exc:
                self.last_error = f"cluster: {type(exc).__name__}: {exc}"
                log.warning("%s; retrying", self.last_error)
                await asyncio.sleep(1.0)
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._scan()
            except Exception as exc:
                self.last_error = f"cluster scan: {type(exc).__name__}: {exc}"
                log.warning("%s", self.last_error)
            await asyncio.sleep(max(0.05, SCAN_S - (time.monotonic() - started)))
        await self._shutdown()

    async def _connect(self) -> None:
        async def disconnected() -> None:
            self._connected.clear()
            CONNECTED.set(0)

        async def reconnected() -> None:
            self._connected.set()
            CONNECTS.inc()
            CONNECTED.set(1)
            for hook in self.reconnect_hooks:
                hook()

        async def error(exc: Exception) -> None:
            self.last_error = f"cluster: {type(exc).__name__}: {exc}"

        nc = await connect(self.settings, f"hub-{self.node_id}", disconnected_cb=disconnected,
                           reconnected_cb=reconnected, error_cb=error)
        try:
            js = nc.jetstream(timeout=3)
            self._kv = await js.key_value(LEASES_BUCKET)
            self._members_kv = await js.key_value(MEMBERS_BUCKET)
            self._consumers_kv = await js.key_value(CONSUMERS_BUCKET)
            await js.stream_info(STREAM)
            await js.stream_info(MQTT_STREAM)  # made by the servers' MQTT side: `hub cluster init`
        except Exception:
            await nc.close()
            raise
        self._nc, self._js = nc, js
        for hook in self.on_connect:
            await hook(nc)
        # consumer changes are raft operations of the meta leader: slower than KV under load
        self._admin = nc.jetstream(timeout=15)
        version = nc.connected_server_version
        self.unpublishable = unpublishable(self.device_ids(), (version.major, version.minor))
        self.last_error = None
        self._connected.set()
        CONNECTS.inc()
        CONNECTED.set(1)
        log.info("cluster: node %s connected to %s", self.node_id, nc.connected_url)

    async def _scan(self) -> None:
        kv = self._kv
        assert kv is not None
        me = self.node_id
        await self._renew()
        live = await self._live()
        entries = await asyncio.gather(*(self._get(kv, p) for p in range(self.partitions)),
                                       return_exceptions=True)
        owners: dict[int, str | None] = {}
        claim: list[int] = []
        release: list[int] = []
        settling = self._scans < SETTLE_SCANS  # the others' announcements come in first
        self._scans += 1
        for p, entry in enumerate(entries):
            if isinstance(entry, BaseException):
                owners[p] = self.owners.get(p)  # not known this scan: as before, no move
                continue
            owners[p] = entry[0] if entry else None
            meant = live[p % len(live)]
            lease = self._leases.get(p)
            if lease is not None:
                if lease.state == "active" and meant != me:
                    release.append(p)
            elif entry is None:
                self._free_scans[p] += 0 if settling else 1
                if not settling and (meant == me or self._free_scans[p] >= FREE_SCANS):
                    claim.append(p)
            else:
                self._free_scans[p] = 0
        self.members, self.owners = live, owners
        if claim:
            for p in claim:  # held from now on, so the next scan does not claim it again
                self._leases[p] = _Lease(p, 0)
                self._free_scans[p] = 0
            self._spawn(self._claim(claim))
        if release:
            for p in release:
                self._leases[p].state = "releasing"
            self._spawn(self._release(release))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.last_error = f"cluster: {type(exc).__name__}: {exc}"
            log.error("cluster task failed", exc_info=exc)

    async def _renew(self) -> None:
        """Renew every held lease (compare-and-set on the revision held), concurrently."""
        kv, lock = self._kv, self._kv_lock
        assert kv is not None and lock is not None
        me = self.node_id.encode()

        async def renew(lease: _Lease) -> None:
            key = f"p{lease.partition}"
            try:
                lease.revision = await kv.update(key, me, last=lease.revision)
                lease.renewed = time.monotonic()
            except KeyWrongLastSequenceError:
                # a renewal that timed out may have gone through: the key is still ours then
                entry = await self._get(kv, lease.partition)
                if entry is not None and entry[0] == self.node_id:
                    lease.revision = await kv.update(key, me, last=entry[1])
                    lease.renewed = time.monotonic()
                else:
                    self._lose(lease, "lease expired or taken")

        async with lock:
            held = [lease for lease in self._leases.values()
                    if lease.state != "lost" and lease.revision > 0]
            results = await asyncio.gather(*(renew(lease) for lease in held),
                                           return_exceptions=True)
        for lease, result in zip(held, results, strict=True):
            if isinstance(result, BaseException):
                log.debug("cluster: renewing p%d failed: %s", lease.partition, result)

    async def _live(self) -> list[str]:
        """Announce this node; return the live members (the last known ones on a failure)."""
        members_kv = self._members_kv
        assert members_kv is not None
        me = self.node_id
        try:
            await members_kv.put(me, orjson.dumps({
                "node_id": me, "api": f"http://{self.settings.api_host}:{self.settings.api_port}",
                "started_ns": self.started_ns, "owned": sorted(self._leases)}))
            return sorted(set(await self._member_names()) | {me})
        except Exception as exc:
            log.debug("cluster: members not read: %s", exc)
            return sorted(set(self.members) | {me})

    async def _member_names(self) -> list[str]:
        """The live members' ids: the bucket's subjects (no consumer per call, unlike
        ``KeyValue.keys``), less the ones whose latest entry is a delete."""
        js, members_kv = self._js, self._members_kv
        assert js is not None and members_kv is not None
        prefix = f"$KV.{MEMBERS_BUCKET}."
        info = await js.stream_info(f"KV_{MEMBERS_BUCKET}", subjects_filter=f"{prefix}>")
        names = []
        for subject in (info.state.subjects or {}):
            name = subject.removeprefix(prefix)
            try:
                entry = await members_kv.get(name)
            except KeyNotFoundError:
                continue
            if entry.value:
                names.append(name)
        return names

    @staticmethod
    async def _get(kv: KeyValue, partition: int) -> tuple[str, int] | None:
        try:
            entry = await kv.get(f"p{partition}")
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return entry.value.decode(), int(entry.revision or 0)

    async def _claim(self, partitions: list[int]) -> None:
        """Create the leases, reset the consumers, have the state loaded, start fetching."""
        kv, js, nc = self._kv, self._admin, self._nc
        assert kv is not None and js is not None and nc is not None
        won: list[_Lease] = []
        for p in partitions:
            lease = self._leases[p]
            try:
                lease.revision = await kv.create(f"p{p}", self.node_id.encode())
                lease.renewed = time.monotonic()
                won.append(lease)
            except Exception as exc:  # taken meanwhile, or the cluster did not answer
                log.debug("cluster: partition %d not claimed: %s", p, exc)
                self._leases.pop(p, None)
        ready: list[_Lease] = []
        for lease, result in zip(won, await asyncio.gather(
                *(self._reset_consumer(js, lease) for lease in won), return_exceptions=True),
                strict=True):
            if isinstance(result, BaseException):
                log.warning("cluster: consumer of p%d not ready (%s): giving the lease back",
                            lease.partition, result)
                await self._give_back(lease)
            else:
                ready.append(lease)
        if not ready:
            return
        self._spawn(self._remove_orphans(js, ready))
        request = await self._ask("adopt", [lease.partition for lease in ready])
        if request.error is not None:
            self.last_error = f"cluster adopt: {request.error}"
        for lease in ready:
            if lease.state != "adopting":  # lost while its state was loading: forget it again
                if self.handover is not None:
                    self.handover.ask("drop", frozenset({lease.partition}))
                continue
            subjects = partition_subjects(lease.partition)
            try:
                for key, stream in SOURCES.items():
                    consumer = _Consumer(lease.partition, subjects[key])
                    consumer.pull = PullConsumer(
                        nc, stream, f"{key}{lease.partition}-{lease.generation}",
                        functools.partial(self._take, lease, consumer))
                    lease.consumers.append(consumer)
                    await consumer.pull.start()
            except Exception as exc:
                log.warning("cluster: binding p%d failed (%s): giving the lease back",
                            lease.partition, exc)
                for consumer in lease.consumers:
                    if consumer.pull is not None:
                        await consumer.pull.close()
                if self.handover is not None:
                    self.handover.ask("drop", frozenset({lease.partition}))
                await self._give_back(lease)
                continue
            lease.state = "active"
            loop = asyncio.get_running_loop()
            lease.tasks = [loop.create_task(self._fetch(lease, c)) for c in lease.consumers]
        log.info("cluster: node %s took partitions %s", self.node_id,
                 [lease.partition for lease in ready if lease.state == "active"])

    async def _give_back(self, lease: _Lease) -> None:
        lease.state = "lost"
        self._leases.pop(lease.partition, None)
        kv, lock = self._kv, self._kv_lock
        assert kv is not None and lock is not None
        async with lock:
            with contextlib.suppress(Exception):
                await kv.delete(f"p{lease.partition}", last=lease.revision)

    async def _reset_consumer(self, js: JetStreamContext, lease: _Lease) -> None:
        """New durable consumers for the partition, starting after the stream sequence its
        last owner acknowledged; then the last owner's consumers are deleted.

        A new name per owner (``p<partition>-<lease revision>``, recorded in ``hub_consumers``),
        never a delete and re-create of one name: if this fails half way, the old consumer and
        its ack floor are still there for the next try; and ``$MQTT_msgs`` keeps the partition's
        messages only while a consumer of it exists.
        """
        lease.generation = lease.revision
        subjects = partition_subjects(lease.partition)
        await asyncio.gather(*(self._reset_one(js, stream, f"{key}{lease.partition}",
                                               lease.generation, subjects[key])
                               for key, stream in SOURCES.items()))

    async def _reset_one(self, js: JetStreamContext, stream: str, record: str, generation: int,
                         subject: str) -> None:
        consumers_kv = self._consumers_kv
        assert consumers_kv is not None
        name = f"{record}-{generation}"
        previous: str | None = None
        with contextlib.suppress(KeyNotFoundError):
            entry = await consumers_kv.get(record)
            previous = entry.value.decode() if entry.value else None
        start = 1
        if previous is not None and previous != name:
            try:
                info = await js.consumer_info(stream, previous)
            except NotFoundError:
                previous = None  # deleted by hand, or the stream made anew: from the start
            else:
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                began = (info.config.opt_start_seq or 1) - 1
                start = max(floor or 0, began) + 1
        await js.add_consumer(stream, consumer_config(name, subject, start))
        await consumers_kv.put(record, name.encode())
        if previous is not None and previous != name:
            with contextlib.suppress(Exception):
                await js.delete_consumer(stream, previous)

    async def _remove_orphans(self, js: JetStreamContext, leases: list[_Lease]) -> None:
        """Delete consumers of these partitions that are not the current ones: those of an
        attempt that timed out but was made (on ``$MQTT_msgs`` a forgotten consumer would keep
        every message of its partition). One listing per stream for the whole claim."""
        current = {f"{key}{lease.partition}-{lease.generation}"
                   for lease in leases for key in SOURCES}
        records = {f"{key}{lease.partition}-" for lease in leases for key in SOURCES}
        for stream in SOURCES.values():
            with contextlib.suppress(Exception):
                for info in await js.consumers_info(stream):
                    name = info.name
                    if name not in current and name[:name.find("-") + 1] in records:
                        await js.delete_consumer(stream, name)

    async def _ask(self, action: str, partitions: list[int]) -> Request:
        assert self.handover is not None
        request = self.handover.ask(action, frozenset(partitions))
        while not request.done.is_set() and not self._stopping:
            await asyncio.sleep(0.02)
        return request

    async def _fetch(self, lease: _Lease, consumer: _Consumer) -> None:
        buffer, pull = self._buffer, consumer.pull
        assert pull is not None
        lost = 0  # requests in a row with no answer (a server 2.9 ignores a consumer it lacks)
        try:
            while lease.state == "active" and not self._stopping:
                if len(buffer) >= BUFFER_MAX or time.monotonic() - lease.renewed > LEASE_TTL_S - 1:
                    await asyncio.sleep(0.01)  # full, or the lease is not known to be ours
                    continue
                try:
                    status = await pull.fetch(FETCH_BATCH, FETCH_EXPIRES_S)
                except Exception as exc:
                    status = f"{type(exc).__name__}: {exc}".encode()
                lost = lost + 1 if status == LOST else 0
                if lost == LOST_REPORTED:
                    status = b"no answer to %d pull requests" % lost
                if status not in ENDED:  # 409 (too many requests, leader change), 503, ...
                    self.last_error = f"cluster fetch p{lease.partition}: {status.decode()}"
                    await asyncio.sleep(0.5)
        finally:
            await pull.close()

    def _take(self, lease: _Lease, consumer: _Consumer, frames: list[Frame]) -> None:
        """Fetched messages of one socket read into the buffer (none once the lease is not
        active: not handed on, not acked, the next owner gets them)."""
        if lease.state != "active":
            return
        skip, handed = consumer.skip, consumer.handed
        out = []
        for subject, reply, payload, _headers in frames:
            handed += 1
            tokens = reply.split(b".")
            # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>, or with
            # domain and account hash before the stream: the stream's time of the message
            stamp = int(tokens[7] if len(tokens) == 9 else tokens[-3])
            out.append(InboundMessage(subject_to_topic(subject[skip:].decode()), payload,
                                      1, False, stamp, (consumer, handed, reply)))
        consumer.handed = handed
        self._buffer.extend(out)
        self.received += len(out)
        self._ready.set()

    async def _ack(self, tokens: list[tuple[_Consumer, int, bytes]]) -> None:
        nc = self._nc
        if nc is None:
            return
        for consumer, number, reply in tokens:
            if number > consumer.acked:
                await nc.publish(reply.decode(), b"+ACK")
                consumer.acked = number

    async def _release(self, partitions: list[int]) -> None:
        """Hand partitions over: stop fetching, wait for their acks, save, drop the leases."""
        leases = [self._leases[p] for p in partitions]
        _wake(leases)
        deadline = time.monotonic() + RELEASE_WAIT_S
        for lease in leases:
            for task in lease.tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(task), 3.0)
        while time.monotonic() < deadline and any(
                c.acked < c.handed for lease in leases for c in lease.consumers):
            await asyncio.sleep(0.02)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=5)
        request = await self._ask("release", partitions)
        kv, lock = self._kv, self._kv_lock
        assert kv is not None and lock is not None
        async with lock:
            for lease in leases:
                if lease.state != "releasing":
                    continue
                with contextlib.suppress(Exception):
                    await kv.delete(f"p{lease.partition}", last=lease.revision)
                self._leases.pop(lease.partition, None)
                self._free_scans[lease.partition] = 0
        log.info("cluster: node %s released partitions %s (%d devices saved)%s", self.node_id,
                 partitions, request.devices, f": {request.error}" if request.error else "")

    def _lose(self, lease: _Lease, why: str) -> None:
        """Another hub holds the partition now: stop at once, forget its devices unsaved."""
        log.warning("cluster: node %s lost partition %d (%s)", self.node_id, lease.partition, why)
        lease.state = "lost"
        _wake([lease])
        self._leases.pop(lease.partition, None)
        if self.handover is not None:
            self.handover.ask("drop", frozenset({lease.partition}))

    async def _shutdown(self) -> None:
        for lease in list(self._leases.values()):
            lease.state = "releasing"
        _wake(list(self._leases.values()))
        await asyncio.sleep(0.1)  # acks of the last durable batch were queued before this
        nc, kv, members_kv = self._nc, self._kv, self._members_kv
        if nc is None or kv is None or members_kv is None:
            return
        with contextlib.suppress(Exception):
            await nc.flush(timeout=5)
        # all at once and bounded: one by one, 16 deletes of 3 s each could outlast the stop
        # (the others take over within the lease time anyway when these do not arrive)
        leases = list(self._leases.values())
        deletes = [kv.delete(f"p{lease.partition}", last=lease.revision) for lease in leases]
        deletes.append(members_kv.delete(self.node_id))
        try:
            left = await asyncio.wait_for(asyncio.gather(*deletes, return_exceptions=True),
                                          LEAVE_S)
        except TimeoutError:
            left = []
        given = sum(1 for r in left[:-1] if not isinstance(r, BaseException))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), 2.0)
        if not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()
        log.info("cluster: node %s left the cluster (%d of %d leases given back)",
                 self.node_id, given, len(leases))

    # ------------------------------------------------------------------ API (other threads)

    def health(self) -> dict[str, Any]:
        """This node's view: members, what it owns, which partitions have no owner."""
        unowned = sorted(p for p, owner in self.owners.items() if owner is None)
        return {"node_id": self.node_id, "connected": self.connected,
                "members": list(self.members), "owned": sorted(self._leases),
                # owned and fetched: the partition's state loaded, its consumer bound
                "active": sorted(p for p, lease in self._leases.items()
                                 if lease.state == "active"),
                "unowned": unowned, "partitions": self.partitions,
                "publisher_connected": bool(self.publisher is not None
                                            and self.publisher.connected),
                "strays": None if self.strays is None else self.strays.health(),
                "unpublishable_devices": list(self.unpublishable)}

    async def _view(self) -> dict[str, Any]:
        js, members_kv = self._js, self._members_kv
        assert js is not None and members_kv is not None
        members = []
        for name in sorted(await self._member_names()):
            try:
                entry = await members_kv.get(name)
            except KeyNotFoundError:
                continue
            if entry.value:
                members.append(orjson.loads(entry.value))

        consumers_kv = self._consumers_kv
        assert consumers_kv is not None

        async def pending(p: int) -> int | None:
            total = 0
            for key, stream in SOURCES.items():
                try:
                    entry = await consumers_kv.get(f"{key}{p}")
                    info = await js.consumer_info(stream, (entry.value or b"").decode())
                except (KeyNotFoundError, NotFoundError):
                    return None
                total += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            return total

        counts = await asyncio.gather(*(pending(p) for p in range(self.partitions)))
        return {"node_id": self.node_id, "members": members,
                "partitions": [{"partition": p, "owner": self.owners.get(p),
                                "pending": counts[p]} for p in range(self.partitions)]}

    def view(self) -> dict[str, Any]:
        """GET /api/cluster: members, every partition's owner and pending messages."""
        return dict(self.call(self._view()))
