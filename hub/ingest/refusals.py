"""Refused messages: counted by reason, kept in the state store for operators to look at."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import (
    BigInteger,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from hub.db import DEVICE_ID_CHARS, Base, string_limits
from hub.model import Refusal
from hub.setaside.rows import fit_text, write_rows

REFUSED = Counter("hub_messages_refused_total", "messages refused, by reason", ["reason"])
KEEP_ROWS = 20_000
DETAIL_CHARS = 2000
MAX_PENDING = 50_000  # refusals waiting for the database, at most
UNRECORDED = Counter("hub_refusals_unrecorded_total",
                     "refusals counted but not stored: the database was down and the queue full")


class RefusalRow(Base):
    """One refused message."""

    __tablename__ = "refusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    topic: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(Text)
    head: Mapped[bytes] = mapped_column(LargeBinary)
    device_id: Mapped[str | None] = mapped_column(String(DEVICE_ID_CHARS), nullable=True,
                                                  index=True)
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)


_LIMITS = string_limits(RefusalRow.__table__)


class RefusalLog:
    """Counts refusals and writes them to the state store in batches."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._pending: list[Refusal] = []
        self._lock = threading.Lock()  # the pipeline records, the writer thread flushes
        self._written = 0

    def record(self, refusal: Refusal) -> None:
        """Count a refusal and queue it for the next flush (at most MAX_PENDING wait)."""
        REFUSED.labels(refusal.reason).inc()
        with self._lock:
            if len(self._pending) < MAX_PENDING:
                self._pending.append(refusal)
                return
        # the database has been down for a while and garbage keeps coming: counted, not kept,
        # so that a flood cannot grow the hub without bound
        UNRECORDED.inc()

    def flush(self) -> None:
        """Write queued refusals (called before the messages are acknowledged)."""
        if not self._pending:
            return
        with self._lock:
            pending, self._pending = self._pending, []
        rows = [self._row(r) for r in pending]
        try:
            # a refusal is fitted to its columns (it must be storable whatever the device sent);
            # should the database still refuse one, it alone is set aside
            write_rows("refusals", rows, self._insert)
        except Exception:
            with self._lock:  # the database is down: keep them for the next flush
                self._pending[:0] = pending
            raise
        self._written += len(rows)
        if self._written > KEEP_ROWS // 10:
            self._written = 0
            self._prune()

    @staticmethod
    def _row(r: Refusal) -> dict[str, Any]:
        """A refusal as column values, every string fitted to its column (no NUL)."""
        limits = _LIMITS
        values: dict[str, Any] = {
            "received_ns": r.received_ns, "topic": r.topic, "reason": r.reason,
            "detail": r.detail, "head": bytes(r.head), "device_id": r.device_id,
            "model": r.model}
        for name in ("topic", "reason", "device_id", "model"):
            values[name] = fit_text(values[name], limits[name])
        values["detail"] = fit_text(r.detail, DETAIL_CHARS)
        return values

    def _insert(self, rows: Sequence[dict[str, Any]]) -> None:
        with self._sessions.begin() as session:
            session.execute(insert(RefusalRow), list(rows))

    def _prune(self) -> None:
        with self._sessions.begin() as session:
            newest = session.scalar(select(func.max(RefusalRow.id)))
            if newest is not None and newest > KEEP_ROWS:
                session.execute(delete(RefusalRow).where(RefusalRow.id <= newest - KEEP_ROWS))

    def recent(self, limit: int = 100, reason: str | None = None) -> list[dict[str, Any]]:
        """Return the newest refusals as JSON-ready dicts."""
        query = select(RefusalRow).order_by(RefusalRow.id.desc()).limit(limit)
        if reason:
            query = query.where(RefusalRow.reason == reason)
        with self._sessions() as session:
            rows = session.scalars(query).all()
        return [
            {
                "id": row.id,
                "received_at": datetime.fromtimestamp(row.received_ns / 1e9, UTC).isoformat(),
                "topic": row.topic,
                "reason": row.reason,
                "detail": row.detail,
                "head": row.head.decode("utf-8", "backslashreplace"),
                "device_id": row.device_id,
                "model": row.model,
            }
            for row in rows
        ]

    def counts(self) -> dict[str, int]:
        """Return the number of stored refusals per reason."""
        with self._sessions() as session:
            rows = session.execute(
                select(RefusalRow.reason, func.count()).group_by(RefusalRow.reason)
            ).all()
        return {reason: count for reason, count in rows}


class DeadLetterRow(Base):
    """A line the store refused for good (e.g. a field type conflict), with its reason."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    line: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)


DEAD_LETTERS = Counter("hub_dead_letters_total", "points the store refused for good")


class DeadLetterLog:
    """Keeps points the store refused, so nothing disappears without a trace."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def record(self, rejected: list[tuple[bytes, str]]) -> None:
        """Store rejected lines with the store's reason (called from the writer thread)."""
        if not rejected:
            return
        now = time.time_ns()
        DEAD_LETTERS.inc(len(rejected))
        rows = [{"at_ns": now, "line": fit_text(line.decode("utf-8", "replace"), None),
                 "reason": fit_text(reason, None)} for line, reason in rejected]
        write_rows("dead_letters", rows, self._insert)

    def _insert(self, rows: Sequence[dict[str, Any]]) -> None:
        with self._sessions.begin() as session:
            session.execute(insert(DeadLetterRow), list(rows))

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the newest dead letters."""
        with self._sessions() as session:
            rows = session.scalars(
                select(DeadLetterRow).order_by(DeadLetterRow.id.desc()).limit(limit)
            ).all()
        return [
            {
                "id": r.id,
                "at": datetime.fromtimestamp(r.at_ns / 1e9, UTC).isoformat(),
                "line": r.line,
                "reason": r.reason,
            }
            for r in rows
        ]
