"""Persistence of in-progress rule state (timers, latches, windows) across restarts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from sqlalchemy import BigInteger, Engine, String, Text, delete, func, inspect, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.alarms.model import CLEARED_ACK, SYSTEM
from hub.alarms.store import AlarmRow
from hub.db import DEVICE_ID_CHARS, Base
from hub.setaside.rows import write_rows


class RuleStateRow(Base):
    """One device's rule state as JSON."""

    __tablename__ = "rule_state"

    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_CHARS), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    data: Mapped[str] = mapped_column(Text)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, slots=True)
class SavedState:
    """A device's saved rule state."""

    device_id: str
    kind: str
    site: str
    model: str
    data: dict[str, Any]


class RuleStateStore:
    """Reads and writes ``rule_state`` rows (delete + insert keeps it portable)."""

    CHUNK = 500

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        RuleStateRow.__table__.create(engine, checkfirst=True)  # type: ignore[attr-defined]

    def load_all(self) -> list[SavedState]:
        """Return every saved device state."""
        with Session(self.engine) as session:
            rows = session.execute(select(RuleStateRow)).scalars().all()
            return [SavedState(r.device_id, r.kind, r.site, r.model, orjson.loads(r.data))
                    for r in rows]

    def rule_clears(self, device_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Device -> rule -> the newest device time its rule cleared an alarm now closed
        (acknowledged, so the alarm service no longer holds it), for these devices."""
        times: dict[str, dict[str, int]] = {}
        if not device_ids or not inspect(self.engine).has_table(AlarmRow.__tablename__):
            return times
        with Session(self.engine) as session:
            for start in range(0, len(device_ids), self.CHUNK):
                rows = session.execute(
                    select(AlarmRow.device_id, AlarmRow.rule, func.max(AlarmRow.cleared_ns))
                    .where(AlarmRow.device_id.in_(device_ids[start:start + self.CHUNK]),
                           AlarmRow.state == CLEARED_ACK, AlarmRow.cleared_by == SYSTEM,
                           AlarmRow.cleared_ns.is_not(None))
                    .group_by(AlarmRow.device_id, AlarmRow.rule))
                for device_id, rule, at in rows:
                    if at is not None:
                        times.setdefault(device_id, {})[rule] = int(at)
        return times

    def save(self, states: Iterable[SavedState], now_ns: int) -> int:
        """Replace the rows of the given devices; return how many were written."""
        batch = list(states)
        write_rows("rule_state", batch, partial(self._write, now_ns=now_ns))  # bad rows aside
        return len(batch)

    def _write(self, batch: Sequence[SavedState], now_ns: int) -> None:
        with Session(self.engine) as session, session.begin():
            for start in range(0, len(batch), self.CHUNK):
                chunk = batch[start:start + self.CHUNK]
                session.execute(delete(RuleStateRow).where(
                    RuleStateRow.device_id.in_([s.device_id for s in chunk])))
                session.execute(RuleStateRow.__table__.insert(), [  # type: ignore[attr-defined]
                    {"device_id": s.device_id, "kind": s.kind, "site": s.site, "model": s.model,
                     "data": orjson.dumps(s.data).decode(), "updated_ns": now_ns}
                    for s in chunk
                ])
