"""Real Mosquitto and InfluxDB 1.x servers for tests, on free ports in temp dirs.

Each server runs Debian's binary (``/usr/sbin/mosquitto``, ``/usr/bin/influxd``) with a config
file written into its work dir, listens on 127.0.0.1 only, and keeps its data in the work dir
so ``restart()`` (and ``kill()`` followed by ``start()``) keeps persistent state.

Used by the fixtures in ``tests/conftest.py``; usable directly by benchmarks::

    with MosquittoServer(tmp / "mqtt") as broker:
        ...  # broker.url == "mqtt://127.0.0.1:PORT"
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import httpx

HOST = "127.0.0.1"
EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class ServiceError(RuntimeError):
    """A test service could not be started or answered with an error."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    Chosen below the kernel's ephemeral range: a port from that range (what binding port 0
    gives) can be taken as the source port of any outgoing connection before the server that
    was meant to bind it does, which on a busy machine happens (EADDRINUSE at start).
    """
    low = _ephemeral_range()[0]
    for _ in range(50):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def which(binary: str) -> str | None:
    """Find ``binary`` on PATH plus /usr/sbin (not on a normal user's PATH on Debian)."""
    path = os.environ.get("PATH", os.defpath)
    return shutil.which(binary, path=os.pathsep.join([path, *EXTRA_BIN_DIRS]))


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a log file (or a note that there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# MQTT 3.1.1 CONNECT: clean session, keepalive 60 s, empty client id; then DISCONNECT.
_MQTT_CONNECT = bytes([0x10, 12, 0, 4, *b"MQTT", 4, 0x02, 0, 60, 0, 0])
_MQTT_DISCONNECT = bytes([0xE0, 0])


def mqtt_ping(host: str, port: int, timeout: float = 1.0, any_connack: bool = False) -> bool:
    """Return True if an MQTT broker on ``host:port`` accepts a CONNECT (CONNACK rc 0).

    With ``any_connack`` a refusal counts too (a broker that admits no anonymous client).
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_MQTT_CONNECT)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            sock.sendall(_MQTT_DISCONNECT)
            if any_connack:
                return reply[:2] == bytes([0x20, 2])
            return reply == bytes([0x20, 2, 0, 0])
    except OSError:
        return False


_LIVE: weakref.WeakSet[_Server] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.kill()


class _Server:
    """Start/stop/kill/restart bookkeeping shared by the concrete servers."""

    binary_name: ClassVar[str]
    start_timeout: ClassVar[float]

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        found = binary or which(self.binary_name)
        if not found:
            raise ServiceError(f"{self.binary_name} not found on PATH or in /usr/sbin")
        self.binary = found
        self.host = HOST
        self.port = free_port()
        self.log_path = self.workdir / f"{self.binary_name}.log"
        self.config_path = self.workdir / f"{self.binary_name}.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self._started_once = False

    # -- subclass hooks ---------------------------------------------------------------------
    def _write_config(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _new_ports(self) -> None:
        self.port = free_port()

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self.proc.pid if self.running and self.proc else None

    def start(self) -> None:
        """Start the server and wait until it serves; raise ServiceError with the log tail."""
        if self.running:
            return
        # A free port can be taken between free_port() and the bind: on the first start pick
        # new ports and try again; after that the port must stay (clients reconnect to it).
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            self._write_config()
            try:
                self._spawn_and_wait()
            except _AddressInUse:
                if attempt == attempts - 1:
                    raise ServiceError(
                        f"{self.binary_name}: port {self.port} in use\n{log_tail(self.log_path)}"
                    ) from None
                self._new_ports()
                continue
            self._started_once = True
            _LIVE.add(self)
            return

    def _spawn_and_wait(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} starting {self.binary}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in pytest must not kill it before teardown
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                tail = log_tail(self.log_path)
                self.proc = None
                if "address already in use" in tail.lower():
                    raise _AddressInUse
                raise ServiceError(f"{self.binary_name} exited with {code} on start:\n{tail}")
            if self._ready():
                return
            time.sleep(0.05)
        self.kill()
        raise ServiceError(
            f"{self.binary_name} not ready on port {self.port} after {self.start_timeout:.0f} s:"
            f"\n{log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop with SIGTERM (the server saves its state) and wait; SIGKILL after timeout."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None
        self._wait_port_closed()

    def kill(self) -> None:
        """Kill with SIGKILL (no chance to save anything) and reap the process."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self.proc = None
        self._wait_port_closed()

    def restart(self) -> None:
        """Stop gracefully and start again on the same port with the same data."""
        self.stop()
        self.start()

    def _wait_port_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} log={self.log_path}>"


class _AddressInUse(Exception):
    pass


def dynsec_plugin() -> str:
    """The path of Mosquitto's dynamic-security plugin (Debian's multiarch folder)."""
    for pattern in ("/usr/lib/*/mosquitto_dynamic_security.so",
                    "/usr/lib/mosquitto_dynamic_security.so"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise ServiceError("mosquitto_dynamic_security.so not found (Debian package mosquitto)")


class MosquittoServer(_Server):
    """Debian's mosquitto 2.x on a free port with persistence in ``workdir``.

    With ``dynsec_admin=(user, password)`` the dynamic-security plugin is loaded (its file
    made by ``mosquitto_ctrl dynsec init``) and anonymous clients are refused: clients then
    exist only as the plugin's admin creates them over ``$CONTROL/dynamic-security/v1``.
    """

    binary_name = "mosquitto"
    start_timeout = 10.0

    def __init__(self, workdir: Path, binary: str | None = None, *,
                 dynsec_admin: tuple[str, str] | None = None,
                 extra_config: list[str] | None = None) -> None:
        super().__init__(workdir, binary)
        self.extra_config = list(extra_config or [])  # lines added to the generated config
        self.persistence_dir = self.workdir / "persistence"
        self.persistence_dir.mkdir(exist_ok=True)
        self.dynsec_admin = dynsec_admin
        self.dynsec_file = self.workdir / "dynamic-security.json"

    @property
    def admin_url(self) -> str:
        """``mqtt://admin:pw@127.0.0.1:PORT`` of the plugin's admin (dynsec brokers only)."""
        assert self.dynsec_admin is not None, "not a dynamic-security broker"
        user, password = self.dynsec_admin
        return f"mqtt://{user}:{password}@{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{self.host}:{self.port}"

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            # Older mosquitto needs the trailing slash; 2.0 adds its own (the log shows "//").
            f"persistence_location {self.persistence_dir}/",
            "persistence_file mosquitto.db",
            # Saved on shutdown anyway; every second so that kill() loses at most ~1 s.
            "autosave_interval 1",
            # No limits: the drain benchmark queues 100k+ messages for one session.
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "memory_limit 0",
            "persistent_client_expiration 1d",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
            *self.extra_config,
        ]
        if self.dynsec_admin is not None:
            if not self.dynsec_file.exists():
                ctrl = which("mosquitto_ctrl")
                if not ctrl:
                    raise ServiceError("mosquitto_ctrl not found (Debian package mosquitto)")
                subprocess.run([ctrl, "dynsec", "init", str(self.dynsec_file),
                                *self.dynsec_admin], check=True, capture_output=True)
            lines = ["allow_anonymous false" if line == "allow_anonymous true" else line
                     for line in lines]
            lines += [f"plugin {dynsec_plugin()}",
                      f"plugin_opt_config_file {self.dynsec_file}"]
        if os.geteuid() == 0:
            # As root mosquitto switches to user "mosquitto", which cannot write our 0700
            # temp dirs; stay the user we are.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        # An MQTT handshake, not just a TCP connect: whoever else holds the port fails it.
        return mqtt_ping(self.host, self.port, any_connack=self.dynsec_admin is not None)


class InfluxServer(_Server):
    """Debian's influxd 1.x on free ports with meta/data/wal in ``workdir``."""

    binary_name = "influxd"
    start_timeout = 30.0

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        super().__init__(workdir, binary)
        self.rpc_port = free_port()
        self.http = httpx.Client(timeout=30.0)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def _new_ports(self) -> None:
        self.port = free_port()
        self.rpc_port = free_port()

    def _write_config(self) -> None:
        wd = self.workdir
        self.config_path.write_text(
            f"""\
# Upstream's key; Debian renamed it to reporting-enabled (default false): set both.
reporting-disabled = true
reporting-enabled = false
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{wd}/meta"
  logging-enabled = false

[data]
  dir = "{wd}/data"
  wal-dir = "{wd}/wal"
  # fsync every write before answering 204: acknowledged points survive kill().
  wal-fsync-delay = "0s"
  query-log-enabled = false
  # Defaults reject writes past 100k values per tag / 1M series: the benchmarks register
  # 100k+ devices (device_id tag), and InfluxDB 2.x in production has no such limits.
  max-values-per-tag = 0
  max-series-per-database = 0

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
  suppress-write-log = true
  unix-socket-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
"""
        )

    def _command(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            return self.http.get(f"{self.url}/ping", timeout=1.0).status_code == 204
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        """Stop the server and close the HTTP client."""
        self.stop()
        self.http.close()

    # -- HTTP API ---------------------------------------------------------------------------
    def query(self, q: str, db: str | None = None) -> dict[str, Any]:
        """Run InfluxQL via /query (epoch=ns); raise ServiceError on any error.

        SELECT and SHOW go as GET; everything else (CREATE, DROP, ...) as POST, which
        InfluxDB 1.x requires for statements that change something.
        """
        params = {"q": q, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        read_only = q.lstrip().upper().startswith(("SELECT", "SHOW"))
        method = "GET" if read_only else "POST"
        try:
            resp = self.http.request(method, f"{self.url}/query", params=params)
        except httpx.HTTPError as exc:
            raise ServiceError(f"influx query {q!r} failed: {exc}") from exc
        if resp.status_code >= 400:
            raise ServiceError(f"influx query {q!r}: HTTP {resp.status_code}: {resp.text}")
        body: dict[str, Any] = resp.json()
        if "error" in body:
            raise ServiceError(f"influx query {q!r}: {body['error']}")
        for result in body.get("results", []):
            if "error" in result:
                raise ServiceError(f"influx query {q!r}: {result['error']}")
        return body

    def write(self, lines: str | bytes, db: str, precision: str = "ns") -> None:
        """Write line protocol via /write; raise ServiceError unless InfluxDB answers 204."""
        data = lines.encode() if isinstance(lines, str) else lines
        resp = self.http.post(
            f"{self.url}/write", params={"db": db, "precision": precision}, content=data
        )
        if resp.status_code != 204:
            raise ServiceError(f"influx write: HTTP {resp.status_code}: {resp.text}")

    def create_database(self, name: str) -> None:
        """CREATE DATABASE ``name`` (idempotent in InfluxDB)."""
        self.query(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` (no error if it does not exist)."""
        self.query(f'DROP DATABASE "{name}"')

    def databases(self) -> list[str]:
        """Names of all databases."""
        body = self.query("SHOW DATABASES")
        series = body["results"][0].get("series", [])
        return [row[0] for s in series for row in s.get("values", [])]


@dataclass
class InfluxDatabase:
    """One database on an InfluxServer: what the ``influx_db`` fixture yields."""

    server: InfluxServer
    name: str

    @property
    def url(self) -> str:
        """The server's base URL (``http://127.0.0.1:PORT``)."""
        return self.server.url

    def query(self, q: str) -> dict[str, Any]:
        """Run InfluxQL in this database (see InfluxServer.query)."""
        return self.server.query(q, db=self.name)

    def write(self, lines: str | bytes, precision: str = "ns") -> None:
        """Write line protocol into this database."""
        self.server.write(lines, db=self.name, precision=precision)

    def rows(self, q: str) -> list[dict[str, Any]]:
        """Run a query and return its rows as dicts (column -> value), all series merged."""
        out: list[dict[str, Any]] = []
        for result in self.query(q).get("results", []):
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series.get("values", []):
                    out.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return out


__all__ = [
    "HOST",
    "InfluxDatabase",
    "InfluxServer",
    "MosquittoServer",
    "ServiceError",
    "free_port",
    "log_tail",
    "mqtt_ping",
    "port_open",
    "which",
]


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresServer(_Server):
    """Debian's PostgreSQL 15 (``initdb`` + ``postgres``), trust auth for user ``hub``.

    As root it runs as the ``postgres`` user (postgres refuses root). ``database()`` makes a
    fresh database and returns its SQLAlchemy URL, so tests share one server but not data.
    """

    binary_name = "postgres"
    start_timeout = 30.0

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        super().__init__(workdir, binary or str(PG_BIN / "postgres"))
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            self._run_as = ["runuser", "-u", "postgres", "--"]
        self.data_dir = self.workdir / "pgdata"
        self._count = 0

    def _write_config(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        initdb = str(Path(self.binary).parent / "initdb")
        subprocess.run([*self._run_as, initdb, "-D", str(self.data_dir), "-U", "hub",
                        "-A", "trust", "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8"],
                       check=True, capture_output=True)

    def _command(self) -> list[str]:
        return [*self._run_as, self.binary, "-D", str(self.data_dir), "-p", str(self.port),
                "-h", self.host, "-k", str(self.workdir), "-c", "fsync=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200"]

    def _ready(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        done = subprocess.run(
            [str(Path(self.binary).parent / "pg_isready"), "-h", self.host, "-p", str(self.port)],
            capture_output=True)
        return done.returncode == 0

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server's ``postgres`` database."""
        return f"postgresql+psycopg://hub@{self.host}:{self.port}/postgres"

    def database(self) -> str:
        """Create a fresh, empty database and return its SQLAlchemy URL."""
        import psycopg

        self._count += 1
        name = f"t{os.getpid()}_{self._count}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(f"host={self.host} port={self.port} user=hub dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://hub@{self.host}:{self.port}/{name}"
