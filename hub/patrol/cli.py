"""``hub report daily|monthly|quarterly``: write a site's reports from the state store."""

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


def _cmd_period(args: argparse.Namespace, settings: Settings) -> int:
    from hub.db import make_engine, make_sessionmaker
    from hub.evidence.service import EvidenceService
    from hub.evidence.store import FileEvidenceStore
    from hub.patrol import periodic, reports
    from hub.patrol.service import PatrolService, UnknownSite
    from hub.sites import load_sites

    try:
        period = (periodic.month(args.month) if args.report == "monthly"
                  else periodic.quarter(args.quarter))
    except periodic.BadPeriod as exc:
        print(str(exc), file=sys.stderr)
        return 2
    engine = make_engine(settings.resolved_database_url())
    try:
        service = PatrolService.from_settings(settings, engine, _NoAlarms(),
                                              load_sites(settings.sites_dir))
        evidence = EvidenceService(FileEvidenceStore(settings.data_dir / "evidence"),
                                   make_sessionmaker(engine), engine,
                                   settings.evidence_max_bytes)
        try:
            data = periodic.period_report(service, args.site, period, evidence)
        except UnknownSite:
            print(f"unknown site {args.site!r}", file=sys.stderr)
            return 2
        except periodic.BadPeriod as exc:
            print(str(exc), file=sys.stderr)
            return 2
        body = reports.render_period(data, args.format)
    finally:
        engine.dispose()
    out = args.out or Path(f"hazards-{args.site}-{period.label}.{args.format}")
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
    daily.add_argument("--format", choices=("html", "xlsx", "pdf"), default="html")
    daily.add_argument("--out", type=Path, default=None, help="output file")
    daily.set_defaults(func=lambda args: _cmd_daily(args, settings_of(args)))
    for kind, flag, example in (("monthly", "--month", "YYYY-MM"),
                                ("quarterly", "--quarter", "YYYY-Qn")):
        period = kinds.add_parser(kind, help=f"{kind} hazard report: totals, by community, "
                                             "department, inspector, route; major hazards")
        add_settings_flags(period)
        period.add_argument("--site", required=True, help="site name, e.g. fuping")
        period.add_argument(flag, required=True, help=f"the period, {example}")
        period.add_argument("--format", choices=("html", "xlsx", "pdf"), default="html")
        period.add_argument("--out", type=Path, default=None, help="output file")
        period.set_defaults(func=lambda args: _cmd_period(args, settings_of(args)))
