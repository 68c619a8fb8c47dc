"""What a message's values may depend on besides the payload."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.sites import SiteRegistry

# A device's base tags, sorted by key: (community?, device_id, model, site)
BaseTags = tuple[tuple[str, str], ...]


class MessageContext:
    """What a message's values may depend on besides the payload."""

    __slots__ = ("device_id", "device_time_ns", "received_ns", "site", "sites")

    def __init__(
        self,
        device_id: str,
        site: str,
        sites: SiteRegistry,
        received_ns: int,
        device_time_ns: int | None,
    ) -> None:
        self.device_id = device_id
        self.site = site
        self.sites = sites
        self.received_ns = received_ns
        self.device_time_ns = device_time_ns
