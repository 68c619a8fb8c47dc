"""Mosquitto's dynamic-security plugin, driven over MQTT (``$CONTROL/dynamic-security/v1``).

Onboarding a device creates its broker client (user name = device id, client id bound to the
same name, a random password shown once) and its role (publish only its own topics, exactly as
``hub mosquitto-acl`` writes them); retiring deletes both, and the broker disconnects the
device at once. Each call opens a short connection as the plugin's admin user
(``HUB_BROKER_ADMIN_URL``), sends one batch of commands and waits for the answer.
"""

from __future__ import annotations

import secrets
import ssl
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hub.intake.common import parse_mqtt_url
from hub.onboarding.service import BrokerRefused

CONTROL = "$CONTROL/dynamic-security/v1"
RESPONSE = CONTROL + "/response"
TIMEOUT_S = 10.0
DEVICE_ROLE_PREFIX = "device-"
SITE_READER_PREFIX = "alarms-"
BATCH = 200  # devices per control message (each ~300 bytes of commands)


class DynsecError(BrokerRefused):
    """The broker refused a command, or did not answer."""


def device_role(device_id: str) -> str:
    """The role name of a device's own topics."""
    return DEVICE_ROLE_PREFIX + device_id


def publish_acls(topics: Sequence[str]) -> list[dict[str, Any]]:
    """ACLs that let a client publish exactly ``topics`` (nothing else, no subscribe)."""
    return [{"acltype": "publishClientSend", "topic": t, "allow": True, "priority": 0}
            for t in topics]


def read_acls(pattern: str) -> list[dict[str, Any]]:
    """ACLs that let a client subscribe to and receive ``pattern``."""
    return [{"acltype": "subscribePattern", "topic": pattern, "allow": True, "priority": 0},
            {"acltype": "publishClientReceive", "topic": pattern, "allow": True, "priority": 0}]


class Dynsec:
    """A client of the dynamic-security plugin's control topic."""

    def __init__(self, url: str, *, ca_file: str | None = None,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.url = parse_mqtt_url(url)
        if not self.url.username:
            raise ValueError("HUB_BROKER_ADMIN_URL needs the plugin admin's user and password")
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    def run(self, commands: list[dict[str, Any]],
            ignore: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Send commands in one message; return the responses, raise DynsecError on an error.

        ``ignore`` lists error texts that are fine (e.g. "Client not found" when deleting).
        """
        with self._lock:
            responses = self._exchange(commands)
        failed = [r for r in responses if r.get("error") and r["error"] not in ignore]
        if failed:
            raise DynsecError("; ".join(f"{r.get('command')}: {r['error']}" for r in failed))
        return responses

    def _exchange(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id=f"{self.url.username}-{uuid.uuid4().hex[:8]}",
                             protocol=paho.MQTTv5)
        client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            client.tls_set(ca_certs=self.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        subscribed = threading.Event()
        answered = threading.Event()
        connected: list[Any] = []
        answer: list[dict[str, Any]] = []

        def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            connected.append(rc)
            if not rc.is_failure:
                c.subscribe(RESPONSE, qos=1)
            else:
                subscribed.set()

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            try:
                answer.extend(orjson.loads(message.payload).get("responses", []))
            except (orjson.JSONDecodeError, AttributeError):
                answer.append({"command": "?", "error": "unreadable response"})
            answered.set()

        client.on_connect = on_connect
        client.on_subscribe = lambda *_a: subscribed.set()
        client.on_message = on_message
        try:
            client.connect(self.url.host, self.url.port, keepalive=30)
        except OSError as exc:
            raise DynsecError(f"cannot reach the broker at {self.url.host}:{self.url.port}: "
                              f"{exc}") from None
        client.loop_start()
        try:
            if not subscribed.wait(self.timeout_s):
                raise DynsecError("the broker did not answer the admin's connection")
            if connected and connected[0].is_failure:
                raise DynsecError(f"the broker refused the admin user: {connected[0]}")
            client.publish(CONTROL, orjson.dumps({"commands": commands}), qos=1)
            if not answered.wait(self.timeout_s):
                raise DynsecError(f"no answer on {RESPONSE} within {self.timeout_s:g} s "
                                  "(is the dynamic-security plugin loaded?)")
            return answer
        finally:
            client.disconnect()
            client.loop_stop()

    # -- what the hub needs --------------------------------------------------------------------

    def add_device(self, device_id: str, topics: list[str]) -> str:
        """Create (or re-create) a device's client and role; return its new password."""
        return self.add_devices([(device_id, topics)])[device_id]

    def add_devices(self, devices: Sequence[tuple[str, list[str]]]) -> dict[str, str]:
        """Create (or re-create) many devices' clients and roles, a batch of commands per
        message (two messages per ``BATCH`` devices); return their new passwords."""
        passwords: dict[str, str] = {}
        for start in range(0, len(devices), BATCH):
            chunk = devices[start:start + BATCH]
            removals: list[dict[str, Any]] = []
            creations: list[dict[str, Any]] = []
            for device_id, topics in chunk:
                password = passwords[device_id] = secrets.token_urlsafe(18)
                role = device_role(device_id)
                removals += [{"command": "deleteClient", "username": device_id},
                             {"command": "deleteRole", "rolename": role}]
                creations += [
                    {"command": "createRole", "rolename": role, "acls": publish_acls(topics),
                     "textname": f"topics of {device_id}"},
                    {"command": "createClient", "username": device_id, "password": password,
                     "clientid": device_id, "roles": [{"rolename": role, "priority": 0}],
                     "textname": "field device"}]
            self.run(removals, ignore=("Client not found", "Role not found"))
            self.run(creations)
        return passwords

    def remove_device(self, device_id: str) -> None:
        """Delete a device's client (the broker disconnects it) and role."""
        self.run([{"command": "deleteClient", "username": device_id},
                  {"command": "deleteRole", "rolename": device_role(device_id)}],
                 ignore=("Client not found", "Role not found"))

    def ensure_role(self, role: str, acls: list[dict[str, Any]]) -> None:
        """Create a role with exactly these ACLs (replacing an existing one's ACLs)."""
        self.run([{"command": "createRole", "rolename": role}], ignore=("Role already exists",))
        current = self.run([{"command": "getRole", "rolename": role}])[0]
        changes = [{"command": "removeRoleACL", "rolename": role, "acltype": acl["acltype"],
                    "topic": acl["topic"]}
                   for acl in (current.get("data", {}).get("role", {}).get("acls") or [])]
        changes += [{"command": "addRoleACL", "rolename": role, **acl} for acl in acls]
        if changes:
            self.run(changes)

    def ensure_client(self, username: str, password: str, clientid: str | None,
                      roles: Sequence[str]) -> None:
        """Create or update a client with this password, bound client id and roles."""
        fields: dict[str, Any] = {"username": username, "password": password,
                                  "roles": [{"rolename": r, "priority": 0} for r in roles]}
        if clientid:
            fields["clientid"] = clientid
        created = self.run([{"command": "createClient", **fields}],
                           ignore=("Client already exists",))
        if created and created[0].get("error") == "Client already exists":
            self.run([{"command": "modifyClient", **fields}])


HUB_ROLE = "hub"


def hub_acls() -> list[dict[str, Any]]:
    """The hub reads every topic and writes under ``hub/#``."""
    return [*read_acls("#"),
            {"acltype": "publishClientSend", "topic": "hub/#", "allow": True, "priority": 0}]


def site_reader_role(site: str) -> str:
    """The role that may read one township's alarms, ``hub/alarms/{site}/#``."""
    return SITE_READER_PREFIX + site


SIMULATOR_ROLE = "simulator"


def setup(dynsec: Dynsec, hub_user: str, hub_password: str, hub_client_id: str,
          sites: Sequence[str], devices: Sequence[tuple[str, list[str]]] = (),
          simulator: tuple[str, str, list[str]] | None = None) -> dict[str, str]:
    """Create the hub's role and client (client id bound), a reader role per site and, for
    ``devices`` (id, topics), clients and roles; return the devices' new passwords.

    ``simulator`` (user, password, topic patterns) is a staging broker's ``hub-sim`` user: it
    may publish every device topic, so never give one to a broker real devices use.
    """
    dynsec.ensure_role(HUB_ROLE, hub_acls())
    dynsec.ensure_client(hub_user, hub_password, hub_client_id, [HUB_ROLE])
    for site in sites:
        dynsec.ensure_role(site_reader_role(site), read_acls(f"hub/alarms/{site}/#"))
    if simulator is not None:
        user, password, patterns = simulator
        dynsec.ensure_role(SIMULATOR_ROLE, publish_acls(patterns))
        dynsec.ensure_client(user, password, None, [SIMULATOR_ROLE])
    return dynsec.add_devices(devices)
