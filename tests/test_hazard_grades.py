"""Grades, deadlines as data, the department register and hostile hazard input (#14: 3, 9).

Every test runs on SQLite and on PostgreSQL (``state_url``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from hub.model import InboundMessage, Refusal
from hub.patrol.departments import UnknownDepartment
from hub.patrol.hazards import InvalidHazardTransition
from tests.support.hazard_rig import HazardRig, local

FRIDAY = date(2026, 11, 20)


@pytest.fixture
def rig(state_url: str) -> Iterator[HazardRig]:
    made = HazardRig(state_url, local(FRIDAY, "08:00"))
    yield made
    made.close()


def test_grade_from_payload_sets_the_deadline(rig: HazardRig) -> None:
    rig.hazard(local(FRIDAY, "08:04"), grade="major", category="illegal_gas_storage")
    rig.hazard(local(FRIDAY, "08:05"), category="illegal_gas_storage")
    rig.hazard(local(FRIDAY, "08:06"), grade="catastrophic")
    by_time = {h["reported_at"]: h for h in rig.patrol.hazards.search(site="fuping")}
    major, general, odd = (by_time[f"2026-11-20T00:0{m}:00Z"] for m in (4, 5, 6))
    assert (major["grade"], major["due_at"]) == ("major", "2026-11-20T04:04:00Z")  # 4 h
    assert (general["grade"], general["due_at"]) == ("general", "2026-11-21T00:05:00Z")
    assert odd["grade"] == "general"
    history = rig.patrol.hazards.get(odd["id"])["history"]
    assert "grade 'catastrophic' unknown: general" in history[0]["note"]


def test_working_hours_deadline_and_grade_change_with_history(rig: HazardRig) -> None:
    rig.tick(local(FRIDAY, "16:30"))
    made = rig.patrol.hazards.create("fuping", "emergency_light_fault", "exit sign dark",
                                     None, None, "ops")
    assert made is not None
    # 18 working hours from Friday 16:30, 08:30-17:30 Mon-Fri: 1 + 9 + 8 -> Tuesday 16:30
    assert made["due_at"] == "2026-11-24T08:30:00Z"
    changed = rig.patrol.hazards.set_grade(made["id"], "major", "chief", "hospital exit")
    # 9 working hours: 1 on Friday, 8 on Monday -> Monday 16:30 local
    assert (changed["grade"], changed["due_at"]) == ("major", "2026-11-23T08:30:00Z")
    history = rig.patrol.hazards.get(made["id"])["history"]
    assert [(h["action"], h["actor"], h["note"]) for h in history][1] == (
        "grade", "chief", "general -> major: hospital exit")
    with pytest.raises(ValueError, match="unknown grade"):
        rig.patrol.hazards.set_grade(made["id"], "huge", "chief")


def test_dispatch_names_a_registered_department_and_hands_over(rig: HazardRig) -> None:
    rig.hazard(local(FRIDAY, "08:04"))
    hz = rig.patrol.hazards.search(site="fuping")[0]
    with pytest.raises(UnknownDepartment, match="fp-fire"):
        rig.patrol.hazards.act(hz["id"], "dispatch", "ops", department="Ghostbusters")
    done = rig.patrol.hazards.act(hz["id"], "dispatch", "ops", department="街道消防所")
    assert (done["department"], done["department_name"]) == ("fp-fire", "街道消防所")
    message = rig.handovers[-1]
    assert (message.event, message.channel, message.department.phone) == (  # type: ignore[union-attr]
        "dispatch", "fp-fire-duty", "0736-7221119")
    assert hz["id"] in message.text_zh and "交办" in message.text_zh
    assert [h["id"] for h in rig.patrol.hazards.search(department="fp-fire")] == [hz["id"]]


def test_four_eyes_rectifier_cannot_verify(rig: HazardRig) -> None:
    rig.hazard(local(FRIDAY, "08:04"))
    hz = rig.patrol.hazards.search(site="fuping")[0]
    rig.patrol.hazards.act(hz["id"], "dispatch", "ops", department="fp-fire")
    rig.patrol.hazards.act(hz["id"], "rectify", "li", note="cleared")
    with pytest.raises(InvalidHazardTransition, match="four eyes"):
        rig.patrol.hazards.act(hz["id"], "verify", "li")
    assert rig.patrol.hazards.act(hz["id"], "verify", "chief")["status"] == "verified"


def test_unregistered_reader_at_a_listed_checkpoint_reports_to_its_site(rig: HazardRig) -> None:
    """#14 item 3: a replacement reader no site lists; the tag tells the site."""
    rig.hazard(local(FRIDAY, "08:04"), reader="FP-R99-NEW")
    found = rig.patrol.hazards.search(site="fuping")
    assert [(h["device_id"], h["checkpoint_id"]) for h in found] == [("FP-R99-NEW", "FP-CP026")]
    rig.hazard(local(FRIDAY, "08:05"), reader="FP-R98-NEW", tag="0000000000BEEF")
    assert len(rig.patrol.hazards.search()) == 1
    assert [(d, r) for d, r, _ in rig.refused] == [("FP-R98-NEW", "hazard_unknown_site")]
    assert "0000000000BEEF" in rig.refused[0][2]


def test_a_flood_of_hazards_is_rate_limited_per_reader_and_checkpoint(rig: HazardRig) -> None:
    """#14 item 9: limits from the data; beyond them refused with the limit in the reason."""
    limits = rig.patrol.config.hazard_limits
    start = local(FRIDAY, "08:00")
    for i in range(limits.per_checkpoint.count + 5):  # one checkpoint, one reader
        rig.hazard(start + timedelta(seconds=i))
    assert len(rig.patrol.hazards.search()) == limits.per_checkpoint.count
    assert {r for _, r, _ in rig.refused} == {"hazard_rate_limited"}
    assert f"{limits.per_checkpoint.count} per" in rig.refused[0][2]
    tags = [c.tag_uid for c in rig.sites.sites["fuping"].checkpoints]
    rig.refused.clear()
    for i in range(limits.per_reader.count + 5):  # one reader, many checkpoints
        rig.hazard(start + timedelta(minutes=1, seconds=i), reader="FP-R04",
                   tag=tags[i % len(tags)])
    assert len([h for h in rig.patrol.hazards.search() if h["device_id"] == "FP-R04"]) == \
        limits.per_reader.count
    assert "reader FP-R04" in rig.refused[-1][2]
    # an hour later the window has moved on
    rig.hazard(start + timedelta(hours=1, minutes=2), reader="FP-R04", tag=tags[0])
    assert len([h for h in rig.patrol.hazards.search() if h["device_id"] == "FP-R04"]) == \
        limits.per_reader.count + 1


def test_an_old_hazard_is_not_overdue_at_once(rig: HazardRig) -> None:
    """#14 item 9: a hazard uploaded ten days late gets its full time from its arrival."""
    rig.tick(local(FRIDAY + timedelta(days=10), "09:00"))
    rig.hazard(local(FRIDAY, "08:04"))
    hz = rig.patrol.hazards.search()[0]
    assert hz["reported_at"] == "2026-11-20T00:04:00Z" and hz["overdue"] is False
    assert hz["due_at"] == "2026-12-01T01:00:00Z"
    rig.tick(local(FRIDAY + timedelta(days=10), "10:00"))
    assert rig.alarm(hz["id"], "hazard_overdue") is None
    assert "reported late" in rig.patrol.hazards.get(hz["id"])["history"][0]["note"]


def _refusal(rig: HazardRig, reader: str = "FP-R03", **fields: Any) -> Refusal:
    """A hazard message the boundary refuses (docs/security.md: one rule per field)."""
    body = {"reader": reader, "patroller": "FP-P017", "tag_uid": "04D2216EE729C5",
            "ts": local(FRIDAY, "08:04").isoformat(), "category": "fire_exit_blocked",
            "note": "blocked", **fields}
    result = rig.normalizer.process(InboundMessage(
        f"patrol/{reader}/hazard", json.dumps(body).encode(), 1, False, rig.now))
    assert isinstance(result, Refusal), result
    return result


def test_long_and_control_strings_are_refused_or_cleaned_at_the_boundary(
        rig: HazardRig) -> None:
    """Identifiers that do not fit their column are refused with the limit; free text is
    cleaned (the one rule per field of docs/security.md); nothing is stored cut silently."""
    too_long = _refusal(rig, category="x" * 100)
    assert too_long.reason == "text_too_long" and "64" in too_long.detail
    photo = _refusal(rig, photo_ref="p" * 500)
    assert photo.reason == "text_too_long" and "400" in photo.detail
    assert rig.patrol.hazards.search() == []
    rig.hazard(local(FRIDAY, "08:04"), note="a\x00b")
    assert [h["note"] for h in rig.patrol.hazards.search()] == ["ab"]


def test_a_long_reader_id_is_refused_with_the_limit(rig: HazardRig) -> None:
    """A 300-character reader id is refused at the boundary, with the limit; none stored."""
    refused = _refusal(rig, reader="R" * 300)
    assert refused.reason == "bad_device_id" and "128" in refused.detail
    assert rig.patrol.hazards.search() == []


def test_a_store_from_before_grades_gains_the_new_columns(state_url: str) -> None:
    """A hazards table an older hub made gets grade, ladder and rectifier columns on start."""
    from sqlalchemy import text

    from hub.db import make_engine

    engine = make_engine(state_url)
    with engine.begin() as conn:
        conn.execute(text(
            "CREATE TABLE hazards (id VARCHAR(40) PRIMARY KEY, site VARCHAR(64), "
            "category VARCHAR(64), status VARCHAR(16), note TEXT, photo_ref VARCHAR(400), "
            "checkpoint_id VARCHAR(64), tag_uid VARCHAR(64), reported_by VARCHAR(64), "
            "device_id VARCHAR(128), reported_ns BIGINT, department VARCHAR(200), "
            "due_ns BIGINT, rectified_ns BIGINT, rectify_note TEXT, evidence_ref VARCHAR(400), "
            "verified_ns BIGINT, verified_by VARCHAR(64), dedupe_key VARCHAR(300) UNIQUE, "
            "overdue_alarmed BOOLEAN)"))
        conn.execute(text(
            "INSERT INTO hazards (id, site, category, status, note, reported_by, reported_ns, "
            "due_ns, overdue_alarmed) VALUES ('HZ-OLD', 'fuping', 'other', 'dispatched', "
            "'from before', 'ops', 1795000000000000000, 1795100000000000000, false)"))
    engine.dispose()
    rig = HazardRig(state_url, local(FRIDAY, "08:00"))
    try:
        old = rig.patrol.hazards.get("HZ-OLD")
        assert (old["grade"], old["supervised"], old["rung"]) == ("general", False, None)
        done = rig.patrol.hazards.act("HZ-OLD", "rectify", "li", note="fixed")
        assert done["rectified_by"] == "li"
    finally:
        rig.close()
