"""Build the hub's Onboarding: reserved broker user names, topics per device, the broker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.intake.common import parse_mqtt_url
from hub.onboarding.service import Onboarding, Provisioner

if TYPE_CHECKING:
    from hub.runtime import Hub

RESERVED = ("hub", "hub-sim", "admin")  # the shipped broker set-up's own users


def make_onboarding(hub: Hub) -> Onboarding:
    """The hub's Onboarding (with per-device broker credentials when an admin URL is set)."""
    from hub.intake.broker_acl import device_topics

    settings = hub.settings
    reserved = set(RESERVED)
    for urls in (settings.mqtt_url, settings.broker_admin_url):
        for url in urls.split(",") if urls else ():
            user = parse_mqtt_url(url.strip()).username if url.strip() else None
            if user:
                reserved.add(user)
    reserved.add(settings.mqtt_client_id)
    provisioner: Provisioner | None = None
    if settings.broker_admin_url:
        from hub.intake.dynsec import Dynsec

        provisioner = Dynsec(settings.broker_admin_url,
                             ca_file=str(settings.mqtt_ca_file) if settings.mqtt_ca_file
                             else None)
    profiles = hub.normalizer.profiles

    def topics(device_id: str, model: str) -> list[str]:
        return device_topics(profiles[model], device_id)

    return Onboarding(hub, hub.engine, reserved, provisioner, topics)
