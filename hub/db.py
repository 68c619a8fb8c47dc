"""The SQLAlchemy state store: one declarative base, one engine factory.

Each concern keeps its tables in its own module on this ``Base`` (refusals, device registry,
alarms, patrol, hazards); ``create_all`` makes whatever is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, create_engine, event, text
from sqlalchemy.orm import DeclarativeBase, sessionmaker

# Every table's device id column is this wide; the normalizer refuses longer ids from a topic.
DEVICE_ID_CHARS = 128


class Base(DeclarativeBase):
    """Declarative base for every table of the state store."""


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite make the folder, use WAL and a busy timeout."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker:  # type: ignore[type-arg]
    """Return a session factory bound to the engine (expire_on_commit off)."""
    return sessionmaker(engine, expire_on_commit=False)


# Any fixed number: the PostgreSQL advisory lock every hub takes while it creates tables.
_SCHEMA_LOCK = 0x5AFE_4B0B


def create_tables(engine: Engine, tables: Sequence[Any] | None = None) -> None:
    """Create ``tables`` (every table on ``Base`` by default) that do not exist yet.

    On PostgreSQL under an advisory lock: two hubs starting at once against a fresh database
    would otherwise both try to create a table, and one fails on the catalog's unique index.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        Base.metadata.create_all(connection, tables=tables)


def create_all(engine: Engine) -> None:
    """Create every table registered on ``Base`` (idempotent)."""
    create_tables(engine)


def column_chars(*columns: Any) -> int:
    """The fewest characters any of these ``String(n)`` columns holds (the tables decide)."""
    lengths = [col.property.columns[0].type.length if hasattr(col, "property")
               else col.type.length for col in columns]
    counts = [n for n in lengths if isinstance(n, int)]
    if not counts or len(counts) != len(lengths):
        raise TypeError("column_chars needs String(n) columns")
    return min(counts)


def string_limits(table: Any) -> dict[str, int]:
    """``{column: n}`` for every ``String(n)`` column of a table (for fitting rows to it)."""
    return {col.name: col.type.length for col in table.columns
            if isinstance(col.type, String) and col.type.length}
