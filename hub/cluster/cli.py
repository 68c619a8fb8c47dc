"""``hub cluster nats-config`` (one node's nats-server file) and ``hub cluster init``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from hub.settings import Settings


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_settings_flags: Callable[[argparse.ArgumentParser], None],
    settings_of: Callable[[argparse.Namespace], Settings],
) -> None:
    """Add ``hub cluster ...`` to the ``hub`` command."""
    cluster = sub.add_parser("cluster", help="several hubs on a NATS JetStream cluster")
    commands = cluster.add_subparsers(dest="cluster_command", required=True)
    config = commands.add_parser(
        "nats-config", help="print one node's nats-server configuration (nats-server -c FILE)")
    add_settings_flags(config)
    config.add_argument("--partitions", type=int, default=None,
                        help="device partitions (default HUB_CLUSTER_PARTITIONS, 16)")
    config.add_argument("--node-name", required=True, help="server_name, unique per node")
    config.add_argument("--listen", required=True, help="client listener HOST:PORT")
    config.add_argument("--mqtt-listen", required=True, help="MQTT listener HOST:PORT")
    config.add_argument("--cluster-listen", required=True, help="cluster listener HOST:PORT")
    config.add_argument("--routes", default="",
                        help="the other nodes' cluster URLs, nats-route://HOST:PORT,...")
    config.add_argument("--store-dir", required=True, help="JetStream's directory")
    config.add_argument("--max-file-store", default=None, help="JetStream disk limit (10G)")
    config.set_defaults(func=lambda args: _config(args, settings_of))
    init = commands.add_parser(
        "init", help="create the stream and the lease buckets (idempotent; HUB_CLUSTER_URL)")
    add_settings_flags(init)
    init.add_argument("--replicas", type=int, default=3, help="copies of every message (1-5)")
    init.add_argument("--max-age-days", type=float, default=7.0,
                      help="how long unconsumed readings wait in the stream")
    init.add_argument("--max-bytes", type=int, default=-1, help="stream size limit (-1: none)")
    init.set_defaults(func=lambda args: _init(args, settings_of))


def _config(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Settings]
            ) -> int:
    from hub.cluster.natsconfig import NodeSpec, render
    from hub.profiles.loader import ProfileLoadError, load_profiles

    settings = settings_of(args)
    try:
        profiles = load_profiles(settings.profiles_dir)
    except ProfileLoadError as exc:
        print("\n".join(str(e) for e in exc.errors), file=sys.stderr)
        return 1
    spec = NodeSpec(
        node_name=args.node_name, listen=args.listen, mqtt_listen=args.mqtt_listen,
        cluster_listen=args.cluster_listen,
        routes=[r.strip() for r in args.routes.split(",") if r.strip()],
        store_dir=args.store_dir, partitions=args.partitions or settings.cluster_partitions,
        max_file_store=args.max_file_store)
    try:
        sys.stdout.write(render(spec, profiles))
    except ValueError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    return 0


def _init(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Settings]
          ) -> int:
    from hub.cluster.jetstream import DAY_S, StreamLimits, connect, ensure, touch_mqtt

    settings = settings_of(args)
    if not settings.cluster_url:
        print("hub cluster init needs HUB_CLUSTER_URL (or --cluster-url)", file=sys.stderr)
        return 2
    if not 1 <= args.replicas <= 5:
        print(f"--replicas {args.replicas}: must be 1 to 5", file=sys.stderr)
        return 2
    limits = StreamLimits(replicas=args.replicas, max_age_s=args.max_age_days * DAY_S,
                          max_bytes=args.max_bytes)

    try:
        touch_mqtt(settings)
    except Exception as exc:
        print(f"hub cluster init: MQTT {settings.mqtt_url} (a node's MQTT listener, "
              f"HUB_MQTT_URL): {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    async def run() -> list[str]:
        nc = await connect(settings, "hub-cluster-init", allow_reconnect=False)
        try:
            return await ensure(nc.jetstream(timeout=10), settings.cluster_partitions, limits)
        finally:
            await nc.close()

    try:
        lines = asyncio.run(run())
    except Exception as exc:
        print(f"hub cluster init failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
