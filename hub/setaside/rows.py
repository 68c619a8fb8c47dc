"""Write a batch of rows; a row the database refuses is set aside with its reason.

``write_rows(table, rows, write, on_bad)`` calls ``write(rows)``, which writes them in one
transaction. When the database refuses the batch for its data (a value too long for a column,
a NUL, a broken constraint) the batch is split in halves and each half written on its own,
down to single rows: a row that fails alone is set aside (logged, counted in
``hub_rows_set_aside_total{table}``, handed to ``on_bad``, where the hub records a refusal
when the row came from a device). Its neighbours are written and nothing is put back at the
front of a queue, so one bad row never blocks the rows behind it. A failure that is not about
the data (the database is down) is raised unchanged: the caller keeps the batch for later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prometheus_client import Counter
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from hub.model import Refusal

log = logging.getLogger(__name__)

SET_ASIDE = Counter("hub_rows_set_aside_total",
                    "state-store rows the database refused, set aside with their reason",
                    ["table"])

_PEP249_ROW_FAULTS = frozenset({"DataError", "IntegrityError"})
Row = TypeVar("Row")
OnBad = Callable[[str, Any, str], None]  # (table, row, reason)


def is_row_fault(exc: BaseException) -> bool:
    """True when the database refused the data itself (retrying the same rows cannot help)."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True  # a parameter the driver could not send (e.g. a NUL in a string)
    if any(k.__name__ in _PEP249_ROW_FAULTS for k in type(exc).__mro__):
        return True  # a driver's own error, from a raw DBAPI cursor (PEP 249 names)
    return isinstance(exc, ValueError | TypeError | UnicodeError)


def reason_of(exc: BaseException) -> str:
    """A one-line reason for a refused row (the driver's message, without the SQL)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{type(orig or exc).__name__}: {text[0] if text else ''}"[:500]


def write_rows(table: str, rows: Sequence[Row], write: Callable[[Sequence[Row]], None],
               on_bad: OnBad | None = None) -> list[Row]:
    """Write ``rows`` with ``write``; return the rows set aside (empty when all went in)."""
    if not rows:
        return []
    try:
        write(rows)
        return []
    except Exception as exc:
        if not is_row_fault(exc):
            raise
        if len(rows) == 1:
            reason = reason_of(exc)
            SET_ASIDE.labels(table).inc()
            log.error("%s: a row was set aside: %s (%r)", table, reason, _short(rows[0]))
            if on_bad is not None:
                try:
                    on_bad(table, rows[0], reason)
                except Exception:  # recording the fault must not lose the other rows
                    log.exception("%s: recording a set-aside row failed", table)
            return [rows[0]]
    middle = len(rows) // 2
    return (write_rows(table, rows[:middle], write, on_bad)
            + write_rows(table, rows[middle:], write, on_bad))


def fit_text(value: Any, limit: int | None) -> Any:
    """A string without NULs and at most ``limit`` characters (other values unchanged)."""
    if type(value) is not str:
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if limit is not None and len(value) > limit:
        value = value[:limit]
    return value


def _short(row: Any) -> str:
    text = repr(row)
    return text if len(text) <= 300 else text[:300] + "..."


def refusal_of(table: str, row: Any, reason: str, now_ns: int) -> Refusal:
    """The refusal that tells an operator a device's row was set aside (``store_refused``)."""
    def get(key: str) -> Any:
        return row.get(key) if isinstance(row, dict) else getattr(row, key, None)

    device_id, model = get("device_id"), get("model")
    return Refusal(topic=f"(state store: {table})", received_ns=now_ns, reason="store_refused",
                   detail=f"the state store refused a {table} row: {reason}",
                   head=_short(row).encode("utf-8", "backslashreplace")[:64],
                   device_id=device_id if isinstance(device_id, str) else None,
                   model=model if isinstance(model, str) else None)
