"""The cluster's JetStream objects (the stream, its per-partition consumers, the lease and
member buckets) and the connection to them; ``hub cluster init`` creates them idempotently."""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, KeyNotFoundError, NotFoundError

from hub.cluster.partition import QOS0_PREFIX, partition_subjects
from hub.intake.common import MqttUrl, parse_mqtt_urls
from hub.settings import Settings

STREAM = "HUB_READINGS"  # QoS 0 topics (hubq.>): captured by this stream
MQTT_STREAM = "$MQTT_msgs"  # QoS 1 topics: stored here by the NATS MQTT layer before PUBACK
SOURCES = {"p": MQTT_STREAM, "q": STREAM}  # source key -> stream (see partition_subjects)
LEASES_BUCKET = "hub_leases"
MEMBERS_BUCKET = "hub_members"
CONSUMERS_BUCKET = "hub_consumers"  # partition -> its current consumer's name (no expiry)
LEASE_TTL_S = 8.0  # a lease not renewed for this long is gone: takeover within ~12 s
DAY_S = 86_400
MAX_ACK_PENDING = 50_000  # per partition: the pipeline holds up to a batch and the writer more
ACK_WAIT_S = 120.0  # a live owner's unacked messages (a takeover does not wait for this)


@dataclass(frozen=True)
class StreamLimits:
    """What ``hub cluster init`` sets on the stream."""

    replicas: int = 3
    max_age_s: float = 7 * DAY_S  # like the spool: a week of readings waits for the hubs
    max_bytes: int = -1
    duplicate_window_s: float = 120.0


def servers(url: str) -> list[str]:
    """HUB_CLUSTER_URL as the client's server list; raise ValueError with the reason."""
    out = [u.strip() for u in url.split(",") if u.strip()]
    if not out:
        raise ValueError("HUB_CLUSTER_URL is empty")
    for u in out:
        parts = urlsplit(u)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError(f"cluster URL {u!r}: must be nats://host:port or tls://host:port")
    return out


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS as for MQTT: tls:// URLs, HUB_MQTT_CA_FILE and an optional client certificate."""
    assert settings.cluster_url is not None
    wants = any(u.startswith("tls://") for u in servers(settings.cluster_url))
    if not wants and settings.mqtt_ca_file is None:
        return None
    context = ssl.create_default_context(
        cafile=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)
    if settings.mqtt_cert_file is not None:
        context.load_cert_chain(
            str(settings.mqtt_cert_file),
            str(settings.mqtt_key_file) if settings.mqtt_key_file else None)
    return context


async def connect(settings: Settings, name: str, **options: Any) -> Client:
    """Connect to the cluster (credentials in the URLs, reconnecting forever)."""
    assert settings.cluster_url is not None
    chosen: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
                              "connect_timeout": 5, "allow_reconnect": True, **options}
    return await nats.connect(
        servers(settings.cluster_url), name=name, tls=tls_context(settings), **chosen)


def stream_config(partitions: int, limits: StreamLimits) -> StreamConfig:
    """The stream over every partition's QoS 0 subjects."""
    return StreamConfig(
        name=STREAM, subjects=[f"{QOS0_PREFIX}.>"], retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE, num_replicas=limits.replicas, max_age=limits.max_age_s,
        max_bytes=limits.max_bytes, discard=DiscardPolicy.OLD,
        duplicate_window=limits.duplicate_window_s,
        description=f"QoS 0 device readings in {partitions} partitions (hubq.<p>.<subject>)",
    )


async def ensure(js: JetStreamContext, partitions: int, limits: StreamLimits) -> list[str]:
    """Create or update the stream and the buckets; return what was done, one line each."""
    done = []
    config = stream_config(partitions, limits)
    try:
        await js.stream_info(STREAM)
        await js.update_stream(config)
        done.append(f"stream {STREAM}: updated")
    except NotFoundError:
        await js.add_stream(config)
        done.append(f"stream {STREAM}: created")
    for bucket, ttl in ((LEASES_BUCKET, LEASE_TTL_S), (MEMBERS_BUCKET, LEASE_TTL_S),
                        (CONSUMERS_BUCKET, 0.0)):
        try:
            await js.key_value(bucket)
            done.append(f"bucket {bucket}: exists")
        except (NotFoundError, BadRequestError):
            await js.create_key_value(KeyValueConfig(
                bucket=bucket, history=1, ttl=ttl or None, replicas=limits.replicas,
                storage=StorageType.FILE))
            done.append(f"bucket {bucket}: created" + (f" (ttl {ttl:g} s)" if ttl else ""))
    done += await ensure_consumers(js, partitions)
    return done


async def ensure_consumers(js: JetStreamContext, partitions: int) -> list[str]:
    """A durable consumer per partition and source, unless one is recorded already.

    ``$MQTT_msgs`` keeps a message only while some consumer is interested in it, so every
    partition needs its consumer before the first device publishes, not when a hub comes.
    """
    consumers = await js.key_value(CONSUMERS_BUCKET)
    made = 0
    for key, stream in SOURCES.items():
        for p in range(partitions):
            with contextlib.suppress(KeyNotFoundError):
                if (await consumers.get(f"{key}{p}")).value:
                    continue
            name = f"{key}{p}-0"
            await js.add_consumer(stream, consumer_config(name, partition_subjects(p)[key], 1))
            await consumers.put(f"{key}{p}", name.encode())
            made += 1
    return [f"consumers: {made} created, {len(SOURCES) * partitions - made} existed"]


def consumer_config(name: str, subject: str, start: int) -> ConsumerConfig:
    """A partition's durable pull consumer: ack all, from stream sequence ``start``."""
    return ConsumerConfig(
        durable_name=name, filter_subject=subject, ack_policy=AckPolicy.ALL,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
        max_ack_pending=MAX_ACK_PENDING, ack_wait=ACK_WAIT_S, max_waiting=16)


def touch_mqtt(settings: Settings, timeout: float = 10.0) -> None:
    """Connect once over MQTT (HUB_MQTT_URL: a node's MQTT listener, the first of the list that
    answers): the server creates its MQTT streams, ``$MQTT_msgs`` among them, on an account's
    first MQTT connection."""
    urls = parse_mqtt_urls(settings.mqtt_url)
    for i, url in enumerate(urls):
        try:
            _touch_one(settings, url, timeout)
            return
        except (OSError, ConnectionError):
            if i == len(urls) - 1:
                raise


def _touch_one(settings: Settings, url: MqttUrl, timeout: float) -> None:
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    done = threading.Event()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id="hub-cluster-init", protocol=paho.MQTTv311)
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
                       certfile=str(settings.mqtt_cert_file) if settings.mqtt_cert_file else None,
                       keyfile=str(settings.mqtt_key_file) if settings.mqtt_key_file else None)
    client.on_connect = lambda *_args: done.set()
    client.connect(url.host, url.port)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise ConnectionError(f"no MQTT CONNACK from {url.host}:{url.port} in {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
