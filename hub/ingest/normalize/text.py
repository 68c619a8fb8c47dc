"""Device-supplied text bounded at the boundary: length per column, control characters, NUL.

One rule per canonical name (docs/security.md, "What each boundary validates"):

- identifiers (every tag value, ids, categories, references): refused with ``text_too_long``
  when longer than the narrowest state-store column they are written to (the lengths are read
  from the table definitions), and with ``bad_text`` when they hold a character that is not
  printable (NUL, control characters, bidi overrides, zero-width marks);
- free text (``note``): control characters other than tab and newline are removed and the text
  is cut to ``FREE_TEXT_CHARS`` with the fact written at its end; each change is counted in
  ``hub_text_cleaned_total{field}``.

Invalid UTF-8 never reaches this: the JSON and CSV decoders refuse it (``bad_json``,
``not_text``). Device ids from the topic follow the identifier rule with ``DEVICE_ID_CHARS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from prometheus_client import Counter

from hub.db import DEVICE_ID_CHARS, column_chars
from hub.ingest.normalize.refused import Refused
from hub.patrol.tables import HazardRow, ScanRow

CLEANED = Counter("hub_text_cleaned_total",
                  "device free text stored with control characters removed or cut", ["field"])

FREE_TEXT_CHARS = 4000  # the API's limit on an officer's hazard note, for devices too
TAG_CHARS = 256  # an identifier that no state-store column holds (InfluxDB tags only)
FIELD_CHARS = 1024  # a text field that no state-store column holds

# canonical name -> the narrowest column it is written to
IDENTIFIER_CHARS: dict[str, int] = {
    "patroller_id": column_chars(ScanRow.patroller_id, HazardRow.reported_by),
    "tag_uid": column_chars(ScanRow.tag_uid, HazardRow.tag_uid),
    "category": column_chars(HazardRow.category),
    "photo_ref": column_chars(HazardRow.photo_ref),
}
FREE_TEXT: frozenset[str] = frozenset({"note"})

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069"
                      r"\ufeff]")

TextRule = Callable[[str], str]


def limit_of(name: str, is_tag: bool) -> int:
    """How many characters a device's value of ``name`` may have."""
    if name in FREE_TEXT:
        return FREE_TEXT_CHARS
    return IDENTIFIER_CHARS.get(name, TAG_CHARS if is_tag else FIELD_CHARS)


def identifier_problem(text: str, limit: int) -> tuple[str, str] | None:
    """(reason, why) when ``text`` is no acceptable identifier, else None."""
    if len(text) > limit:
        return "text_too_long", f"{len(text)} characters, at most {limit}"
    if not text.isprintable():
        bad = next(c for c in text if not c.isprintable())
        return "bad_text", f"holds {bad!a}, which is not printable"
    return None


def rule_for(name: str, is_tag: bool) -> TextRule:
    """The check or clean-up of one canonical name's text (raises Refused)."""
    limit = limit_of(name, is_tag)
    if name in FREE_TEXT and not is_tag:
        counter = CLEANED.labels(name)

        def free_text(text: str) -> str:
            if len(text) <= limit and text.isprintable():
                return text
            cleaned = _CONTROL.sub("", text)
            if len(cleaned) > limit:
                marker = f" [cut from {len(cleaned)} characters]"
                cleaned = cleaned[:limit - len(marker)] + marker
            if cleaned != text:
                counter.inc()
            return cleaned

        return free_text

    def identifier(text: str) -> str:
        if len(text) <= limit and text.isprintable():  # the usual case: no call out
            return text
        problem = identifier_problem(text, limit)
        if problem is not None:
            raise Refused(problem[0], f"{name}: {text[:40]!r}: {problem[1]}")
        return text

    return identifier


def check_device_id(device_id: str) -> None:
    """Refuse a topic's device id that no device-id column holds or that is not printable."""
    problem = identifier_problem(device_id, DEVICE_ID_CHARS)
    if problem is not None:
        raise Refused("bad_device_id", f"device id {device_id[:40]!r}: {problem[1]}")
