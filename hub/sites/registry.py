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


def _placed(device: Device, site: Site) -> Device:
    """``device`` registered in ``site``: itself, or a copy if it is already in another site."""
    placed = getattr(device, "site", None)
    if placed is site:
        return device
    if placed is not None:  # one record in two sites' models (built in code, not from files)
        device = Device._from_fields(device)
    object.__setattr__(device, "site", site)
    return device

