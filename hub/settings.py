"""Settings from HUB_* environment variables and matching CLI flags."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# Settings that hold a secret: given as a CLI flag they show in ``ps`` (the CLI warns).
SECRET: dict[str, Any] = {"secret": True}
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:]*:[^/@]+@", re.IGNORECASE)


class Settings(BaseSettings):
    """Every setting of the hub; environment prefix ``HUB_``."""

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_client_id: str = "safety-hub"
    mqtt_protocol: Literal["auto", "5", "3.1.1"] = Field(
        default="auto", description="MQTT version; auto tries 5 and falls back to 3.1.1"
    )
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_intake: Literal["process", "thread"] = Field(
        default="process",
        description="paho in a child process (default: own CPU, own GIL) or in a thread",
    )
    mqtt_client: Literal["lean", "paho"] = Field(
        default="lean",
        description="MQTT client of the intake process: lean (chunked reads, batched acks) or "
        "paho (thread intake always uses paho)",
    )
    mqtt_shared_group: str | None = Field(
        default=None, description="MQTT 5 shared-subscription group for scale-out"
    )
    cluster_url: str | None = Field(
        default=None,
        description="comma-separated nats:// (or tls://) URLs: cluster mode, intake from JetStream",
    )
    cluster_partitions: int = Field(
        default=16, ge=1, le=1024, description="device partitions of the cluster's stream"
    )
    cluster_view_s: float = Field(
        default=0.5, gt=0, le=60,
        description="a cluster hub sends its devices' changes to the other hubs this often",
    )
    cluster_strays: bool = Field(
        default=True,
        description="cluster mode: catch QoS 0 publishes of QoS 1 topics and store them "
        "(every QoS 1 message then also crosses one hub's catcher process)",
    )
    node_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="this hub's id in the cluster (unique; default: host name)",
    )
    clock: Literal["wall", "device"] = Field(
        default="wall",
        description="timers follow the wall clock, or the newest device time (demos, replays)",
    )
    influx_url: str | None = None
    influx_db: str = "hub"
    influx_username: str | None = None
    influx_password: str | None = Field(default=None, json_schema_extra=SECRET)
    influx_token: str | None = Field(default=None, json_schema_extra=SECRET)
    database_url: str | None = Field(
        default=None, description="state store (SQLAlchemy URL); default SQLite in data_dir"
    )
    data_dir: Path = Path("./data")
    profiles_dir: Path = PACKAGE_ROOT / "device_profiles"
    sites_dir: Path = PACKAGE_ROOT / "sites"
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_tokens: str = Field(
        default="", json_schema_extra=SECRET,
        description="name:role:token[:site1|site2],... bearer tokens for machines")
    api_docs: Literal["open", "token", "off"] = Field(
        default="open", description="/docs and /openapi.json: open, need a viewer, or off")
    session_ttl_s: float = Field(
        default=12 * 3600, gt=0, description="console sign-in session lifetime, seconds")
    login_max_failures: int = Field(
        default=5, ge=1, description="failed sign-ins for one name before it is locked")
    broker_admin_url: str | None = Field(
        default=None,
        description="mqtt://admin:pw@host:port of Mosquitto's dynamic-security admin: "
                    "onboarding then creates each device's broker client and role")
    login_lockout_s: float = Field(
        default=300, gt=0, description="how long a name stays locked after too many failures")
    batch_size: int = 5000
    batch_interval_s: float = 0.2
    spool_max_bytes: int = 2 * 1024**3
    max_payload_bytes: int = Field(
        default=256 * 1024, gt=0,
        description="larger payloads are refused (too_large); deploy/mosquitto sets the same",
    )
    max_unregistered_devices: int = Field(
        default=10_000, ge=0,
        description="unregistered devices tracked at most; messages of more are refused",
    )
    kpi_max_days: int = Field(default=400, ge=1, description="longest /api/kpi date range")
    events_max_streams: int = Field(
        default=200, ge=1, description="live event streams (/api/events) open at once, in all"
    )
    events_max_per_caller: int = Field(
        default=8, ge=1, description="live event streams one caller may have open at once"
    )
    events_device_every_s: float = Field(
        default=5.0, ge=0, description="a stream sends device changes at most this often"
    )
    webhook_urls: str = Field(default="", description="comma list of alarm webhook URLs")
    webhook_secret: str = Field(default="", description="HMAC-SHA256 key of webhook bodies",
                                json_schema_extra=SECRET)
    webhook_queue_size: int = Field(default=1000, ge=1, description="per URL; drops oldest")
    webhook_max_attempts: int = Field(default=6, ge=1)
    notify_file: Path | None = Field(
        default=None,
        description="notifications: channels, people, rosters, policies (docs/notifications.md)",
    )
    notify_poll_s: float = Field(
        default=0.25, gt=0, le=10, description="how often the outbox is checked for due steps"
    )
    rules_dir: Path = PACKAGE_ROOT / "device_profiles" / "rules"
    state_save_s: float = Field(
        default=10.0, gt=0, description="device-state (latest values) save period, seconds"
    )
    gc_freeze_s: float = Field(
        default=10.0, ge=0,
        description="freeze long-lived objects this often so full GCs stay short (0: off)",
    )
    rule_state_save_s: float = Field(default=10.0, gt=0, description="rule-state save period")
    grafana_url: str | None = Field(default=None, description="Grafana base URL (grafana push)")
    grafana_token: str | None = Field(default=None, description="Grafana service-account token",
                                      json_schema_extra=SECRET)
    grafana_influx_url: str | None = Field(
        default=None, description="InfluxDB URL as Grafana reaches it (default influx_url)"
    )
    console_url: str | None = Field(
        default=None,
        description="duty console base URL: Grafana's alarm links, the link in notifications",
    )
    patrol_clock: Literal["wall", "device"] = Field(
        default="wall",
        description="patrol round clock: wall, or device (newest device time; replays, demo)",
    )
    evidence_max_bytes: int = Field(
        default=10 * 1024**2, gt=0, description="largest hazard evidence upload (413 beyond)"
    )

    def resolved_node_id(self) -> str:
        """This hub's cluster id: HUB_NODE_ID, else the host name."""
        if self.node_id:
            return self.node_id
        import socket

        return socket.gethostname()

    def resolved_database_url(self) -> str:
        """Return the state-store URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hub.sqlite').resolve()}"


def holds_secret(name: str, value: object) -> bool:
    """True for a secret setting, or a URL setting whose value carries a password."""
    field = Settings.model_fields.get(name)
    extra = field.json_schema_extra if field is not None else None
    if isinstance(extra, dict) and extra.get("secret"):
        return bool(value)
    return name.endswith("_url") and isinstance(value, str) and bool(_URL_PASSWORD.match(value))
