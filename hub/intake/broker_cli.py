"""``hub broker setup``: prepare Mosquitto's dynamic-security plugin for this hub.

Run once per hub (each scale-out hub with its own HUB_MQTT_URL user and HUB_MQTT_CLIENT_ID)
after ``mosquitto_ctrl dynsec init``: it creates the ``hub`` role (read everything, write
``hub/#``), the hub's client from HUB_MQTT_URL with its client id bound, one ``alarms-{site}``
role per site (read ``hub/alarms/{site}/#`` only), with ``--devices`` a client and role for
every registered device that prints ``device_id,password`` lines (shown this once), and with
``--simulator sim`` the simulators' user (staging brokers only).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hub.settings import Settings


def _cmd(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Settings]) -> int:
    from hub.intake.broker_acl import device_topics
    from hub.intake.common import parse_mqtt_url
    from hub.intake.dynsec import Dynsec, DynsecError, setup
    from hub.profiles.loader import load_profiles
    from hub.sites import load_sites

    settings = settings_of(args)
    if not settings.broker_admin_url:
        print("hub broker setup: set HUB_BROKER_ADMIN_URL (the plugin admin)", file=sys.stderr)
        return 2
    url = parse_mqtt_url(settings.mqtt_url)
    if not url.username or not url.password:
        print("hub broker setup: HUB_MQTT_URL needs the hub's user and password", file=sys.stderr)
        return 2
    registry = load_sites(settings.sites_dir)
    profiles = {p.model: p for p in load_profiles(Path(settings.profiles_dir))}
    devices = []
    if args.devices:
        devices = [(d.id, device_topics(profiles[d.model], d.id))
                   for d in registry.devices.values() if d.model in profiles]
    simulator = None
    if args.simulator:
        password = os.environ.get("SIM_MQTT_PASSWORD", "")
        if not password:
            print("hub broker setup --simulator: set SIM_MQTT_PASSWORD", file=sys.stderr)
            return 2
        patterns = sorted({m.topic.replace("{device_id}", "+")
                           for p in profiles.values() for m in p.messages.values()})
        simulator = (args.simulator, password, patterns)
    try:
        passwords = setup(Dynsec(settings.broker_admin_url), url.username, url.password,
                          settings.mqtt_client_id, sorted(registry.sites), devices, simulator)
    except DynsecError as exc:
        print(f"hub broker setup: {exc}", file=sys.stderr)
        return 1
    for device_id, password in passwords.items():
        print(f"{device_id},{password}")
    print(f"hub user {url.username} (client id {settings.mqtt_client_id}), "
          f"{len(registry.sites)} site reader role(s), {len(passwords)} device(s)",
          file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             add_settings_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    """Add ``hub broker setup`` to the ``hub`` command."""
    broker = sub.add_parser("broker", help="Mosquitto dynamic-security set-up")
    commands = broker.add_subparsers(dest="broker_command", required=True)
    setup_parser = commands.add_parser("setup", help="hub role and client, site reader roles")
    setup_parser.add_argument("--devices", action="store_true",
                              help="also (re)create every registered device's client; prints "
                                   "device_id,password lines once")
    setup_parser.add_argument("--simulator", metavar="USER", default=None,
                              help="a user that may publish every device topic, password from "
                                   "SIM_MQTT_PASSWORD (staging brokers only: hub-sim)")
    add_settings_flags(setup_parser)
    setup_parser.set_defaults(func=lambda args: _cmd(args, settings_of))
