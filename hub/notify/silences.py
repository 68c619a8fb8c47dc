"""Silences (maintenance windows): a match like a policy's, a start, an end, a comment.

A silenced alarm is raised, stored and shown as usual; its notifications are ``suppressed``.
A silence ends by itself at ``ends_at``; ``DELETE`` ends it early (the row stays, with
``deleted``). The active ones are kept in memory so the pipeline thread checks them cheaply.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, Engine, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.alarms.model import iso
from hub.db import Base, create_tables
from hub.notify.config import Match

MAX_VALUE = {"device_id": 128}  # the alarm table's column lengths (others 64)
MAX_VALUES = 200


class SilenceRow(Base):
    """One silence."""

    __tablename__ = "notify_silences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    site: Mapped[str | None] = mapped_column(String(64), index=True)
    match_json: Mapped[str] = mapped_column(Text)
    starts_ns: Mapped[int] = mapped_column(BigInteger)
    ends_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    comment: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    deleted_ns: Mapped[int | None] = mapped_column(BigInteger)
    deleted_by: Mapped[str | None] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence in memory."""

    id: str
    match: Match
    starts_ns: int
    ends_ns: int
    comment: str
    created_by: str
    created_ns: int
    deleted_ns: int | None = None

    def active(self, now_ns: int) -> bool:
        """True between start and end, unless deleted."""
        return self.deleted_ns is None and self.starts_ns <= now_ns < self.ends_ns

    def sites(self) -> list[str] | None:
        """The sites it is limited to, or None for every site."""
        site = self.match.site
        return None if site is None else [site] if isinstance(site, str) else list(site)

    def to_json(self, now_ns: int) -> dict[str, Any]:
        """The API form."""
        state = ("deleted" if self.deleted_ns is not None else
                 "active" if self.active(now_ns) else
                 "pending" if now_ns < self.starts_ns else "expired")
        return {"id": self.id, "match": self.match.model_dump(exclude_none=True),
                "starts_at": iso(self.starts_ns), "ends_at": iso(self.ends_ns),
                "comment": self.comment, "created_by": self.created_by,
                "created_at": iso(self.created_ns), "state": state,
                "deleted_at": iso(self.deleted_ns)}


def _of_row(row: SilenceRow) -> Silence:
    return Silence(row.id, Match.model_validate(orjson.loads(row.match_json)), row.starts_ns,
                   row.ends_ns, row.comment, row.created_by, row.created_ns, row.deleted_ns)


class Silences:
    """The silence table and the not-yet-ended silences in memory."""

    MAX_ACTIVE = 10_000

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine, [SilenceRow.__table__])
        self._lock = threading.Lock()
        self._live: dict[str, Silence] = {}
        self.reload()

    def reload(self, now_ns: int | None = None) -> None:
        """Read the silences that have not ended from the database."""
        with Session(self.engine) as session:
            query = select(SilenceRow).where(SilenceRow.deleted_ns.is_(None))
            if now_ns is not None:
                query = query.where(SilenceRow.ends_ns > now_ns)
            rows = session.execute(query).scalars().all()
        with self._lock:
            self._live = {r.id: _of_row(r) for r in rows}

    def create(self, match: Match, starts_ns: int, ends_ns: int, comment: str, user: str,
               now_ns: int) -> Silence:
        """Store a new silence; raise ValueError when it ends before it starts."""
        if ends_ns <= starts_ns:
            raise ValueError("ends_at must be after starts_at")
        for name, value in match.model_dump(exclude_none=True).items():
            longest = MAX_VALUE.get(name, 64)
            for item in [value] if isinstance(value, str) else value:
                if len(item) > longest or "\x00" in item:
                    raise ValueError(f"match.{name}: at most {longest} characters a value, "
                                     "no NUL")
            if not isinstance(value, str) and len(value) > MAX_VALUES:
                raise ValueError(f"match.{name}: at most {MAX_VALUES} values")
        if ends_ns <= now_ns:
            raise ValueError("ends_at is in the past")
        with self._lock:
            live = sum(1 for s in self._live.values() if s.ends_ns > now_ns)
        if live >= self.MAX_ACTIVE:
            raise ValueError(f"too many silences: at most {self.MAX_ACTIVE} may be in force")
        silence = Silence(str(uuid.uuid4()), match, starts_ns, ends_ns, comment, user, now_ns)
        sites = silence.sites()
        with Session(self.engine) as session, session.begin():
            session.add(SilenceRow(
                id=silence.id, site=sites[0] if sites and len(sites) == 1 else None,
                match_json=orjson.dumps(match.model_dump(exclude_none=True)).decode(),
                starts_ns=starts_ns, ends_ns=ends_ns, comment=comment, created_by=user,
                created_ns=now_ns))
        with self._lock:
            self._live[silence.id] = silence
        return silence

    def delete(self, silence_id: str, user: str, now_ns: int) -> Silence | None:
        """End a silence now; None when there is no such silence."""
        with Session(self.engine) as session, session.begin():
            row = session.get(SilenceRow, silence_id)
            if row is None:
                return None
            if row.deleted_ns is None:
                session.execute(update(SilenceRow).where(SilenceRow.id == silence_id)
                                .values(deleted_ns=now_ns, deleted_by=user))
                row.deleted_ns = now_ns
            silence = _of_row(row)
        with self._lock:
            self._live.pop(silence_id, None)
        return silence

    def get(self, silence_id: str) -> Silence | None:
        """One silence (any state)."""
        with Session(self.engine) as session:
            row = session.get(SilenceRow, silence_id)
            return None if row is None else _of_row(row)

    def list(self, *, site: str | None = None, include_ended: bool = False,
             now_ns: int, limit: int = 500) -> list[Silence]:
        """Silences, newest first; by default only those in force or still to come."""
        with Session(self.engine) as session:
            query = select(SilenceRow).order_by(SilenceRow.created_ns.desc()).limit(limit)
            if not include_ended:
                query = query.where(SilenceRow.deleted_ns.is_(None), SilenceRow.ends_ns > now_ns)
            items = [_of_row(r) for r in session.execute(query).scalars()]
        if site is not None:
            items = [s for s in items if s.sites() is None or site in (s.sites() or [])]
        return items

    def matching(self, fields: dict[str, Any], now_ns: int) -> Silence | None:
        """The first silence in force that matches an alarm's fields, or None."""
        with self._lock:
            live = list(self._live.values())
        expired = [s.id for s in live if s.ends_ns <= now_ns]
        if expired:
            with self._lock:
                for silence_id in expired:
                    self._live.pop(silence_id, None)
        for silence in live:
            if silence.active(now_ns) and silence.match.matches(fields):
                return silence
        return None
