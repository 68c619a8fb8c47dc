"""Patrol alarms through the AlarmService, one open alarm per (device, rule) listing its items.

An item is one thing an alarm is about (a round with missed checkpoints, an unknown tag).
Raising an item opens or repeats the alarm (count + 1) with a message listing the open items;
resolving the last open item clears the alarm (e.g. with the note ``late upload``). Items are
kept in ``patrol_alarm_items`` so a correction after a restart still clears its alarm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.patrol.config import KIND, PatrolConfig
from hub.patrol.tables import AlarmItemRow
from hub.rules.render import render

MAX_LISTED = 8


class AlarmApi(Protocol):
    """What patrol alarms need of the AlarmService."""

    def raise_or_update(
        self, device_id: str, site: str, kind: str, rule: str, severity: str, value: Any,
        message: str, message_zh: str, at_ns: int, details: dict[str, Any] | None = None,
        *, model: str | None = None,
    ) -> str:
        """Open, reopen or repeat the alarm of (device, rule)."""
        ...

    def auto_clear(self, device_id: str, rule: str, at_ns: int,
                   note: str | None = None) -> str | None:
        """Clear the alarm of (device, rule)."""
        ...

    def open_alarms(self) -> list[tuple[str, str, str, str, str]]:
        """(device_id, site, kind, rule, severity) of every active alarm."""
        ...


def _listing(texts: list[str]) -> str:
    shown = texts[:MAX_LISTED]
    more = len(texts) - len(shown)
    return "; ".join(shown) + (f"; +{more}" if more > 0 else "")


class PatrolAlarms:
    """Raise and resolve patrol alarm items; thread-safe."""

    def __init__(self, alarms: AlarmApi, sessions: Callable[[], Session],
                 config: PatrolConfig) -> None:
        self.alarms = alarms
        self.sessions = sessions
        self.config = config
        self._lock = threading.RLock()

    def _active(self, device_id: str, rule: str) -> bool:
        return any(d == device_id and r == rule for d, _s, _k, r, _v in self.alarms.open_alarms())

    def raise_item(self, site: str, device_id: str, rule: str, key: str, text_en: str,
                   text_zh: str, at_ns: int, *, model: str | None = None,
                   extra: dict[str, Any] | None = None) -> None:
        """Add an item to the (device, rule) alarm and raise or repeat it; idempotent per key."""
        with self._lock, self.sessions() as session:
            active = self._active(device_id, rule)
            if not active:  # cleared by hand or never raised: old items are done with
                session.execute(update(AlarmItemRow).where(
                    AlarmItemRow.device_id == device_id, AlarmItemRow.rule == rule,
                    AlarmItemRow.open.is_(True)).values(open=False))
            row = session.scalars(select(AlarmItemRow).where(
                AlarmItemRow.device_id == device_id, AlarmItemRow.rule == rule,
                AlarmItemRow.item_key == key)).one_or_none()
            if row is not None and row.open and row.text_en == text_en and active:
                session.commit()
                return
            if row is None:
                row = AlarmItemRow(site=site, device_id=device_id, rule=rule, item_key=key,
                                   text_en=text_en, text_zh=text_zh, at_ns=at_ns, open=True)
                session.add(row)
            else:
                row.text_en, row.text_zh, row.at_ns, row.open = text_en, text_zh, at_ns, True
            session.flush()
            items = list(session.scalars(select(AlarmItemRow).where(
                AlarmItemRow.device_id == device_id, AlarmItemRow.rule == rule,
                AlarmItemRow.open.is_(True)).order_by(AlarmItemRow.at_ns, AlarmItemRow.id)))
            session.commit()
        self._raise(site, device_id, rule, items, at_ns, model, extra)

    def _raise(self, site: str, device_id: str, rule: str, items: list[AlarmItemRow],
               at_ns: int, model: str | None, extra: dict[str, Any] | None) -> None:
        spec = self.config.rules[rule]  # type: ignore[index]
        values = {"items": _listing([i.text_en for i in items]), **(extra or {})}
        values_zh = {"items": _listing([i.text_zh for i in items]), **(extra or {})}
        details = {"items": [i.item_key for i in items]}
        self.alarms.raise_or_update(
            device_id, site, KIND, rule, spec.severity, len(items),
            render(spec.message.en, values, len(items)),
            render(spec.message.zh, values_zh, len(items)), at_ns, details, model=model)

    def raise_single(self, site: str, device_id: str, rule: str, values: dict[str, Any],
                     value: Any, at_ns: int, *, model: str | None = None) -> None:
        """Raise an alarm whose message comes straight from its template (hazard_overdue)."""
        spec = self.config.rules[rule]  # type: ignore[index]
        self.alarms.raise_or_update(
            device_id, site, KIND, rule, spec.severity, value,
            render(spec.message.en, values, value), render(spec.message.zh, values, value),
            at_ns, {k: v for k, v in values.items() if isinstance(v, str | int | float)},
            model=model)

    def is_open(self, device_id: str, rule: str, key: str) -> bool:
        """True when the item is open."""
        with self.sessions() as session:
            row = session.scalars(select(AlarmItemRow).where(
                AlarmItemRow.device_id == device_id, AlarmItemRow.rule == rule,
                AlarmItemRow.item_key == key)).one_or_none()
            return row is not None and row.open

    def resolve_item(self, device_id: str, rule: str, key: str, at_ns: int, note: str) -> None:
        """Resolve an item; when none is left open the alarm clears with ``note``."""
        with self._lock, self.sessions() as session:
            row = session.scalars(select(AlarmItemRow).where(
                AlarmItemRow.device_id == device_id, AlarmItemRow.rule == rule,
                AlarmItemRow.item_key == key)).one_or_none()
            if row is None or not row.open:
                return
            row.open = False
            session.flush()
            left = session.scalars(select(AlarmItemRow.id).where(
                AlarmItemRow.device_id == device_id, AlarmItemRow.rule == rule,
                AlarmItemRow.open.is_(True))).first()
            session.commit()
        if left is None:
            self.alarms.auto_clear(device_id, rule, at_ns, note)

    def update_item(self, device_id: str, rule: str, key: str, text_en: str,
                    text_zh: str) -> None:
        """Change an open item's text (a partial correction) without repeating the alarm."""
        with self._lock, self.sessions() as session:
            session.execute(update(AlarmItemRow).where(
                AlarmItemRow.device_id == device_id, AlarmItemRow.rule == rule,
                AlarmItemRow.item_key == key).values(text_en=text_en, text_zh=text_zh))
            session.commit()

    def clear(self, device_id: str, rule: str, at_ns: int, note: str) -> None:
        """Clear the (device, rule) alarm and resolve all its items."""
        with self._lock, self.sessions() as session:
            session.execute(update(AlarmItemRow).where(
                AlarmItemRow.device_id == device_id, AlarmItemRow.rule == rule,
                AlarmItemRow.open.is_(True)).values(open=False))
            session.commit()
        self.alarms.auto_clear(device_id, rule, at_ns, note)
