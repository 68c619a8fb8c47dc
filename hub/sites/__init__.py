"""Site knowledge as data: the schema of site files, their loader and the registry.

``schema`` (what a site file holds), ``records`` (the slotted read-only records the registry
keeps, one per device), ``loader`` (the YAML reader) and ``registry`` (lookups by device id,
tag UID and checkpoint).
"""

from hub.sites.loader import load_site_file, load_sites
from hub.sites.registry import SiteRegistry
from hub.sites.schema import (
    UNASSIGNED_SITE,
    UNKNOWN_CHECKPOINT,
    Checkpoint,
    Community,
    Device,
    Inspector,
    PatrolRoute,
    Site,
)

__all__ = [
    "UNASSIGNED_SITE",
    "UNKNOWN_CHECKPOINT",
    "Checkpoint",
    "Community",
    "Device",
    "Inspector",
    "PatrolRoute",
    "Site",
    "SiteRegistry",
    "load_site_file",
    "load_sites",
]
