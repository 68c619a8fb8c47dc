"""``hub report daily``: write a site's daily patrol report from the state store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from hub.settings import Settings


class _NoAlarms:
    """Alarm sink of a report run: it only reads, so nothing is ever raised."""

    def raise_or_update(self, *args: Any, **kwargs: Any) -> str:
        """Never called while reporting."""
        raise RuntimeError("reports raise no alarms")

    def auto_clear(self, *args: Any, **kwargs: Any) -> None:
        """Never called while reporting."""
        raise RuntimeError("reports clear no alarms")

    def open_alarms(self) -> list[tuple[str, str, str, str, str]]:
        """No alarms."""
        return []


def _cmd_daily(args: argparse.Namespace, settings: Settings) -> int:
    from hub.db import make_engine
    from hub.patrol import reports
    from hub.patrol.schedule import local_date
    from hub.patrol.service import PatrolService, UnknownSite
    from hub.sites import load_sites

    engine = make_engine(settings.resolved_database_url())
    try:
        service = PatrolService.from_settings(settings, engine, _NoAlarms(),
                                              load_sites(settings.sites_dir))
        try:
            site = service.site(args.site)
        except UnknownSite:
            print(f"unknown site {args.site!r}", file=sys.stderr)
            return 2
        day = date.fromisoformat(args.date) if args.date else local_date(
            site, service.now(site.site))
        body = reports.render(reports.daily_report(service, site.site, day), args.format)
    finally:
        engine.dispose()
    out = args.out or Path(f"patrol-{site.site}-{day.isoformat()}.{args.format}")
    out.write_bytes(body)
    print(f"wrote {out} ({len(body)} bytes)")
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_settings_flags: Callable[[argparse.ArgumentParser], None],
    settings_of: Callable[[argparse.Namespace], Settings],
) -> None:
    """Add ``hub report daily`` to the ``hub`` command."""
    report = sub.add_parser("report", help="patrol reports from the state store")
    kinds = report.add_subparsers(dest="report", required=True)
    daily = kinds.add_parser("daily", help="daily patrol report: rounds, misses, hazards")
    add_settings_flags(daily)
    daily.add_argument("--site", required=True, help="site name, e.g. fuping")
    daily.add_argument("--date", default=None, help="local date YYYY-MM-DD (default today)")
    daily.add_argument("--format", choices=("html", "xlsx"), default="html")
    daily.add_argument("--out", type=Path, default=None, help="output file")
    daily.set_defaults(func=lambda args: _cmd_daily(args, settings_of(args)))
