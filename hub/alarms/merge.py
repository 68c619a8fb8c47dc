"""Merging an alarm changed by two hubs at once (cluster mode): officer fields three ways.

In cluster mode the hub owning a device's partition holds its open alarms in memory (rule side:
value, count, severity, the rule's own clear) while an officer may act on any hub (ack, clear,
assign, comment). Every write carries the row version it was based on (the row's
``updated_ns`` as last read or written); a write that finds the row changed, or a hub told of
a change, reloads the row and merges it here. The officer fields (acknowledged, cleared,
assignee) are merged three ways against the values last read or written (``Alarm.base``): a
field group one side changed and the other did not takes that side's value; when both changed,
the hub's own change wins, and a reopen (the rule side saw the condition again after a clear)
keeps the acknowledgement reset that goes with it. The state follows from the merged fields,
as the lifecycle defines it: acknowledged or not, cleared or not.
"""

from __future__ import annotations

from typing import Any

from hub.alarms.model import ACTIVE_ACK, ACTIVE_UNACK, CLEARED_ACK, CLEARED_UNACK, Alarm

OfficerFields = tuple[Any, ...]  # acked_ns, acked_by, cleared_ns, cleared_by, assignee
_ACK, _CLEAR, _ASSIGN = (0, 1), (2, 3), (4,)
# the fields only the owner of the device's partition changes (its rules do)
RULE_FIELDS = ("severity", "message", "message_zh", "value", "details", "last_seen_ns", "count",
               "model", "community", "site", "kind")


def officer_fields(alarm: Alarm) -> OfficerFields:
    """The fields an officer's action changes (the state follows from them)."""
    return (alarm.acked_ns, alarm.acked_by, alarm.cleared_ns, alarm.cleared_by, alarm.assignee)


def state_of(acked: bool, cleared: bool) -> str:
    """The lifecycle state of an alarm acknowledged or not, cleared or not."""
    if cleared:
        return CLEARED_ACK if acked else CLEARED_UNACK
    return ACTIVE_ACK if acked else ACTIVE_UNACK


def synced(alarm: Alarm, version: int) -> None:
    """Record that the row is now ``version`` with the alarm's officer fields (read, written)."""
    alarm.stored_ns = version
    alarm.base = officer_fields(alarm)


def merge(mine: Alarm, theirs: Alarm, *, owner: bool) -> None:
    """Merge the stored row ``theirs`` into ``mine`` (changed in memory since ``mine.base``).

    ``owner``: this hub holds the alarm for its rules (its rule fields win); otherwise the
    stored rule fields are taken (an officer action on a hub that does not own the device).
    """
    base = mine.base if mine.base is not None else officer_fields(theirs)
    have, stored = officer_fields(mine), officer_fields(theirs)
    out = list(have)
    reopened = base[2] is not None and have[2] is None  # the rule side reopened it
    for group in (_ACK, _CLEAR, _ASSIGN):
        if group is _ACK and reopened:
            continue  # a reopen resets the acknowledgement: an ack of the cleared one is older
        theirs_changed = any(stored[i] != base[i] for i in group)
        mine_changed = any(have[i] != base[i] for i in group)
        if theirs_changed and not mine_changed:
            for i in group:
                out[i] = stored[i]
    mine.acked_ns, mine.acked_by, mine.cleared_ns, mine.cleared_by, mine.assignee = out
    if not owner:
        for name in RULE_FIELDS:
            setattr(mine, name, getattr(theirs, name))
        mine.raised_ns = theirs.raised_ns
    mine.state = state_of(mine.acked_ns is not None, mine.cleared_ns is not None)
    mine.updated_ns = max(mine.updated_ns, theirs.updated_ns + 1)
    mine.stored_ns = theirs.updated_ns
    mine.base = stored
