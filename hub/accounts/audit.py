"""The audit log: who did what, when and from where (sign-ins, users, tokens, devices, ...).

Rows are written at once (these events are rare). Strings a caller chose (a user name typed at
sign-in) are bounded and cleaned of control characters before they reach a column, so a
hostile name cannot lose the row on PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, or_, select
from sqlalchemy.orm import Session

from hub.accounts.tables import TABLES, AuditRow
from hub.db import create_tables

log = logging.getLogger(__name__)
KEEP_ROWS = 500_000  # the oldest rows go beyond this (failed sign-ins must not fill the disk)
PRUNE_EVERY = 1000


def clean(text: str | None, limit: int) -> str | None:
    """``text`` without control characters, cut to ``limit`` characters (None stays None)."""
    if text is None:
        return None
    kept = "".join(ch if ch.isprintable() else "?" for ch in text)
    return kept[:limit]


class AuditLog:
    """Writes and reads audit rows in the state store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.keep_rows = KEEP_ROWS
        self._written = 0
        create_tables(engine, TABLES)

    def record(self, actor: str, action: str, *, target: str | None = None,
               site: str | None = None, source: str | None = None, ok: bool = True,
               detail: dict[str, Any] | None = None) -> None:
        """Add one row; a failure to write is logged, never raised into the caller's action."""
        row = AuditRow(
            at_ns=time.time_ns(), actor=clean(actor, 64) or "?", action=clean(action, 64) or "?",
            target=clean(target, 200), site=clean(site, 64), source=clean(source, 64), ok=ok,
            detail=orjson.dumps(detail).decode() if detail else None)
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
            self._written += 1
            if self._written >= PRUNE_EVERY:
                self._written = 0
                self.prune()
        except Exception:
            log.exception("audit row %s by %s not written", action, actor)

    def prune(self) -> int:
        """Delete the oldest rows beyond ``keep_rows``; return how many went."""
        with Session(self.engine) as session, session.begin():
            newest = session.scalar(select(func.max(AuditRow.id)))
            if newest is None or newest <= self.keep_rows:
                return 0
            result = session.execute(delete(AuditRow).where(AuditRow.id <= newest - self.keep_rows))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def query(self, *, sites: Sequence[str] | None = None, action: str | None = None,
              actor: str | None = None, limit: int = 100,
              offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Newest rows first, with the total; ``sites`` limits to rows of those sites."""
        conditions: list[Any] = []
        if sites is not None:
            if not sites:
                return [], 0
            conditions.append(AuditRow.site.in_(list(sites)))
        if action is not None:
            conditions.append(or_(AuditRow.action == action,
                                  AuditRow.action.startswith(action + ".")))
        if actor is not None:
            conditions.append(AuditRow.actor == actor)
        with Session(self.engine) as session:
            total = session.scalar(select(func.count()).select_from(AuditRow).where(*conditions))
            rows = session.scalars(select(AuditRow).where(*conditions)
                                   .order_by(AuditRow.id.desc()).limit(limit).offset(offset))
            items = [_json(r) for r in rows]
        return items, int(total or 0)


def _json(row: AuditRow) -> dict[str, Any]:
    return {
        "id": row.id, "at": datetime.fromtimestamp(row.at_ns / 1e9, UTC).isoformat(),
        "actor": row.actor, "action": row.action, "target": row.target, "site": row.site,
        "source": row.source, "ok": row.ok,
        "detail": orjson.loads(row.detail) if row.detail else None,
    }
