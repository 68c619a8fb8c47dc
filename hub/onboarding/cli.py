"""``hub sites export --out DIR``: the registry as it is now (site files plus the devices and
checkpoints onboarded through the API) written back as site files, one per site."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hub.db import create_tables, make_engine
from hub.onboarding.tables import (
    CHECKPOINT_FIELDS,
    DEVICE_FIELDS,
    TABLES,
    RegistryCheckpointRow,
    RegistryDeviceRow,
)
from hub.settings import Settings
from hub.sites import Checkpoint, Device, Site, SiteRegistry, load_sites

HEADER = ("# Exported by `hub sites export` from the site files and the devices and checkpoints\n"
          "# onboarded through the API (the state store). Valid site-file input.\n")


def overlay(registry: SiteRegistry, engine: Engine) -> int:
    """Apply the stored rows to a registry (a stored row wins; retired rows remove)."""
    create_tables(engine, TABLES)
    with Session(engine) as session:
        devices = list(session.scalars(select(RegistryDeviceRow)))
        checkpoints = list(session.scalars(select(RegistryCheckpointRow)))
    for row in devices:
        if row.retired:
            registry.retire(row.id)
        elif row.site in registry.sites:
            registry.place(Device(**{k: getattr(row, k) for k in DEVICE_FIELDS if k != "site"}),
                           row.site)
    for cp in checkpoints:
        if cp.site not in registry.sites:
            continue
        if cp.retired:
            registry.retire_checkpoint(cp.site, cp.id)
        else:
            registry.place_checkpoint(Checkpoint(**{
                k: getattr(cp, k) for k in CHECKPOINT_FIELDS if k not in ("site", "route")}),
                cp.site, cp.route)
    return len(devices) + len(checkpoints)


def _record(record: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(record, name, None)
        if name == "rules":
            value = record.rules or None
        elif name == "active_hours" and value is not None:
            value = {"start": value.start.strftime("%H:%M"), "end": value.end.strftime("%H:%M")}
        if value is not None:
            out[name] = value
    return out


def site_document(site: Site) -> dict[str, Any]:
    """One site as a site file's mapping."""
    devices = {d.id for d in site.devices}
    doc: dict[str, Any] = site.model_dump(
        mode="json", exclude={"devices", "checkpoints", "routes"}, exclude_defaults=True)
    doc["site"] = site.site
    doc["name"] = site.name
    doc["devices"] = [_record(d, Device._names) for d in site.devices]
    doc["checkpoints"] = [_record(c, Checkpoint._names) for c in site.checkpoints]
    routes = []
    for route in site.routes:
        data = route.model_dump(mode="json", exclude_defaults=True)
        data["checkpoints"] = list(route.checkpoints)
        if route.readers:  # a retired reader leaves its routes
            data["readers"] = [r for r in route.readers if r in devices]
        routes.append(data)
    doc["routes"] = routes
    return {k: v for k, v in doc.items() if v not in ([], {}, None)}


def _cmd(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Settings]) -> int:
    settings = settings_of(args)
    registry = load_sites(settings.sites_dir)
    engine = make_engine(settings.resolved_database_url())
    try:
        changed = overlay(registry, engine)
    finally:
        engine.dispose()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for site in registry.sites.values():
        text = yaml.safe_dump(site_document(site), allow_unicode=True, sort_keys=False,
                              width=120)
        (out / f"{site.site}.yaml").write_text(HEADER + text, encoding="utf-8")
    print(f"wrote {len(registry.sites)} site file(s) to {out} ({changed} stored change(s) "
          "applied)", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             add_settings_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    """Add ``hub sites export`` to the ``hub`` command."""
    sites = sub.add_parser("sites", help="the site registry")
    commands = sites.add_subparsers(dest="sites_command", required=True)
    export = commands.add_parser("export", help="write the live registry back as site files")
    export.add_argument("--out", type=Path, required=True, help="directory for the YAML files")
    add_settings_flags(export)
    export.set_defaults(func=lambda args: _cmd(args, settings_of))
