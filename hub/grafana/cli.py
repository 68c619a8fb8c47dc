"""``hub grafana export`` and ``hub grafana push``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from hub.settings import Settings


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from hub.grafana.export import GRAFANA_DIR, export, generate

    root = args.out or GRAFANA_DIR
    boards = generate(settings.profiles_dir, settings.sites_dir, settings.rules_dir)
    for path in export(boards, root):
        print(path)
    return 0


def _push(args: argparse.Namespace, settings: Settings) -> int:
    from hub.grafana.datasource import influx_datasource, static_datasource
    from hub.grafana.export import generate
    from hub.grafana.push import GrafanaPusher, PushError

    url = args.url or settings.grafana_url
    token = args.token or settings.grafana_token
    influx_url = settings.grafana_influx_url or settings.influx_url
    if not url or not token:
        print(
            "hub grafana push: give --url and --token (or HUB_GRAFANA_URL/_TOKEN)", file=sys.stderr
        )
        return 2
    if not influx_url:
        print(
            "hub grafana push: give --influx-url (InfluxDB as Grafana reaches it)", file=sys.stderr
        )
        return 2
    sources = [
        influx_datasource(influx_url, settings.influx_db, settings.influx_token),
        static_datasource(),
    ]
    pusher = GrafanaPusher.connect(url, token, folder_uid=args.folder_uid)
    try:
        report = pusher.push(
            sources,
            generate(settings.profiles_dir, settings.sites_dir, settings.rules_dir),
            hub_url=args.hub_url or settings.console_url,
        )
    except PushError as exc:
        print(f"hub grafana push: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_settings_flags: Callable[[argparse.ArgumentParser], None],
    settings_of: Callable[[argparse.Namespace], Settings],
) -> None:
    """Add the ``hub grafana`` command group to the ``hub`` command."""
    grafana = sub.add_parser("grafana", help="dashboards as code: export JSON, push to Grafana")
    commands = grafana.add_subparsers(dest="grafana_command", required=True)
    export = commands.add_parser("export", help="write grafana/dashboards and provisioning")
    add_settings_flags(export)
    export.add_argument("--out", type=Path, default=None, help="root dir (default grafana/)")
    export.set_defaults(func=lambda args: _export(args, settings_of(args)))
    push = commands.add_parser("push", help="create or update datasources and dashboards")
    add_settings_flags(push)
    push.add_argument("--url", help="Grafana base URL [HUB_GRAFANA_URL]")
    push.add_argument("--token", help="service-account token [HUB_GRAFANA_TOKEN]")
    push.add_argument("--folder-uid", default="safety-hub", help="our folder (created)")
    push.add_argument("--hub-url", help="duty console base URL for alarm links [HUB_CONSOLE_URL]")
    push.set_defaults(func=lambda args: _push(args, settings_of(args)))
