"""Cloud patrol end to end: simulated Fuping days through the real broker into ``hub run``.

The hub runs with HUB_PATROL_CLOCK=device: its patrol clock is the newest device time of the
site, so a whole simulated day can be published in a few seconds (backfill, device times in the
past) and the rounds, alarms and KPIs come out as if it had been lived.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from hub.sites import load_sites
from simulators.fleet import Fleet
from simulators.scenario import load_scenario
from tests.support.hubproc import HubProcess
from tests.support.mqtt_util import publish_many

ROOT = Path(__file__).resolve().parent.parent
SITES = ROOT / "sites"
TZ = ZoneInfo("Asia/Shanghai")
TOKENS = "ops:officer:t-officer,chief:officer:t-chief,wall:viewer:t-viewer"
OFFICER = {"Authorization": "Bearer t-officer"}
CHIEF = {"Authorization": "Bearer t-chief"}
VIEWER = {"Authorization": "Bearer t-viewer"}
PATROL_RULES = {"round_not_started", "checkpoint_missed", "out_of_order", "unknown_tag",
                "tag_moved", "unassigned_route", "hazard_overdue"}
DAY = date(2026, 11, 20)
# A day whose inspectors all start within 15 minutes of their windows: the only alarms are
# the ones the scenario's faults cause (other seeds add genuine round_not_started warnings).
SEED = 160

Message = tuple[str, bytes, int, bool]


@pytest.fixture
def hub(tmp_path: Path, mosquitto: Any, influx_db: Any) -> Any:
    proc = HubProcess(tmp_path, mqtt_url=mosquitto.url, influx_url=influx_db.url,
                      influx_db=influx_db.name, sites_dir=SITES, api_tokens=TOKENS,
                      patrol_clock="device")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def get(hub: HubProcess, path: str, **params: Any) -> Any:
    response = httpx.get(f"{hub.api}{path}", params=params, headers=VIEWER, timeout=10)
    response.raise_for_status()
    return response.json()


def wait_for(what: Callable[[], Any], hub: HubProcess, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = what()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out (last: {result!r})\n{hub.log()}")


def drained(hub: HubProcess, count: int) -> None:
    """Wait until the hub has handled ``count`` more messages than before."""
    wait_for(lambda: hub.health()["pipeline"]["processed"] >= count, hub, timeout=30)
    # two completed ticks later the patrol timers have run and the alarm service has flushed
    ticks = hub.health()["pipeline"]["ticks"]
    wait_for(lambda: hub.health()["pipeline"]["ticks"] >= ticks + 2, hub, timeout=30)


def alarms(hub: HubProcess, **params: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = get(hub, "/api/alarms", limit=1000, **params)
    return result


def at(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, datetime.strptime(hhmm, "%H:%M").time(), tzinfo=TZ)


def scan(reader: str, tag: str, patroller: str, ts: datetime,
         pos: tuple[float, float] = (29.04, 111.69)) -> Message:
    body = {"reader": reader, "tag_uid": tag, "patroller": patroller,
            "ts": ts.isoformat(), "lat": pos[0], "lon": pos[1], "battery_pct": 80}
    return (f"patrol/{reader}/scan", json.dumps(body).encode(), 1, False)


# ---------------------------------------------------------------------- a full day


def test_full_day_of_fuping_with_scenario_faults(hub: HubProcess, mosquitto: Any) -> None:
    scenario = load_scenario("patrol_faults")
    start = at(DAY, "07:55")
    fleet = Fleet(SITES, seed=SEED, start=start, scenario=scenario, only_sites=["fuping"])
    sim = [m for m in fleet.events_between(start, start + timedelta(hours=23, minutes=50))
           if m.action != "will"]
    messages: list[Message] = [(m.topic, m.payload, m.qos, m.retain) for m in sim]
    # QoS 1 redelivery and re-uploads: the faults' scans and the hazard report again
    again = [(m.topic, m.payload, m.qos, m.retain) for m in sim if m.fault in (
        "unknown_tag", "moved_tag", "hazard_report", "late_upload")]
    publish_many(mosquitto.url, messages + again)
    drained(hub, len(messages) + len(again))

    # exactly the scenario's alarms: the patrol ones and the reader battery one
    raised = alarms(hub, site="fuping")
    expected = {(e.device, e.rule, e.severity) for e in scenario.expect_alarms}
    assert {(a["device_id"], a["rule"], a["severity"]) for a in raised} == expected
    patrol = {(a["device_id"], a["rule"]): a for a in raised if a["rule"] in PATROL_RULES}
    assert {k for k in patrol} == {(e.device, e.rule) for e in scenario.expect_alarms
                                   if e.rule in PATROL_RULES}
    assert all(a["kind"] == "patrol" for a in patrol.values())
    missed_r09 = patrol[("FP-R09", "checkpoint_missed")]
    assert missed_r09["count"] == 3 and missed_r09["message"].count("all 11 checkpoints") == 3
    assert patrol[("FP-R09", "round_not_started")]["count"] == 3
    assert "FP-CP009" in patrol[("FP-R01", "checkpoint_missed")]["message"]
    assert patrol[("FP-R01", "checkpoint_missed")]["count"] == 1
    assert patrol[("FP-R02", "unknown_tag")]["count"] == 1  # the re-sent scan did not count
    assert "04DEADBEEF0001" in patrol[("FP-R02", "unknown_tag")]["message"]
    assert patrol[("FP-R06", "tag_moved")]["count"] == 1
    assert all(a["state"] == "active_unack" for a in patrol.values())

    # round states of the day
    rounds = {r["id"]: r for r in get(hub, "/api/patrol/rounds", site="fuping",
                                      date=DAY.isoformat())}
    assert len(rounds) == 27
    special = {
        "fuping:FP-RT01:2026-11-20:08:00": "incomplete",
        "fuping:FP-RT09:2026-11-20:09:00": "missed",
        "fuping:FP-RT09:2026-11-20:15:00": "missed",
        "fuping:FP-RT09:2026-11-20:20:00": "missed",
    }
    assert {k: r["state"] for k, r in rounds.items()} == {
        k: special.get(k, "completed") for k in rounds}
    skipped = rounds["fuping:FP-RT01:2026-11-20:08:00"]
    assert skipped["done"] == 11 and skipped["total"] == 12
    assert [c["checkpoint_id"] for c in skipped["checkpoints"] if c["status"] == "missed"] == [
        "FP-CP009"]
    assert rounds["fuping:FP-RT03:2026-11-20:08:30"]["out_of_order"] is True
    assert [r["id"] for r in rounds.values() if r["out_of_order"]] == [
        "fuping:FP-RT03:2026-11-20:08:30"]
    # the 07:30 round was already running when the day started at 07:55: completed, not on time
    assert rounds["fuping:FP-RT06:2026-11-20:07:30"]["on_time"] is False
    on_time = [r["id"] for r in rounds.values() if r["on_time"]]
    assert len(on_time) == 22

    # yesterday's 20:30 round of FP-RT04, uploaded 12 hours late: counted, flagged, no alarm
    site = load_sites(SITES).sites["fuping"]
    tags = {c.tag_uid: c.id for c in site.checkpoints}
    window = (at(DAY - timedelta(days=1), "20:30"), at(DAY - timedelta(days=1), "22:00"))
    uploaded = {tags[json.loads(m.payload)["tag_uid"]] for m in sim if m.fault == "late_upload"
                and window[0] <= m.device_time < window[1]}
    yesterday = {r["id"]: r for r in get(hub, "/api/patrol/rounds", site="fuping",
                                         date=(DAY - timedelta(days=1)).isoformat())}
    late = yesterday["fuping:FP-RT04:2026-11-19:20:30"]
    assert late["state"] == "incomplete" and late["done"] == len(uploaded) >= 8
    scanned = [c for c in late["checkpoints"] if c["status"] == "scanned"]
    assert {c["checkpoint_id"] for c in scanned} == uploaded
    assert all(c["late_upload"] and c["late_s"] > 9 * 3600 for c in scanned)
    assert all(r["state"] == "missed" and not r["watched"] for k, r in yesterday.items()
               if k != late["id"])

    # KPIs of the day
    hazards_sent = {m.payload for m in sim if m.topic.endswith("/hazard")}
    kpi = get(hub, "/api/kpi", site="fuping", **{"from": DAY.isoformat(), "to": DAY.isoformat()})
    assert kpi["rounds"] == {"completed": 23, "incomplete": 1, "missed": 3}
    assert kpi["checkpoint_visits"] == {"done": 321 - 1 - 33, "scheduled": 321}
    assert kpi["patrol_coverage"] == pytest.approx(287 / 321, abs=1e-4)
    assert kpi["on_time_rate"] == pytest.approx(22 / 27, abs=1e-4)
    assert kpi["hazards_found"] == len(hazards_sent) > 0
    assert kpi["rectification_rate"] == 0 and kpi["overdue"] == 0
    hazards = get(hub, "/api/hazards", site="fuping")
    assert len(hazards) == len(hazards_sent)
    reported = [h for h in hazards if h["device_id"] == "FP-R07"
                and h["note"] == "安全出口被货物堵塞"]
    assert len(reported) == 1 and reported[0]["category"] == "fire_exit_blocked"


# ---------------------------------------------------------------------- late uploads


RT05 = ["FP-CP050", "FP-CP055", "FP-CP057", "FP-CP056", "FP-CP051", "FP-CP058", "FP-CP060",
        "FP-CP053", "FP-CP052", "FP-CP049", "FP-CP059", "FP-CP054"]
RT07 = ["FP-CP076", "FP-CP084", "FP-CP075", "FP-CP082", "FP-CP074", "FP-CP079", "FP-CP081",
        "FP-CP078", "FP-CP080", "FP-CP073", "FP-CP077", "FP-CP083"]


def test_late_upload_before_and_after_the_window_closes(hub: HubProcess,
                                                        mosquitto: Any) -> None:
    day = DAY + timedelta(days=1)
    site = load_sites(SITES).sites["fuping"]
    cps = {c.id: c for c in site.checkpoints}

    def walk(reader: str, patroller: str, route: list[str], first: str) -> list[Message]:
        t0 = at(day, first)
        return [scan(reader, cps[cp].tag_uid, patroller, t0 + timedelta(minutes=5 * i),
                     (cps[cp].lat or 0, cps[cp].lon or 0)) for i, cp in enumerate(route)]

    r05 = walk("FP-R05", "FP-P025", RT05, "08:02")  # buffered 3..5, sent before the close
    r07 = walk("FP-R07", "FP-P037", RT07, "08:03")  # 6th held back until after the close
    held = r07.pop(5)
    live = sorted([*r05[:3], *r05[6:], *r07], key=lambda m: json.loads(m[1])["ts"])
    fence = scan("FP-R02", cps["FP-CP016"].tag_uid, "FP-P007", at(day, "09:40"))
    first = [*live, *r05[3:6], fence]
    publish_many(mosquitto.url, first)
    drained(hub, len(first))

    rounds = {r["route_id"]: r for r in get(hub, "/api/patrol/rounds", site="fuping",
                                            date=day.isoformat()) if r["start"] == "08:00"}
    before = rounds["FP-RT05"]
    assert before["state"] == "completed" and before["out_of_order"] is False
    buffered = before["checkpoints"][3:6]
    assert all(c["late_s"] > 0 and not c["late_upload"] for c in buffered)
    assert not [a for a in alarms(hub, device_id="FP-R05") if a["rule"] in PATROL_RULES]

    after = rounds["FP-RT07"]
    assert after["state"] == "incomplete" and after["done"] == 11
    missed = wait_for(lambda: [a for a in alarms(hub, device_id="FP-R07")
                               if a["rule"] == "checkpoint_missed"], hub)[0]
    assert missed["state"] == "active_unack" and "FP-CP079" in missed["message"]

    publish_many(mosquitto.url, [held, held])  # the buffer arrives (twice: QoS 1 redelivery)
    drained(hub, len(first) + 2)
    cleared = wait_for(lambda: [a for a in alarms(hub, device_id="FP-R07")
                                if a["rule"] == "checkpoint_missed"
                                and a["state"] == "cleared_unack"], hub)[0]
    assert cleared["id"] == missed["id"]
    history = get(hub, f"/api/alarms/{cleared['id']}")["history"]
    assert history[-1]["note"] == "late upload"
    corrected = get(hub, "/api/patrol/rounds", site="fuping", date=day.isoformat(),
                    route="FP-RT07")[0]
    assert corrected["state"] == "completed" and corrected["done"] == 12
    cp = corrected["checkpoints"][5]
    assert cp["checkpoint_id"] == "FP-CP079" and cp["late_upload"] is True
    assert cp["scanned_at"] == "2026-11-21T00:28:00Z" and cp["late_s"] > 3600
    kpi = get(hub, "/api/kpi", site="fuping", **{"from": day.isoformat()})
    assert kpi["to"] == day.isoformat()


# ---------------------------------------------------------------------- hazards


def test_hazard_lifecycle_roles_overdue_kpi_and_reports(hub: HubProcess, mosquitto: Any,
                                                        tmp_path: Path) -> None:
    day = DAY + timedelta(days=2)
    tag = "04D2216EE729C5"  # FP-CP026
    found = {"reader": "FP-R03", "patroller": "FP-P017", "tag_uid": tag,
             "ts": at(day, "08:04").isoformat(), "category": "fire_exit_blocked",
             "note": "stairwell B blocked by goods", "photo_ref": "img/0804-40.jpg"}
    report = ("patrol/FP-R03/hazard", json.dumps(found).encode(), 1, False)
    publish_many(mosquitto.url, [report, report])
    drained(hub, 2)
    listed = wait_for(lambda: get(hub, "/api/hazards", site="fuping"), hub)
    assert len(listed) == 1  # the re-sent message is the same hazard
    hz = listed[0]
    assert (hz["status"], hz["checkpoint_id"], hz["reported_by"], hz["device_id"]) == (
        "reported", "FP-CP026", "FP-P017", "FP-R03")
    assert hz["reported_at"] == "2026-11-22T00:04:00Z" and hz["due_at"] == "2026-11-23T00:04:00Z"
    base = f"{hub.api}/api/hazards"

    def post(path: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> Any:
        return httpx.post(f"{base}{path}", json=body, headers=headers, timeout=10)

    assert post(f"/{hz['id']}/dispatch", VIEWER, {"department": "消防"}).status_code == 403
    assert post(f"/{hz['id']}/verify", OFFICER, {}).status_code == 409
    assert post("/HZ-NOPE/dispatch", OFFICER, {"department": "x"}).status_code == 404
    response = post(f"/{hz['id']}/dispatch", OFFICER, {"department": "街道消防所"})
    assert response.status_code == 200 and response.json()["status"] == "dispatched"

    # an officer's own report (seen on camera); viewers cannot report
    camera = {"site": "fuping", "category": "road_hazard", "note": "井盖缺失 manhole open"}
    assert post("", VIEWER, camera).status_code == 403
    response = post("", OFFICER, camera)
    assert response.status_code == 201
    other = response.json()
    assert other["reported_by"] == "ops" and other["device_id"] is None

    # a day later (device clock) the first one is overdue: major alarm on the hazard's id
    later = scan("FP-R03", tag, "FP-P017", at(day + timedelta(days=1), "09:00"))
    publish_many(mosquitto.url, [later])
    overdue = wait_for(lambda: [a for a in alarms(hub, device_id=hz["id"])
                                if a["rule"] == "hazard_overdue"], hub)[0]
    assert overdue["severity"] == "major" and overdue["kind"] == "patrol"
    assert [h["id"] for h in get(hub, "/api/hazards", overdue="true")] == [hz["id"]]

    response = post(f"/{hz['id']}/rectify", OFFICER, {"note": "goods removed",
                                                     "evidence_ref": "img/fix.jpg"})
    assert response.status_code == 200 and response.json()["overdue"] is False
    wait_for(lambda: alarms(hub, device_id=hz["id"])[0]["state"] == "cleared_unack", hub)
    response = post(f"/{hz['id']}/verify", OFFICER, {"note": "re-checked"})
    assert response.status_code == 409 and "four eyes" in response.json()["detail"]["message"]
    response = post(f"/{hz['id']}/verify", CHIEF, {"note": "re-checked"})
    assert response.status_code == 200
    assert response.json()["status"] == "verified" and response.json()["verified_by"] == "chief"
    assert post(f"/{other['id']}/rectify", OFFICER, {"note": "x"}).status_code == 409
    post(f"/{other['id']}/dispatch", OFFICER, {"department": "交警"})
    post(f"/{other['id']}/rectify", OFFICER, {"note": "covered"})
    response = post(f"/{other['id']}/reopen", OFFICER, {"note": "cover loose"})
    assert response.json()["status"] == "reopened"

    detail = get(hub, f"/api/hazards/{hz['id']}")
    assert [(h["action"], h["actor"], h["to_status"]) for h in detail["history"]] == [
        ("report", "FP-P017", "reported"), ("dispatch", "ops", "dispatched"),
        ("escalate", "hub", "dispatched"), ("escalate", "hub", "dispatched"),
        ("rectify", "ops", "rectified"), ("verify", "chief", "verified")]
    assert [h.get("rung") for h in detail["history"]][2:4] == ["reminder", "overdue"]

    kpi = get(hub, "/api/kpi", site="fuping", **{"from": day.isoformat(),
                                                 "to": day.isoformat()})
    assert kpi["hazards_found"] == 2
    assert kpi["rectification_rate"] == 0.5 and kpi["verified_rate"] == 0.5
    assert kpi["median_time_to_rectify_h"] == pytest.approx(24 + 56 / 60, abs=0.02)

    # the daily report: HTML and XLSX over HTTP, XLSX from the CLI
    html = httpx.get(f"{hub.api}/api/reports/daily", headers=VIEWER, timeout=10,
                     params={"site": "fuping", "date": day.isoformat(), "format": "html"})
    assert html.status_code == 200 and hz["id"] in html.text and "巡查日报" in html.text
    xlsx = httpx.get(f"{hub.api}/api/reports/daily", headers=VIEWER, timeout=10,
                     params={"site": "fuping", "date": day.isoformat(), "format": "xlsx"})
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    import io
    import os
    import subprocess
    import sys

    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames[0].startswith("汇总") and "新增隐患 Opened" in book.sheetnames
    opened = [row[0] for row in book["新增隐患 Opened"].iter_rows(min_row=2, values_only=True)]
    assert set(opened) == {hz["id"], other["id"]}
    out = tmp_path / "daily.xlsx"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(hub.settings)
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "report", "daily", "--site", "fuping", "--date",
         day.isoformat(), "--format", "xlsx", "--out", str(out)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    cli_book = load_workbook(out)
    assert [r[0] for r in cli_book["新增隐患 Opened"].iter_rows(min_row=2, values_only=True)
            ] == [row for row in opened]


def test_hazard_from_an_unregistered_reader_goes_to_its_site_or_is_refused(
        hub: HubProcess, mosquitto: Any) -> None:
    """#14 item 3 through the real hub: the checkpoint's tag tells the site, else a refusal."""
    day = DAY + timedelta(days=3)
    base = {"reader": "FP-R99-SPARE", "patroller": "FP-P017", "category": "fire_exit_blocked",
            "note": "replacement reader, not yet registered"}
    known = {**base, "tag_uid": "04D2216EE729C5", "ts": at(day, "09:00").isoformat()}
    lost = {**base, "tag_uid": "04000000000BAD", "ts": at(day, "09:01").isoformat()}
    publish_many(mosquitto.url, [
        ("patrol/FP-R99-SPARE/hazard", json.dumps(body).encode(), 1, False)
        for body in (known, lost)])
    found = wait_for(lambda: [h for h in get(hub, "/api/hazards", site="fuping")
                              if h["device_id"] == "FP-R99-SPARE"], hub)
    assert [(h["checkpoint_id"], h["site"]) for h in found] == [("FP-CP026", "fuping")]
    refused = wait_for(lambda: get(hub, "/api/refusals", reason="hazard_unknown_site")["items"],
                       hub)
    assert refused[0]["device_id"] == "FP-R99-SPARE"
    assert refused[0]["topic"] == "patrol/FP-R99-SPARE/hazard"
    assert "04000000000BAD" in refused[0]["detail"]
