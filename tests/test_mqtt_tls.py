"""mqtts:// against a real Mosquitto TLS listener that requires client certificates."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.golden_cases import XS
from tests.support.hubproc import HubProcess
from tests.support.require import require_binary
from tests.support.services import MosquittoServer, port_open

GOLDEN_SITES = Path(__file__).parent / "golden" / "_sites"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    require_binary("openssl")
    d = tmp_path / "pki"
    d.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            cwd=d,
        )
    return d


class TlsMosquitto(MosquittoServer):
    """The real Mosquitto with only a TLS listener that requires a client certificate."""

    def __init__(self, workdir: Path, pki: Path) -> None:
        self.pki = pki
        super().__init__(workdir)

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    def _write_config(self) -> None:
        super()._write_config()
        lines = self.config_path.read_text().splitlines()
        lines += [
            f"cafile {self.pki / 'ca.crt'}",
            f"certfile {self.pki / 'server.crt'}",
            f"keyfile {self.pki / 'server.key'}",
            "require_certificate true",
            "tls_version tlsv1.2",
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def _ready(self) -> bool:
        return port_open(self.host, self.port)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Any:
    require_binary("mosquitto")
    server = TlsMosquitto(tmp_path / "mosquitto", pki)
    server.start()
    yield server
    server.stop()


def _publish_tls(broker: TlsMosquitto, pki: Path, topic: str, payload: bytes) -> None:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"dev-{uuid.uuid4().hex[:6]}",
        protocol=paho.MQTTv5,
    )
    client.tls_set(
        ca_certs=str(pki / "ca.crt"),
        certfile=str(pki / "client.crt"),
        keyfile=str(pki / "client.key"),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_hub_ingests_over_mqtts_with_client_certificate(
    tmp_path: Path, tls_broker: TlsMosquitto, pki: Path
) -> None:
    hub = HubProcess(
        tmp_path,
        mqtt_url=tls_broker.url,
        mqtt_ca_file=pki / "ca.crt",
        mqtt_cert_file=pki / "client.crt",
        mqtt_key_file=pki / "client.key",
        sites_dir=GOLDEN_SITES,
    )
    hub.start()
    try:
        assert hub.health()["broker"]["url"].startswith("mqtts://")
        _publish_tls(
            tls_broker,
            pki,
            "roadsafety/flashlight/GY-FL-0001/telemetry",
            json.dumps({**XS, "tilt_deg": 3.5}).encode(),
        )
        deadline = time.monotonic() + 10
        device: dict[str, Any] = {}
        while time.monotonic() < deadline:
            device = hub.get("/api/devices/GY-FL-0001")
            if device.get("values", {}).get("tilt_deg") == 3.5:
                break
            time.sleep(0.2)
        assert device["values"]["tilt_deg"] == 3.5
    finally:
        hub.stop()


def test_hub_without_client_certificate_is_refused_and_says_so(
    tmp_path: Path, tls_broker: TlsMosquitto, pki: Path
) -> None:
    hub = HubProcess(
        tmp_path, mqtt_url=tls_broker.url, mqtt_ca_file=pki / "ca.crt", sites_dir=GOLDEN_SITES
    )
    hub.start(wait_connected=False)
    try:
        # wait on state: the hub has tried and been refused (it says why in last_error)
        deadline = time.monotonic() + 30
        health = hub.health()
        while not health["broker"]["last_error"] and time.monotonic() < deadline:
            time.sleep(0.2)
            health = hub.health()
        assert health["status"] == "degraded" and health["broker"]["connected"] is False
    finally:
        hub.stop()
