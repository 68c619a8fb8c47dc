"""Devices and checkpoints onboarded while the hub runs, stored in the state store.

A change is validated (every error named), written to the state store, handed to the broker
(per-device credentials, when a provisioner is configured) and then applied to the live
registry on the pipeline thread, between two messages: the API call returns once it is
applied, so the device's next message is tagged with its site. Before the hub starts (and
when its pipeline is not running) changes apply at once. At start, the stored rows are laid
over the site files: a stored row wins over a file's entry of the same id; a retired row hides
it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hub.db import create_tables
from hub.onboarding import validate
from hub.onboarding.tables import (
    CHECKPOINT_FIELDS,
    DEVICE_FIELDS,
    TABLES,
    RegistryCheckpointRow,
    RegistryDeviceRow,
)
from hub.sites import UNASSIGNED_SITE, Checkpoint, Device

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger(__name__)
APPLY_TIMEOUT_S = 10.0


class OnboardingError(ValueError):
    """A change is invalid; ``errors`` names every problem."""

    def __init__(self, errors: list[str], status: int = 422) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.status = status


class BrokerRefused(RuntimeError):
    """The broker refused a credentials change, or did not answer (nothing was changed)."""


class Provisioner(Protocol):
    """The broker side of onboarding (hub.broker.dynsec): credentials per device."""

    def add_device(self, device_id: str, topics: list[str]) -> str:
        """Create or replace the device's broker client; return its new password."""
        ...

    def remove_device(self, device_id: str) -> None:
        """Delete the device's broker client (it is disconnected)."""
        ...


@dataclass(slots=True)
class _Change:
    apply: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def _device_json(device: Device) -> dict[str, Any]:
    return {"id": device.id, "model": device.model, "site": device.site.site,
            "community": device.community, "name": device.name, "lat": device.lat,
            "lon": device.lon, "place": device.place}


class Onboarding:
    """The live registry's writer: API changes -> state store -> broker -> registry."""

    def __init__(self, hub: Hub, engine: Engine, reserved: Collection[str] = (),
                 provisioner: Provisioner | None = None,
                 topics: Callable[[str, str], list[str]] | None = None) -> None:
        self.hub = hub
        self.engine = engine
        self.reserved = set(reserved)
        self.provisioner = provisioner
        self.topics = topics
        self._changes: queue.Queue[_Change] = queue.Queue()
        self._lock = threading.Lock()  # one change at a time: validate, store, apply
        create_tables(engine, TABLES)
        hub.pipeline.add_tick_hook("onboarding", self._on_tick)

    # -- start -------------------------------------------------------------------------------

    def load(self) -> int:
        """Lay the stored rows over the site files (before the hub starts); return how many."""
        with Session(self.engine) as session:
            devices = list(session.scalars(select(RegistryDeviceRow)))
            checkpoints = list(session.scalars(select(RegistryCheckpointRow)))
        registry = self.hub.sites
        for row in devices:
            if row.retired:
                self._retire(row.id)
            elif row.site in registry.sites:
                self._place(Device(**_device_values(row)), row.site)
            else:
                log.warning("onboarded device %s: site %s no longer exists", row.id, row.site)
        for cp in checkpoints:
            if cp.site not in registry.sites:
                continue
            if cp.retired:
                self._retire_checkpoint(cp.site, cp.id)
            else:
                self._place_checkpoint(Checkpoint(**_checkpoint_values(cp)), cp.site, cp.route)
        return len(devices) + len(checkpoints)

    # -- devices -----------------------------------------------------------------------------

    def models(self) -> set[str]:
        """Device models with a profile."""
        return set(self.hub.normalizer.profiles)

    def check_device(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Clean fields of a device, or OnboardingError naming every problem."""
        fields, errors = validate.device_fields(raw, self.hub.sites, self.models(),
                                                self.reserved)
        if errors:
            raise OnboardingError(errors)
        return fields

    def add_device(self, raw: dict[str, Any], actor: str, *,
                   replace: bool = False) -> dict[str, Any]:
        """Onboard a device; 409 if the id is registered already (unless ``replace``).

        Returns the device's JSON, with ``mqtt_password`` when the broker made credentials
        (shown this once; the broker keeps only its hash).
        """
        with self._lock:
            fields = self.check_device(raw)
            existing = self.hub.sites.devices.get(fields["id"])
            if existing is not None and not replace:
                raise OnboardingError([f"id: device {fields['id']!r} is registered in "
                                       f"{existing.site.site} already (PATCH it)"], 409)
            return self._store_device(fields, actor)

    def update_device(self, device_id: str, changes: dict[str, Any],
                      actor: str) -> dict[str, Any]:
        """Change fields of a registered device (moving it to another site is allowed)."""
        with self._lock:
            existing = self.hub.sites.devices.get(device_id)
            if existing is None:
                raise OnboardingError([f"no device {device_id!r}"], 404)
            if "id" in changes and changes["id"] != device_id:
                raise OnboardingError(["id: cannot be changed (retire and add instead)"])
            merged = {**_device_json(existing), **changes, "id": device_id}
            fields = self.check_device(merged)
            return self._store_device(fields, actor, credentials=False)

    def _store_device(self, fields: dict[str, Any], actor: str,
                      credentials: bool = True) -> dict[str, Any]:
        password = None
        if self.provisioner is not None and credentials:
            topics = self.topics(fields["id"], fields["model"]) if self.topics else []
            password = self.provisioner.add_device(fields["id"], topics)
        with Session(self.engine) as session, session.begin():
            row = session.get(RegistryDeviceRow, fields["id"])
            if row is None:
                row = RegistryDeviceRow(id=fields["id"])
                session.add(row)
            for name in DEVICE_FIELDS:
                setattr(row, name, fields[name])
            row.retired = False
            row.updated_ns = time.time_ns()
            row.updated_by = actor[:64]
        device = Device(**{k: fields[k] for k in DEVICE_FIELDS if k != "site"})
        self._apply(lambda: self._place(device, fields["site"]))
        result = _device_json(self.hub.sites.devices[device.id])
        if password is not None:
            result["mqtt_password"] = password
        return result

    def retire_device(self, device_id: str, actor: str) -> dict[str, Any]:
        """Retire a device: off the registry, its broker client deleted; 404 if unknown."""
        with self._lock:
            existing = self.hub.sites.devices.get(device_id)
            if existing is None:
                raise OnboardingError([f"no device {device_id!r}"], 404)
            before = _device_json(existing)
            if self.provisioner is not None:
                self.provisioner.remove_device(device_id)
            with Session(self.engine) as session, session.begin():
                row = session.get(RegistryDeviceRow, device_id)
                if row is None:
                    row = RegistryDeviceRow(id=device_id, **{k: before[k] for k in DEVICE_FIELDS
                                                             if k != "id"})
                    session.add(row)
                row.retired = True
                row.updated_ns = time.time_ns()
                row.updated_by = actor[:64]
            self._apply(lambda: self._retire(device_id))
            return {**before, "retired": True}

    def import_devices(self, rows: Iterable[dict[str, Any]], actor: str,
                       may_write: Callable[[str], bool]) -> dict[str, Any]:
        """Add or update every row, or none: all errors are named with their line."""
        checked: list[dict[str, Any]] = []
        errors: list[str] = []
        seen: set[str] = set()
        for line, raw in enumerate(rows, start=2):
            fields, problems = validate.device_fields(raw, self.hub.sites, self.models(),
                                                      self.reserved)
            site = fields.get("site")
            if site is not None and not problems and not may_write(site):
                problems.append(f"site: not yours to change ({site})")
            existing = self.hub.sites.devices.get(fields.get("id") or "")
            if existing is not None and not may_write(existing.site.site):
                problems.append(f"id: {fields['id']} is registered in a site not yours")
            if fields.get("id") in seen:
                problems.append(f"id: {fields['id']} appears twice in the file")
            seen.add(fields.get("id") or "")
            errors += [f"line {line}: {p}" for p in problems]
            checked.append(fields)
        if errors:
            raise OnboardingError(errors)
        if not checked:
            raise OnboardingError(["file: no rows"])
        with self._lock:
            return self._store_many(checked, actor)

    def _store_many(self, checked: list[dict[str, Any]], actor: str) -> dict[str, Any]:
        """Broker credentials for the new ones, one transaction, one registry change."""
        new = [f["id"] for f in checked if f["id"] not in self.hub.sites.devices]
        passwords: dict[str, str] = {}
        if self.provisioner is not None:
            by_id = {f["id"]: f for f in checked}
            for device_id in new:
                topics = self.topics(device_id, by_id[device_id]["model"]) if self.topics else []
                passwords[device_id] = self.provisioner.add_device(device_id, topics)
        now = time.time_ns()
        with Session(self.engine) as session, session.begin():
            for fields in checked:
                row = session.get(RegistryDeviceRow, fields["id"])
                if row is None:
                    row = RegistryDeviceRow(id=fields["id"])
                    session.add(row)
                for name in DEVICE_FIELDS:
                    setattr(row, name, fields[name])
                row.retired = False
                row.updated_ns = now
                row.updated_by = actor[:64]
        pairs = [(Device(**{k: f[k] for k in DEVICE_FIELDS if k != "site"}), f["site"])
                 for f in checked]
        self._apply(lambda: self._place_many(pairs))
        body: dict[str, Any] = {"added": len(new), "updated": len(checked) - len(new)}
        if passwords:
            body["mqtt_passwords"] = passwords
        return body

    # -- checkpoints -------------------------------------------------------------------------

    def add_checkpoint(self, raw: dict[str, Any], actor: str,
                       replace: bool = False) -> dict[str, Any]:
        """Add (or with ``replace`` change) a patrol checkpoint of a site."""
        with self._lock:
            fields, errors = validate.checkpoint_fields(raw, self.hub.sites, ())
            if errors:
                raise OnboardingError(errors)
            site = self.hub.sites.sites[fields["site"]]
            if not replace and any(c.id == fields["id"] for c in site.checkpoints):
                raise OnboardingError([f"id: checkpoint {fields['id']!r} exists in "
                                       f"{site.site} (PATCH it)"], 409)
            with Session(self.engine) as session, session.begin():
                row = session.get(RegistryCheckpointRow, (fields["site"], fields["id"]))
                if row is None:
                    row = RegistryCheckpointRow(site=fields["site"], id=fields["id"])
                    session.add(row)
                for name in CHECKPOINT_FIELDS:
                    setattr(row, name, fields[name])
                row.retired = False
                row.updated_ns = time.time_ns()
                row.updated_by = actor[:64]
            checkpoint = Checkpoint(**{k: fields[k] for k in CHECKPOINT_FIELDS
                                       if k not in ("site", "route")})
            self._apply(lambda: self._place_checkpoint(checkpoint, fields["site"],
                                                       fields["route"]))
            return {**fields}

    def import_checkpoints(self, rows: Iterable[dict[str, Any]], actor: str,
                           may_write: Callable[[str], bool]) -> dict[str, Any]:
        """Add or change every checkpoint row, or none: all errors named with their line."""
        checked: list[dict[str, Any]] = []
        errors: list[str] = []
        seen: set[tuple[str, str]] = set()
        tags: dict[str, int] = {}
        for line, raw in enumerate(rows, start=2):
            fields, problems = validate.checkpoint_fields(raw, self.hub.sites, ())
            site = fields.get("site")
            if site is not None and not problems and not may_write(site):
                problems.append(f"site: not yours to change ({site})")
            key = (site or "", fields.get("id") or "")
            if key in seen:
                problems.append(f"id: {key[1]} appears twice in the file for {key[0]}")
            seen.add(key)
            tag = fields.get("tag_uid")
            if tag and tag in tags:
                problems.append(f"tag_uid: {tag} is on line {tags[tag]} too")
            if tag:
                tags[tag] = line
            errors += [f"line {line}: {p}" for p in problems]
            checked.append(fields)
        if errors:
            raise OnboardingError(errors)
        if not checked:
            raise OnboardingError(["file: no rows"])
        added = 0
        for fields in checked:
            site = self.hub.sites.sites[fields["site"]]
            added += not any(c.id == fields["id"] for c in site.checkpoints)
            self.add_checkpoint(fields, actor, replace=True)
        return {"added": added, "updated": len(checked) - added}

    def find_checkpoint(self, checkpoint_id: str) -> tuple[str, Checkpoint] | None:
        """The (site, checkpoint) of an id (ids are unique per site; the first site wins)."""
        for site in self.hub.sites.sites.values():
            for cp in site.checkpoints:
                if cp.id == checkpoint_id:
                    return site.site, cp
        return None

    def retire_checkpoint(self, site_id: str, checkpoint_id: str, actor: str) -> dict[str, Any]:
        """Retire a checkpoint; 422 when it is the last of a route."""
        with self._lock:
            for route in self.hub.sites.routes_for_checkpoint(site_id, checkpoint_id):
                if route.checkpoints == [checkpoint_id]:
                    raise OnboardingError([f"route {route.id} has no other checkpoint: add "
                                           "one before retiring this"])
            found = next((c for c in self.hub.sites.sites[site_id].checkpoints
                          if c.id == checkpoint_id), None)
            if found is None:
                raise OnboardingError([f"no checkpoint {checkpoint_id!r}"], 404)
            with Session(self.engine) as session, session.begin():
                row = session.get(RegistryCheckpointRow, (site_id, checkpoint_id))
                if row is None:
                    row = RegistryCheckpointRow(site=site_id, id=checkpoint_id,
                                                tag_uid=found.tag_uid, name=found.name)
                    session.add(row)
                row.retired = True
                row.updated_ns = time.time_ns()
                row.updated_by = actor[:64]
            self._apply(lambda: self._retire_checkpoint(site_id, checkpoint_id))
            return {"id": checkpoint_id, "site": site_id, "retired": True}

    # -- applying on the pipeline thread -----------------------------------------------------

    def _apply(self, change: Callable[[], None]) -> None:
        if not self.hub.pipeline.running:
            change()
            return
        item = _Change(change)
        self._changes.put(item)
        if not item.done.wait(APPLY_TIMEOUT_S):
            raise OnboardingError([f"the pipeline did not apply the change within "
                                   f"{APPLY_TIMEOUT_S:g} s (it is stored; it applies at the "
                                   "next tick or restart)"], 503)
        if item.error is not None:
            raise item.error

    def _on_tick(self, _now: int) -> None:
        while True:
            try:
                item = self._changes.get_nowait()
            except queue.Empty:
                return
            try:
                item.apply()
            except BaseException as exc:  # handed back to the API thread
                item.error = exc
            finally:
                item.done.set()

    def _place(self, device: Device, site_id: str) -> None:
        placed = self.hub.sites.place(device, site_id)
        state = self.hub.states.get(placed.id)
        if state is not None:
            state.site = site_id
        self.hub.rules.forget(placed.id)  # recompiled for its site at its next reading

    def _place_many(self, pairs: list[tuple[Device, str]]) -> None:
        for placed in self.hub.sites.place_many(pairs):
            state = self.hub.states.get(placed.id)
            if state is not None:
                state.site = placed.site.site
            self.hub.rules.forget(placed.id)

    def _retire(self, device_id: str) -> None:
        self.hub.sites.retire(device_id)
        state = self.hub.states.get(device_id)
        if state is not None:
            state.site = UNASSIGNED_SITE
        self.hub.rules.forget(device_id)

    def _place_checkpoint(self, checkpoint: Checkpoint, site_id: str, route: str | None) -> None:
        self.hub.sites.place_checkpoint(checkpoint, site_id, route)
        self.hub.patrol.tracker.checkpoint_changed(site_id, checkpoint.id, checkpoint)

    def _retire_checkpoint(self, site_id: str, checkpoint_id: str) -> None:
        self.hub.sites.retire_checkpoint(site_id, checkpoint_id)
        self.hub.patrol.tracker.checkpoint_changed(site_id, checkpoint_id, None)


def _device_values(row: RegistryDeviceRow) -> dict[str, Any]:
    return {k: getattr(row, k) for k in DEVICE_FIELDS if k != "site"}


def _checkpoint_values(row: RegistryCheckpointRow) -> dict[str, Any]:
    return {k: getattr(row, k) for k in CHECKPOINT_FIELDS if k not in ("site", "route")}
