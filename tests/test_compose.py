"""docker-compose.yml, Dockerfile and deploy/ checked without a Docker engine.

``docker compose config`` (or a Compose v2 ``docker-compose``) validates the file when the
plugin is installed; a schema check of our own always runs: services, images, restart
policies, health checks, every bind-mounted file present, no secret committed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
REQUIRED = {
    "INFLUX_ADMIN_PASSWORD": "an-admin-password",
    "INFLUX_ADMIN_TOKEN": "an-operator-token",
    "HUB_MQTT_PASSWORD": "mqtt-password",
    "MQTT_ADMIN_PASSWORD": "mqtt-admin-password",
    "HUB_API_TOKENS": "api-token",
    "POSTGRES_PASSWORD": "pg-password",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
}
# created by the operator on the host (documented), never committed
HOST_FILES = {"./deploy/mosquitto/passwd"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _compose_command() -> list[str] | None:
    """``docker compose`` if the plugin works, else a Compose v2 ``docker-compose``."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if not shutil.which(command[0]):
            continue
        try:
            out = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and re.search(r"v?2\.\d+", out.stdout):
            return command
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 here; the schema checks below still run")
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    ok = subprocess.run(
        [*command, "-f", str(COMPOSE), "--profile", "sim", "config", "-q"],
        env={**env, **REQUIRED},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "set " in missing.stderr


def test_services_images_restart_and_health() -> None:
    services = _compose()["services"]
    assert set(services) == {"mosquitto", "influxdb", "postgres", "hub", "grafana", "hub-sim"}
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["influxdb"]["image"].startswith("influxdb:2")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    assert services["hub"]["build"] == "."
    for name, service in services.items():
        if name != "hub-sim":
            assert service.get("restart") == "unless-stopped" or "<<" in service, name
            assert "profiles" not in service, name
    assert services["hub-sim"]["profiles"] == ["sim"]
    assert services["hub-sim"]["command"][:2] == ["hub-sim", "run"]
    for name in ("influxdb", "postgres"):
        assert services[name]["healthcheck"]["test"], name
    depends = services["hub"]["depends_on"]
    assert depends["influxdb"]["condition"] == "service_healthy"


def test_anchors_give_every_long_running_service_a_restart_policy() -> None:
    # yaml.safe_load resolves the merge key, so this reads what compose sees
    services = _compose()["services"]
    for name in ("mosquitto", "influxdb", "postgres", "hub", "grafana"):
        assert services[name]["restart"] == "unless-stopped", name


def test_every_bind_mount_exists_and_named_volumes_are_declared() -> None:
    data = _compose()
    declared = set(data["volumes"])
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                if source in HOST_FILES:
                    ignored = (ROOT / "deploy/mosquitto/.gitignore").read_text().split()
                    assert Path(source).name in ignored, source
                    continue
                assert (ROOT / source).exists(), f"{name}: {source} missing"
            else:
                assert source in declared, f"{name}: volume {source} not declared"


def test_no_secret_is_committed() -> None:
    text = COMPOSE.read_text()
    for variable in REQUIRED:
        assert f"${{{variable}:?" in text, f"{variable} must be required, not defaulted"
    for name, service in _compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert str(value).startswith("${"), f"{name}.{key} holds a literal"
        for word in service.get("command", []) if isinstance(service.get("command"), list) else []:
            assert "://" not in word or "${" in word or "@" not in word, word


def test_influxdb_init_maps_the_bucket_for_the_v1_api() -> None:
    influx = _compose()["services"]["influxdb"]
    assert "./deploy/influxdb/init:/docker-entrypoint-initdb.d:ro" in influx["volumes"]
    script = (ROOT / "deploy/influxdb/init/10-hub-dbrp.sh").read_text()
    assert "influx v1 dbrp create" in script and "--rp autogen" in script
    assert os.access(ROOT / "deploy/influxdb/init/10-hub-dbrp.sh", os.X_OK)
    assert (
        subprocess.run(["bash", "-n", str(ROOT / "deploy/influxdb/init/10-hub-dbrp.sh")]).returncode
        == 0
    )


def test_grafana_gets_the_provisioning_and_dashboards() -> None:
    grafana = _compose()["services"]["grafana"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    provider = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/safety-hub.yaml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in grafana["volumes"]
    env = grafana["environment"]
    assert {"HUB_INFLUX_URL", "HUB_INFLUX_DB", "HUB_INFLUX_TOKEN"} <= set(env)


def test_mosquitto_config_uses_the_mounted_files() -> None:
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    assert "plugin /usr/lib/mosquitto_dynamic_security.so" in conf
    assert "plugin_opt_config_file /mosquitto/data/dynamic-security.json" in conf
    assert "include_dir /mosquitto/config/conf.d" in conf
    static = (ROOT / "deploy/mosquitto/mosquitto-static.conf").read_text()
    assert "password_file /mosquitto/config/passwd" in static
    assert "acl_file /mosquitto/config/acl" in static
    assert "\nuse_username_as_clientid true\n" in static
    tls = (ROOT / "deploy/mosquitto/tls.conf.example").read_text()
    assert "listener 8883" in tls and "certfile /mosquitto/certs/server.crt" in tls


def test_dockerfile_is_slim_uv_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "uv sync --frozen --no-dev" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in {"root", "0"}
    assert re.search(r"HEALTHCHECK .*\n?.*?/api/health", text)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for source in re.findall(r"^COPY (?!--)(.+) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), item
            assert item not in ignored, item
