"""Alarm tables on ``hub.db.Base`` and the queries the service needs (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Engine,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.alarms.merge import synced
from hub.alarms.model import OPEN_STATES, Alarm, iso
from hub.db import DEVICE_ID_CHARS, Base, create_tables
from hub.patrol.tables import add_missing_columns
from hub.rules.schema import SEVERITY_RANK
from hub.setaside.rows import is_row_fault, write_rows

_Item = tuple[Alarm | None, bool, list[dict[str, Any]]]  # an alarm row and its history rows


class AlarmRow(Base):
    """One alarm (open or closed)."""

    __tablename__ = "alarms"
    __table_args__ = (
        Index("ix_alarms_device_rule_state", "device_id", "rule", "state"),
        Index("ix_alarms_order", "severity_rank", "raised_ns"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_CHARS))
    site: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    community: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    severity_rank: Mapped[int] = mapped_column(SmallInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text)
    message_zh: Mapped[str] = mapped_column(Text)
    value_json: Mapped[str] = mapped_column(Text)
    details_json: Mapped[str | None] = mapped_column(Text)
    raised_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    last_seen_ns: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    acked_ns: Mapped[int | None] = mapped_column(BigInteger)
    acked_by: Mapped[str | None] = mapped_column(String(64))
    cleared_ns: Mapped[int | None] = mapped_column(BigInteger)
    cleared_by: Mapped[str | None] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64))
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class AlarmHistoryRow(Base):
    """One transition or note of an alarm: who, when, what."""

    __tablename__ = "alarm_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alarm_id: Mapped[str] = mapped_column(ForeignKey("alarms.id"), index=True)
    at_ns: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    value_json: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    hub: Mapped[str | None] = mapped_column(String(64))  # the node that wrote it (cluster mode)


class StaleAlarms(Exception):
    """Rows another hub changed since they were read or written here (cluster mode)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} alarm rows changed by another hub")
        self.ids = ids


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _row_values(alarm: Alarm) -> dict[str, Any]:
    return {
        "id": alarm.id, "device_id": alarm.device_id, "site": alarm.site, "kind": alarm.kind,
        "rule": alarm.rule, "model": alarm.model, "community": alarm.community,
        "severity": alarm.severity, "severity_rank": SEVERITY_RANK.get(alarm.severity, 9),
        "state": alarm.state, "message": alarm.message, "message_zh": alarm.message_zh,
        "value_json": _dumps(alarm.value),
        "details_json": None if alarm.details is None else _dumps(alarm.details),
        "raised_ns": alarm.raised_ns, "last_seen_ns": alarm.last_seen_ns, "count": alarm.count,
        "acked_ns": alarm.acked_ns, "acked_by": alarm.acked_by, "cleared_ns": alarm.cleared_ns,
        "cleared_by": alarm.cleared_by, "assignee": alarm.assignee,
        "updated_ns": alarm.updated_ns,
    }


def row_to_alarm(row: AlarmRow) -> Alarm:
    """Build the in-memory record from a row (its version: the row's ``updated_ns``)."""
    alarm = Alarm(
        id=row.id, device_id=row.device_id, site=row.site, kind=row.kind, rule=row.rule,
        model=row.model, community=row.community, severity=row.severity, state=row.state,
        message=row.message, message_zh=row.message_zh, value=orjson.loads(row.value_json),
        details=None if row.details_json is None else orjson.loads(row.details_json),
        raised_ns=row.raised_ns, last_seen_ns=row.last_seen_ns, count=row.count,
        acked_ns=row.acked_ns, acked_by=row.acked_by, cleared_ns=row.cleared_ns,
        cleared_by=row.cleared_by, assignee=row.assignee, updated_ns=row.updated_ns,
    )
    synced(alarm, row.updated_ns)
    return alarm


class HistoryEntry:
    """A history row waiting to be written with its alarm."""

    __slots__ = ("action", "actor", "at_ns", "from_state", "note")

    def __init__(self, action: str, actor: str, at_ns: int, from_state: str | None,
                 note: str | None = None) -> None:
        self.action = action
        self.actor = actor
        self.at_ns = at_ns
        self.from_state = from_state
        self.note = note


class AlarmStore:
    """Reads and writes alarms and their history."""

    def __init__(self, engine: Engine, node: str | None = None) -> None:
        self.engine = engine
        self.node = node  # recorded on history rows (cluster mode: which hub acted)
        create_tables(engine, [
            AlarmRow.__table__, AlarmHistoryRow.__table__])
        add_missing_columns(engine, [Base.metadata.tables["alarm_history"]])  # ``hub``

    def load_open(self) -> list[Alarm]:
        """Return every alarm that is not cleared and acknowledged."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(AlarmRow).where(AlarmRow.state.in_(sorted(OPEN_STATES)))).scalars()
            return [row_to_alarm(r) for r in rows]

    def write_batch(self, rows: Sequence[tuple[Alarm, bool]],
                    history: Sequence[dict[str, Any]],
                    ops: Sequence[Callable[[Session], None]] = (), *,
                    check: bool = False) -> None:
        """Insert (flag True) or update alarms, append history rows, then run the transition
        hooks' ops (e.g. the notification outbox), all in one transaction.

        ``check`` (cluster mode): an update applies only if the row is still at the version the
        alarm was based on (``stored_ns``); otherwise nothing is written and ``StaleAlarms``
        names the rows to merge.

        When the database refuses an alarm's data, the batch is written again alarm by alarm
        (each with its history, ``hub.setaside``): the bad one is set aside, the others are
        written, then the ops in a transaction of their own; the batch is not retried forever.
        """
        by_alarm: dict[str, list[dict[str, Any]]] = {}
        for entry in history:
            by_alarm.setdefault(entry["alarm_id"], []).append(entry)
        items: list[_Item] = [(a, new, by_alarm.pop(a.id, [])) for a, new in rows]
        items += [(None, False, entries) for entries in by_alarm.values()]  # alarms stored before
        try:
            self._write_items(items, ops, check)
            return
        except Exception as exc:
            if not is_row_fault(exc):
                raise
        write_rows("alarms", items, lambda some: self._write_items(some, (), check))
        if ops:
            write_rows("alarm_ops", list(ops), lambda some: self._write_items([], some))

    def _write_items(self, items: Sequence[_Item],
                     ops: Sequence[Callable[[Session], None]] = (), check: bool = False) -> None:
        with Session(self.engine) as session, session.begin():
            inserts = [_row_values(a) for a, new, _h in items if a is not None and new]
            if inserts:
                session.execute(insert(AlarmRow), inserts)
            stale = []
            for alarm, new, _h in items:
                if alarm is not None and not new:
                    where = [AlarmRow.id == alarm.id]
                    if check:
                        where.append(AlarmRow.updated_ns == alarm.stored_ns)
                    done = session.execute(update(AlarmRow).where(*where)
                                           .values(**_row_values(alarm)))
                    if check and done.rowcount == 0:  # type: ignore[attr-defined]
                        stale.append(alarm.id)
            if stale:
                raise StaleAlarms(stale)  # rolls the transaction back: merged, then again
            history = [entry for _a, _n, entries in items for entry in entries]
            if history:
                session.execute(insert(AlarmHistoryRow), history)
            for op in ops:
                op(session)

    def history_row(self, alarm: Alarm, entry: HistoryEntry) -> dict[str, Any]:
        """Return the history row of an entry with the alarm's state and value right now."""
        return {"alarm_id": alarm.id, "at_ns": entry.at_ns, "actor": entry.actor,
                "action": entry.action, "from_state": entry.from_state,
                "to_state": alarm.state, "severity": alarm.severity,
                "value_json": _dumps(alarm.value), "note": entry.note, "hub": self.node}

    def get(self, alarm_id: str) -> Alarm | None:
        """Return one alarm or None."""
        with Session(self.engine) as session:
            row = session.get(AlarmRow, alarm_id)
            return None if row is None else row_to_alarm(row)

    def get_many(self, alarm_ids: Sequence[str]) -> dict[str, Alarm]:
        """Return the stored alarms of these ids (missing ones left out)."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(AlarmRow).where(AlarmRow.id.in_(list(alarm_ids)))).scalars()
            return {r.id: row_to_alarm(r) for r in rows}

    def history(self, alarm_id: str) -> list[dict[str, Any]]:
        """Return an alarm's history, oldest first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(AlarmHistoryRow).where(AlarmHistoryRow.alarm_id == alarm_id)
                .order_by(AlarmHistoryRow.id)).scalars()
            return [{"at": iso(r.at_ns), "actor": r.actor, "action": r.action,
                     "from_state": r.from_state, "to_state": r.to_state,
                     "severity": r.severity, "value": orjson.loads(r.value_json),
                     "note": r.note, "hub": r.hub} for r in rows]

    def query(
        self,
        *,
        states: Sequence[str] | None = None,
        severities: Sequence[str] | None = None,
        device_id: str | None = None,
        site: str | None = None,
        kind: str | None = None,
        rule: str | None = None,
        assignee: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        sort: str = "severity",
        limit: int = 100,
        offset: int = 0,
        sites: Sequence[str] | None = None,
    ) -> tuple[list[Alarm], int]:
        """Return a page of alarms matching the filters and the total count.

        ``sites`` (a caller's scope) limits the result to those sites; empty means none.
        """
        conditions: list[Any] = []
        if sites is not None:
            if not sites:
                return [], 0
            conditions.append(AlarmRow.site.in_(list(sites)))
        if states:
            conditions.append(AlarmRow.state.in_(list(states)))
        if severities:
            conditions.append(AlarmRow.severity.in_(list(severities)))
        for column, wanted in ((AlarmRow.device_id, device_id), (AlarmRow.site, site),
                               (AlarmRow.kind, kind), (AlarmRow.rule, rule),
                               (AlarmRow.assignee, assignee)):
            if wanted is not None:
                conditions.append(column == wanted)
        if since_ns is not None:
            conditions.append(AlarmRow.raised_ns >= since_ns)
        if until_ns is not None:
            conditions.append(AlarmRow.raised_ns <= until_ns)
        order: tuple[Any, ...]
        if sort == "time":
            order = (AlarmRow.raised_ns.desc(), AlarmRow.severity_rank, AlarmRow.id)
        else:
            order = (AlarmRow.severity_rank, AlarmRow.raised_ns.desc(), AlarmRow.id)
        with Session(self.engine) as session:
            total = session.execute(
                select(func.count()).select_from(AlarmRow).where(*conditions)).scalar_one()
            rows = session.execute(
                select(AlarmRow).where(*conditions).order_by(*order)
                .limit(limit).offset(offset)).scalars()
            return [row_to_alarm(r) for r in rows], int(total)
