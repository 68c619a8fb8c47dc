"""State-store tables of patrol rounds, scans, patrol alarm items and hazards."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    inspect,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import CreateIndex

from hub.db import DEVICE_ID_CHARS, Base


class PatrolSiteRow(Base):
    """Per site: since when the tracker watches it and its clock (device mode)."""

    __tablename__ = "patrol_sites"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    watch_from_ns: Mapped[int] = mapped_column(BigInteger)
    clock_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RoundRow(Base):
    """One scheduled round of a route on a local date."""

    __tablename__ = "patrol_rounds"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    route_id: Mapped[str] = mapped_column(String(64))
    date: Mapped[str] = mapped_column(String(10))
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="scheduled")
    first_scan_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    checked_start: Mapped[bool] = mapped_column(Boolean, default=False)
    concluded: Mapped[bool] = mapped_column(Boolean, default=False)
    watched: Mapped[bool] = mapped_column(Boolean, default=True)
    out_of_order: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_patrol_rounds_site_date", "site", "date"),)


class ScanRow(Base):
    """One accepted scan (duplicates by reader, device time and tag are refused).

    Append-only: the hub that takes a scan inserts it and never changes it, except ``counted``.
    A scan of a round another hub runs (cluster mode: the route's first reader is in another
    partition) is inserted with ``counted`` false; the round's owner counts it into the round
    and sets ``counted`` in the transaction that writes the round row.
    """

    __tablename__ = "patrol_scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_CHARS))
    tag_uid: Mapped[str] = mapped_column(String(64))
    checkpoint_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    route_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    round_id: Mapped[str | None] = mapped_column(String(160), nullable=True, index=True)
    patroller_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    time_ns: Mapped[int] = mapped_column(BigInteger)
    received_ns: Mapped[int] = mapped_column(BigInteger)
    arrival_ns: Mapped[int] = mapped_column(BigInteger)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    distance_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    late_upload: Mapped[bool] = mapped_column(Boolean, default=False)
    counted: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")

    __table_args__ = (UniqueConstraint("device_id", "time_ns", "tag_uid",
                                       name="uq_patrol_scan"),)


# the scans a round's owner has still to count: a partial index, a handful of rows at any time
UNCOUNTED = ScanRow.counted == false()
Index("ix_patrol_scans_uncounted", ScanRow.id, postgresql_where=UNCOUNTED,
      sqlite_where=UNCOUNTED)


class AlarmItemRow(Base):
    """What an open patrol alarm is about (one line of its message), open or resolved."""

    __tablename__ = "patrol_alarm_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_CHARS))
    rule: Mapped[str] = mapped_column(String(64))
    item_key: Mapped[str] = mapped_column(String(200))
    text_en: Mapped[str] = mapped_column(Text)
    text_zh: Mapped[str] = mapped_column(Text)
    at_ns: Mapped[int] = mapped_column(BigInteger)
    open: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (UniqueConstraint("device_id", "rule", "item_key",
                                       name="uq_patrol_alarm_item"),)


class HazardRow(Base):
    """A hazard (隐患) and where it stands in its lifecycle."""

    __tablename__ = "hazards"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    category: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    photo_ref: Mapped[str | None] = mapped_column(String(400), nullable=True)
    checkpoint_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tag_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reported_by: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(DEVICE_ID_CHARS), nullable=True)
    reported_ns: Mapped[int] = mapped_column(BigInteger)
    department: Mapped[str | None] = mapped_column(String(200), nullable=True)
    due_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rectified_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rectify_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    evidence_ref: Mapped[str | None] = mapped_column(String(400), nullable=True)
    verified_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    verified_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(300), nullable=True, unique=True)
    overdue_alarmed: Mapped[bool] = mapped_column(Boolean, default=False)
    grade: Mapped[str] = mapped_column(String(16), default="general",
                                       server_default="general")
    # the deadline's start: when the hub learned of the hazard (a late upload gets full time)
    deadline_from_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # rungs of the escalation ladder done for the current deadline
    rungs_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    supervised_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    county_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    patroller_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    route_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rectified_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class HazardHistoryRow(Base):
    """One step of a hazard's history: who did what, when."""

    __tablename__ = "hazard_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hazard_id: Mapped[str] = mapped_column(String(40), index=True)
    at_ns: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class HazardEvidenceRow(Base):
    """Stored evidence attached to a hazard: before (as found) or after (as fixed)."""

    __tablename__ = "hazard_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hazard_id: Mapped[str] = mapped_column(String(40), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at_ns: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("hazard_id", "sha256", "kind",
                                       name="uq_hazard_evidence"),)


class PhotoRefRow(Base):
    """A reader's photo uploaded by its ``photo_ref``, before or after the hazard arrived."""

    __tablename__ = "hazard_photo_refs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(128))
    photo_ref: Mapped[str] = mapped_column(String(400))
    sha256: Mapped[str] = mapped_column(String(64))
    at_ns: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("device_id", "photo_ref", name="uq_hazard_photo_ref"),)


TABLES = [Base.metadata.tables[name] for name in (
    "patrol_sites", "patrol_rounds", "patrol_scans", "patrol_alarm_items", "hazards",
    "hazard_history", "hazard_evidence", "hazard_photo_refs")]


def add_missing_indexes(engine: Engine, tables: list[Table]) -> None:
    """Create the indexes a newer hub defines on tables an older one created (idempotent)."""
    with engine.begin() as conn:
        for table in tables:
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                conn.execute(CreateIndex(index, if_not_exists=True))


def add_missing_columns(engine: Engine, tables: list[Table]) -> list[str]:
    """Add columns a newer hub defines to tables an older one created; returns what it added.

    Only nullable columns or columns with a server default are added (every column added since
    the first release is one), so old rows stay valid.
    """
    added: list[str] = []
    found = inspect(engine)
    for table in tables:
        if not found.has_table(table.name):
            continue
        have = {c["name"] for c in found.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            default = column.server_default
            clause = f" DEFAULT '{default.arg}'" if default is not None else ""  # type: ignore[attr-defined]
            with engine.begin() as conn:
                conn.execute(text(
                    f'ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{clause}'))
            added.append(f"{table.name}.{column.name}")
    return added
