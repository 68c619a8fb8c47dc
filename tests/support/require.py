"""Real services are required: a missing binary skips a test, or fails it under CI."""

from __future__ import annotations

import os

import pytest

from tests.support.services import which

DEBIAN_PACKAGES = {"mosquitto": "mosquitto", "influxd": "influxdb",
                   "mosquitto_passwd": "mosquitto", "/usr/sbin/nats-server": "nats-server",
                   "/usr/lib/postgresql/15/bin/postgres": "postgresql-15",
                   "pdftoppm": "poppler-utils"}


def services_required() -> bool:
    """True when a missing service must fail the test instead of skipping it."""
    return os.environ.get("HUB_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes"}


def require_binary(binary: str) -> str:
    """Return the path of ``binary``; skip the test if missing (fail under CI)."""
    path = which(binary)
    if path:
        return path
    package = DEBIAN_PACKAGES.get(binary, binary)
    if services_required():
        pytest.fail(
            f"real service required: {binary} not found ("
            f"apt-get install {package})",
            pytrace=False,
        )
    pytest.skip(f"{binary} not installed (apt-get install {package}); HUB_REQUIRE_SERVICES=1 fails")
