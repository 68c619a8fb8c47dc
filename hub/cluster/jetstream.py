"""The cluster's JetStream objects (the stream, its per-partition consumers, the lease and
member buckets) and the connection to them; ``hub cluster init`` creates them idempotently."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from hub.cluster.partition import PARTITION_PREFIX
from hub.settings import Settings

STREAM = "HUB_READINGS"
LEASES_BUCKET = "hub_leases"
MEMBERS_BUCKET = "hub_members"
LEASE_TTL_S = 6.0  # a lease not renewed for this long is gone: takeover within ~8 s
DAY_S = 86_400


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
    """The stream over every partition's subjects."""
    return StreamConfig(
        name=STREAM, subjects=[f"{PARTITION_PREFIX}.>"], retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE, num_replicas=limits.replicas, max_age=limits.max_age_s,
        max_bytes=limits.max_bytes, discard=DiscardPolicy.OLD,
        duplicate_window=limits.duplicate_window_s,
        description=f"device readings in {partitions} partitions (hubp.<partition>.<subject>)",
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
    for bucket in (LEASES_BUCKET, MEMBERS_BUCKET):
        try:
            await js.key_value(bucket)
            done.append(f"bucket {bucket}: exists")
        except (NotFoundError, BadRequestError):
            await js.create_key_value(KeyValueConfig(
                bucket=bucket, history=1, ttl=LEASE_TTL_S, replicas=limits.replicas,
                storage=StorageType.FILE))
            done.append(f"bucket {bucket}: created (ttl {LEASE_TTL_S:g} s)")
    return done
