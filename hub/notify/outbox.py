"""The durable outbox: one row per (alarm, round, kind, step, seq, channel), in the state store.

Rows are planned inside the alarm service's own transaction (``plan``, ``stop`` return
callables it runs in the session that writes the transition), so an alarm in the database
always has its notifications in the database, before the MQTT message that raised it is
acknowledged. The unique key makes a step impossible to plan twice; the dispatcher marks a
row ``sent`` once the platform said so, so a restart resends nothing already sent.

Hand-overs of hazards (kind ``handover``) are rows too, keyed ``hazard:<id>`` with step = the
hazard history row they stem from; they carry their own ``text`` and are no alarm's.

Statuses: ``pending`` (waiting for its time, or retrying), ``sent``, ``failed`` (given up, or
a configuration error), ``suppressed`` (a silence matched), ``cancelled`` (acknowledged or
cleared before it was due; not shown).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Engine,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.alarms.model import iso
from hub.db import Base, create_tables
from hub.patrol.tables import add_missing_columns

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
SUPPRESSED = "suppressed"
CANCELLED = "cancelled"
SHOWN = (PENDING, SENT, FAILED, SUPPRESSED)
STEP, REMINDER, CLEAR, HANDOVER = "step", "reminder", "clear", "handover"
Op = Callable[[Session], None]


class OutboxRow(Base):
    """One notification of one alarm on one channel."""

    __tablename__ = "notify_outbox"
    __table_args__ = (
        UniqueConstraint("alarm_id", "round", "kind", "step", "seq", "channel",
                         name="uq_notify_outbox_key"),
        Index("ix_notify_outbox_due", "status", "next_try_ns"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(128), default="")  # the hub that sends it
    alarm_id: Mapped[str] = mapped_column(String(36), index=True)
    site: Mapped[str] = mapped_column(String(64))
    round: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(64))
    mention_json: Mapped[str] = mapped_column(Text)
    due_ns: Mapped[int] = mapped_column(BigInteger)
    next_try_ns: Mapped[int] = mapped_column(BigInteger)
    repeat_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    max_repeats: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    at_ns: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)  # a hand-over's own message


@dataclass(frozen=True, slots=True)
class Planned:
    """A row to plan: everything but the alarm's round (found in the transaction)."""

    kind: str
    step: int
    seq: int
    channel: str
    mention: tuple[str, ...]
    due_ns: int
    repeat_ns: int = 0
    max_repeats: int = 0


@dataclass(frozen=True, slots=True)
class Due:
    """A pending row as the dispatcher sees it."""

    id: int
    alarm_id: str
    site: str
    round: int
    kind: str
    step: int
    seq: int
    channel: str
    mention: tuple[str, ...]
    due_ns: int
    repeat_ns: int
    max_repeats: int
    attempts: int
    text: str | None = None
    owner: str = ""


def _values(alarm_id: str, site: str, round_: int, item: Planned, status: str,
            now_ns: int, owner: str) -> dict[str, Any]:
    return {"owner": owner, "alarm_id": alarm_id, "site": site, "round": round_, "kind": item.kind,
            "step": item.step, "seq": item.seq, "channel": item.channel,
            "mention_json": orjson.dumps(list(item.mention)).decode(), "due_ns": item.due_ns,
            "next_try_ns": item.due_ns, "repeat_ns": item.repeat_ns,
            "max_repeats": item.max_repeats, "status": status, "attempts": 0,
            "at_ns": now_ns if status != PENDING else None,
            "error": "silenced" if status == SUPPRESSED else None}


def _cancel_pending(session: Session, alarm_id: str, now_ns: int, kinds: Sequence[str]) -> None:
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.alarm_id == alarm_id, OutboxRow.status == PENDING,
               OutboxRow.kind.in_(list(kinds)))
        .values(status=CANCELLED, at_ns=now_ns))


def plan(alarm_id: str, site: str, items: Sequence[Planned], now_ns: int, *,
         new_round: bool, suppressed: bool, owner: str = "") -> Op:
    """The op that plans a round of steps (a new round cancels the old round's pending rows)."""
    status = SUPPRESSED if suppressed else PENDING

    def op(session: Session) -> None:
        current = session.execute(select(func.max(OutboxRow.round))
                                  .where(OutboxRow.alarm_id == alarm_id)).scalar_one_or_none()
        if current is not None and not new_round:
            return  # planned already (a replayed raise): never twice
        round_ = 0 if current is None else current + 1
        _cancel_pending(session, alarm_id, now_ns, (STEP, REMINDER))
        rows = [_values(alarm_id, site, round_, item, status, now_ns, owner) for item in items
                if not (suppressed and item.kind == REMINDER)]
        if rows:
            session.execute(insert(OutboxRow), rows)

    return op


def stop(alarm_id: str, site: str, now_ns: int, *, clear_notice: bool,
         suppressed: bool, owner: str = "") -> Op:
    """The op that cancels pending steps and reminders (ack, clear), with an optional notice
    on clear to every channel a step of the current round was sent to."""

    def op(session: Session) -> None:
        _cancel_pending(session, alarm_id, now_ns, (STEP, REMINDER))
        if not clear_notice:
            return
        round_ = session.execute(select(func.max(OutboxRow.round))
                                 .where(OutboxRow.alarm_id == alarm_id)).scalar_one_or_none()
        if round_ is None:
            return
        told = session.execute(
            select(OutboxRow.channel, OutboxRow.mention_json)
            .where(OutboxRow.alarm_id == alarm_id, OutboxRow.round == round_,
                   OutboxRow.kind == STEP, OutboxRow.status.in_([SENT, SUPPRESSED]))
            .order_by(OutboxRow.id)).all()
        channels = list(dict.fromkeys(channel for channel, _ in told))
        existing = set(session.execute(
            select(OutboxRow.channel).where(OutboxRow.alarm_id == alarm_id,
                                            OutboxRow.round == round_,
                                            OutboxRow.kind == CLEAR)).scalars())
        rows = [_values(alarm_id, site, round_, Planned(CLEAR, 0, 0, channel, (), now_ns),
                        SUPPRESSED if suppressed else PENDING, now_ns, owner)
                for channel in channels if channel not in existing]
        if rows:
            session.execute(insert(OutboxRow), rows)

    return op


class Outbox:
    """Reads and updates outbox rows outside the alarm transactions (the dispatcher's side)."""

    def __init__(self, engine: Engine, owner: str = "") -> None:
        self.engine = engine
        self.owner = owner  # hubs sharing a state store each send the rows they planned
        # cluster mode (hub.cluster.wiring): the owners whose rows this hub sends now (the
        # partitions it owns); a row's owner is then its alarm's partition, so the rows follow
        # the partition to its next owner
        self.serving: Callable[[], list[str]] = lambda: [self.owner]
        create_tables(engine, [OutboxRow.__table__])
        add_missing_columns(engine, [Base.metadata.tables["notify_outbox"]])  # ``text``: hand-overs

    def due(self, now_ns: int, limit: int = 1000) -> list[Due]:
        """Pending rows whose time has come, oldest first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(OutboxRow).where(OutboxRow.status == PENDING,
                                        OutboxRow.next_try_ns <= now_ns,
                                        OutboxRow.owner.in_(self.serving()))
                .order_by(OutboxRow.due_ns, OutboxRow.id).limit(limit)).scalars().all()
            return [Due(r.id, r.alarm_id, r.site, r.round, r.kind, r.step, r.seq, r.channel,
                        tuple(orjson.loads(r.mention_json)), r.due_ns, r.repeat_ns,
                        r.max_repeats, r.attempts, r.text, r.owner) for r in rows]

    def handover(self, key: str, site: str, seq: int, channel: str, text: str,
                 now_ns: int, owner: str | None = None) -> bool:
        """Plan one hand-over message; False when (key, seq, channel) was planned already."""
        values = _values(key, site, 0, Planned(HANDOVER, seq, 0, channel, (), now_ns),
                         PENDING, now_ns, self.owner if owner is None else owner)
        try:
            with Session(self.engine) as session, session.begin():
                session.execute(insert(OutboxRow), [{**values, "text": text}])
        except IntegrityError:
            return False  # the unique key: a repeated hand-over is never sent twice
        return True

    def of_handovers(self, key: str) -> dict[int, list[dict[str, Any]]]:
        """A hazard's hand-over rows by step (the history row), for its history."""
        found: dict[int, list[dict[str, Any]]] = {}
        with Session(self.engine) as session:
            for r in session.execute(select(OutboxRow).where(
                    OutboxRow.alarm_id == key, OutboxRow.kind == HANDOVER)
                    .order_by(OutboxRow.id)).scalars():
                found.setdefault(r.step, []).append({
                    "channel": r.channel, "status": r.status, "attempts": r.attempts,
                    "at": iso(r.at_ns if r.at_ns is not None else r.next_try_ns),
                    "error": r.error})
        return found

    def finish(self, rows: Sequence[Due], status: str, now_ns: int, *, error: str | None,
               answer: str | None, reminders: Sequence[Due] = ()) -> None:
        """Mark rows sent, failed, suppressed or cancelled; plan the next reminder of sent ones."""
        if not rows:
            return
        tried = 1 if status in (SENT, FAILED) else 0
        with Session(self.engine) as session, session.begin():
            session.execute(update(OutboxRow).where(OutboxRow.id.in_([r.id for r in rows]))
                            .values(status=status, at_ns=now_ns, error=error, answer=answer,
                                    attempts=OutboxRow.attempts + tried))
            for row in reminders:
                self._next_reminder(session, row, now_ns)

    def _next_reminder(self, session: Session, row: Due, now_ns: int) -> None:
        if row.repeat_ns <= 0 or row.seq >= row.max_repeats:
            return
        exists = session.execute(select(OutboxRow.id).where(
            OutboxRow.alarm_id == row.alarm_id, OutboxRow.round == row.round,
            OutboxRow.kind == REMINDER, OutboxRow.step == row.step,
            OutboxRow.seq == row.seq + 1, OutboxRow.channel == row.channel)).first()
        if exists is not None:
            return
        due = max(row.due_ns + row.repeat_ns, now_ns)
        session.execute(insert(OutboxRow), [_values(
            row.alarm_id, row.site, row.round,
            Planned(REMINDER, row.step, row.seq + 1, row.channel, row.mention, due,
                    row.repeat_ns, row.max_repeats), PENDING, now_ns, row.owner or self.owner)])

    def retry(self, rows: Sequence[Due], next_try_ns: int, error: str) -> None:
        """Count an attempt and try again at ``next_try_ns``."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(OutboxRow).where(OutboxRow.id.in_([r.id for r in rows]))
                            .values(next_try_ns=next_try_ns, error=error,
                                    attempts=OutboxRow.attempts + 1))

    def of_alarm(self, alarm_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` notifications of an alarm (cancelled ones left out), in
        planning order (a flapping alarm starts a round each time it reopens)."""
        with Session(self.engine) as session:
            rows = list(reversed(session.execute(
                select(OutboxRow).where(OutboxRow.alarm_id == alarm_id,
                                        OutboxRow.status.in_(list(SHOWN)))
                .order_by(OutboxRow.id.desc()).limit(limit)).scalars().all()))
            return [{"step": r.step, "channel": r.channel, "status": r.status,
                     "at": iso(r.at_ns if r.at_ns is not None else r.next_try_ns),
                     "error": r.error, "kind": r.kind, "round": r.round, "seq": r.seq,
                     "attempts": r.attempts, "due_at": iso(r.due_ns), "answer": r.answer}
                    for r in rows]

    def suppressed_alarms(self, alarm_ids: Sequence[str]) -> set[str]:
        """Which of these alarms had a notification suppressed by a silence."""
        if not alarm_ids:
            return set()
        with Session(self.engine) as session:
            return set(session.execute(
                select(OutboxRow.alarm_id).where(OutboxRow.alarm_id.in_(list(alarm_ids)),
                                                 OutboxRow.status == SUPPRESSED)
                .distinct()).scalars())

    def recent_sends(self, since_ns: int) -> list[tuple[str, int]]:
        """(channel, time) of messages sent since a moment (seeds the rate limiters)."""
        with Session(self.engine) as session:
            return [(c, int(t or 0)) for c, t in session.execute(
                select(OutboxRow.channel, OutboxRow.at_ns).where(
                    OutboxRow.status == SENT, OutboxRow.at_ns >= since_ns,
                    OutboxRow.owner.in_(self.serving())).distinct())]

    def pending(self) -> int:
        """How many rows wait to be sent (due or not)."""
        with Session(self.engine) as session:
            return int(session.execute(select(func.count()).select_from(OutboxRow)
                                       .where(OutboxRow.status == PENDING)).scalar_one())
