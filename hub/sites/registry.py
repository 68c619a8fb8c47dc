"""The site registry: every site loaded, and the lookups the pipeline needs."""

from __future__ import annotations

from collections.abc import Iterable

from hub.sites.schema import Checkpoint, Device, PatrolRoute, Site


class SiteRegistry:
    """All sites loaded, with the lookups the pipeline needs."""

    def __init__(self, sites: Iterable[Site]) -> None:
        self.sites: dict[str, Site] = {}
        self.devices: dict[str, Device] = {}  # each knows its site: ``Device.site``
        self.tags: dict[str, tuple[Site, Checkpoint]] = {}
        self.checkpoint_routes: dict[tuple[str, str], list[PatrolRoute]] = {}
        for site in sites:
            if site.site in self.sites:
                raise ValueError(f"site {site.site!r} is defined twice")
            self.sites[site.site] = site
            for device in site.devices:
                if device.id in self.devices:
                    raise ValueError(f"device {device.id!r} is in two sites")
                self.devices[device.id] = _placed(device, site)
            for checkpoint in site.checkpoints:
                self.tags[checkpoint.tag_uid.upper()] = (site, checkpoint)
            for route in site.routes:
                for cp in route.checkpoints:
                    self.checkpoint_routes.setdefault((site.site, cp), []).append(route)

    def device(self, device_id: str) -> tuple[Site, Device] | None:
        """Return the site and registry entry of a device, or None when unregistered."""
        device = self.devices.get(device_id)
        return None if device is None else (device.site, device)

    def checkpoint_for_tag(self, tag_uid: str) -> tuple[Site, Checkpoint] | None:
        """Return the checkpoint an NFC tag is fixed at, or None for an unknown tag."""
        return self.tags.get(tag_uid.upper())

    def routes_for_checkpoint(self, site: str, checkpoint_id: str) -> list[PatrolRoute]:
        """Return the routes that include a checkpoint."""
        return self.checkpoint_routes.get((site, checkpoint_id), [])

    # -- live changes (hub.onboarding calls these on the pipeline thread, or before start) --

    def place(self, device: Device, site_id: str) -> Device:
        """Register ``device`` in ``site_id`` (replacing an entry of the same id anywhere)."""
        site = self.sites[site_id]
        self.retire(device.id)
        placed = _placed(device, site)
        site.devices.append(placed)
        self.devices[placed.id] = placed
        return placed

    def place_many(self, devices: list[tuple[Device, str]]) -> list[Device]:
        """Register many (device, site id) pairs at once: one pass per site they replace in
        (a CSV of 10,000 rows into a site of 100,000 devices stays one pass, not 10,000)."""
        ids = {device.id for device, _site in devices}
        replaced = [self.devices[i] for i in ids if i in self.devices]
        for site in {id(d.site): d.site for d in replaced}.values():
            site.devices[:] = [d for d in site.devices if d.id not in ids]
        for device in replaced:
            del self.devices[device.id]
        placed = []
        for device, site_id in devices:
            site = self.sites[site_id]
            entry = _placed(device, site)
            site.devices.append(entry)
            self.devices[entry.id] = entry
            placed.append(entry)
        return placed

    def retire(self, device_id: str) -> Device | None:
        """Remove a device from the registry; return what it was (None if unregistered)."""
        device = self.devices.pop(device_id, None)
        if device is not None:
            devices = device.site.devices
            devices[:] = [d for d in devices if d.id != device_id]
        return device

    def place_checkpoint(self, checkpoint: Checkpoint, site_id: str,
                         route_id: str | None = None) -> None:
        """Register a checkpoint, or replace the one of the same id (keeping its routes); add
        it to ``route_id`` if given."""
        site = self.sites[site_id]
        old = next((c for c in site.checkpoints if c.id == checkpoint.id), None)
        if old is not None:
            self.tags.pop(old.tag_uid.upper(), None)
            site.checkpoints[:] = [checkpoint if c.id == checkpoint.id else c
                                   for c in site.checkpoints]
        else:
            site.checkpoints.append(checkpoint)
        self.tags[checkpoint.tag_uid.upper()] = (site, checkpoint)
        for route in site.routes:
            if route.id == route_id and checkpoint.id not in route.checkpoints:
                route.checkpoints.append(checkpoint.id)
            on_route = self.checkpoint_routes.setdefault((site_id, checkpoint.id), [])
            if checkpoint.id in route.checkpoints and route not in on_route:
                on_route.append(route)
        if not self.checkpoint_routes.get((site_id, checkpoint.id)):
            self.checkpoint_routes.pop((site_id, checkpoint.id), None)

    def retire_checkpoint(self, site_id: str, checkpoint_id: str) -> Checkpoint | None:
        """Remove a checkpoint from its site, its tag and its routes; return it or None."""
        site = self.sites[site_id]
        found = next((c for c in site.checkpoints if c.id == checkpoint_id), None)
        if found is None:
            return None
        site.checkpoints[:] = [c for c in site.checkpoints if c.id != checkpoint_id]
        self.tags.pop(found.tag_uid.upper(), None)
        for route in self.checkpoint_routes.pop((site_id, checkpoint_id), []):
            if len(route.checkpoints) > 1:  # a route keeps at least one checkpoint
                route.checkpoints[:] = [c for c in route.checkpoints if c != checkpoint_id]
        return found


def _placed(device: Device, site: Site) -> Device:
    """``device`` registered in ``site``: itself, or a copy if it is already in another site."""
    placed = getattr(device, "site", None)
    if placed is site:
        return device
    if placed is not None:  # one record in two sites' models (built in code, not from files)
        device = Device._from_fields(device)
    object.__setattr__(device, "site", site)
    return device

