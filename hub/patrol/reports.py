"""Patrol reports of a site in HTML, XLSX or PDF: daily, and monthly or quarterly.

HTML is rendered by Jinja2 (``templates/daily.html.j2``, ``templates/period.html.j2``, A4 and
printable), PDF by WeasyPrint from that same HTML (Chinese through Debian's Noto CJK fonts),
XLSX by openpyxl (one sheet per table). All come from the same data (``daily_report``,
``hub.patrol.periodic.period_report``). Every text cell of a workbook is written as text, never
as a formula: device text such as ``=HYPERLINK(...)`` stays the characters it was.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub.patrol.schedule import NS
from hub.patrol.service import PatrolService

if TYPE_CHECKING:  # openpyxl is imported when a report is rendered (~15 MB the hub need not hold)
    from openpyxl import Workbook

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORMATS = ("html", "xlsx", "pdf")
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}
STATE_ZH = {"scheduled": "未开始", "in_progress": "进行中", "completed": "已完成",
            "incomplete": "未完成", "missed": "漏巡"}
STATUS_ZH = {"reported": "已上报", "dispatched": "已交办", "rectified": "已整改",
             "verified": "已复核销号", "reopened": "已退回"}


def _local(iso: str | None, tz: ZoneInfo, fmt: str = "%m-%d %H:%M") -> str:
    if not iso:
        return ""
    moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return moment.astimezone(tz).strftime(fmt)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def daily_report(service: PatrolService, site_name: str, day: date) -> dict[str, Any]:
    """Everything the daily report shows, as plain data."""
    site = service.site(site_name)
    tz = ZoneInfo(site.timezone)
    rounds = service.rounds(site.site, day)
    kpi = service.kpi(site.site, day, day)
    since, until = service.day_bounds(site, day, day)
    names = {c.id: c.name for c in site.checkpoints}
    misses = [
        {"route_id": r["route_id"], "route_name": r["route_name"], "start": r["start"],
         "checkpoint_id": c["checkpoint_id"], "name": c["name"]}
        for r in rounds for c in r["checkpoints"] if c["status"] == "missed"
    ]
    round_rows = []
    for r in rounds:
        missed = [c["checkpoint_id"] for c in r["checkpoints"] if c["status"] == "missed"]
        round_rows.append({
            **r, "state_zh": STATE_ZH.get(r["state"], r["state"]),
            "window": f"{_local(r['window_start'], tz, '%H:%M')}–"
                      f"{_local(r['window_end'], tz, '%H:%M')}",
            "first_scan": min((_local(c["scanned_at"], tz, "%H:%M") for c in r["checkpoints"]
                               if c["scanned_at"]), default=""),
            "missed_list": ", ".join(missed),
            "late_uploads": sum(1 for c in r["checkpoints"] if c["late_upload"]),
        })
    opened, closed = [], []
    for h in service.hazards.search(site=site.site):
        row = {**h, "status_zh": STATUS_ZH.get(h["status"], h["status"]),
               "category_zh": service.config.category(h["category"]).zh,
               "checkpoint_name": names.get(h["checkpoint_id"] or "", ""),
               "reported_local": _local(h["reported_at"], tz),
               "due_local": _local(h["due_at"], tz),
               "rectified_local": _local(h["rectified_at"], tz),
               "verified_local": _local(h["verified_at"], tz)}
        reported_ns, verified_ns = _ns(h["reported_at"]), _ns(h["verified_at"])
        if reported_ns is not None and since <= reported_ns < until:
            opened.append(row)
        if verified_ns is not None and since <= verified_ns < until:
            closed.append(row)
    opened.sort(key=lambda h: h["reported_at"] or "")
    closed.sort(key=lambda h: h["verified_at"] or "")
    return {
        "site": site.site, "site_name": site.name, "site_name_en": site.name_en or site.site,
        "date": day.isoformat(),
        "generated_at": datetime.now(tz).strftime("%Y-%m-%d %H:%M"),
        "kpi": kpi, "kpi_text": {k: _pct(kpi[k]) for k in (
            "patrol_coverage", "on_time_rate", "rectification_rate", "verified_rate")},
        "rounds": round_rows, "misses": misses, "hazards_opened": opened,
        "hazards_closed": closed,
    }


def _ns(iso: str | None) -> int | None:
    if not iso:
        return None
    moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) * NS


def render_html(data: dict[str, Any], template: str = "daily.html.j2") -> str:
    """The report as a printable HTML page."""
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template(template).render(**data)


def render_pdf(html: str) -> bytes:
    """An HTML report as PDF (A4 from the template's @page rule)."""
    import logging

    from weasyprint import HTML  # imported when a PDF is asked for: ~40 MB

    for chatty in ("fontTools", "weasyprint", "weasyprint.progress"):  # per-step INFO lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    pdf: bytes = HTML(string=html, base_url=str(TEMPLATES)).write_pdf()
    return pdf


def append_text_row(sheet: Any, row: list[Any]) -> None:
    """Append a row; every string becomes a text cell (no formula, even when it starts '=')."""
    sheet.append(row)
    for cell in sheet[sheet.max_row]:
        if isinstance(cell.value, str) and cell.data_type != "s":
            cell.data_type = "s"
            cell.quotePrefix = True  # Excel keeps it text when someone edits the cell


def _sheet(book: Workbook, title: str, header: list[str], rows: list[list[Any]]) -> None:
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    sheet = book.create_sheet(title)
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = PatternFill("solid", fgColor="305496")
        cell.alignment = Alignment(horizontal="center")
    for row in rows:
        append_text_row(sheet, row)
    for index, name in enumerate(header, start=1):
        width = max([len(str(name))] + [len(str(r[index - 1])) for r in rows if index <= len(r)])
        sheet.column_dimensions[get_column_letter(index)].width = min(60, max(8, width + 2))
    sheet.freeze_panes = "A2"


def render_xlsx(data: dict[str, Any]) -> bytes:
    """The report as an XLSX workbook: summary, rounds, misses, hazards opened and closed."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "汇总 Summary"
    kpi = data["kpi"]
    lines: list[list[Any]] = [
        ["巡查日报 Daily patrol report", f"{data['site_name']} ({data['site_name_en']})"],
        ["日期 Date", data["date"]],
        ["生成时间 Generated", data["generated_at"]],
        [],
        ["巡查覆盖率 Patrol coverage", kpi["patrol_coverage"]],
        ["按时率 On-time rate", kpi["on_time_rate"]],
        ["完成轮次 Rounds completed", kpi["rounds"]["completed"]],
        ["未完成轮次 Rounds incomplete", kpi["rounds"]["incomplete"]],
        ["漏巡轮次 Rounds missed", kpi["rounds"]["missed"]],
        ["漏检点位 Checkpoints missed", len(data["misses"])],
        ["发现隐患 Hazards found", kpi["hazards_found"]],
        ["销号隐患 Hazards closed", len(data["hazards_closed"])],
        ["整改率 Rectification rate", kpi["rectification_rate"]],
        ["逾期隐患 Overdue", kpi["overdue"]],
    ]
    for line in lines:
        append_text_row(summary, line)
    summary["A1"].font = Font(bold=True, size=14)
    for row in (5, 6, 13):
        summary.cell(row=row, column=2).number_format = "0.0%"
    summary.column_dimensions["A"].width = 32
    summary.column_dimensions["B"].width = 48
    _sheet(book, "轮次 Rounds",
           ["线路 Route", "名称 Name", "开始 Start", "时段 Window", "状态 State", "完成 Done",
            "应巡 Total", "首次扫码 First scan", "巡查员 Inspectors", "漏检 Missed",
            "补传 Late uploads", "按时 On time"],
           [[r["route_id"], r["route_name"], r["start"], r["window"],
             f"{r['state_zh']} {r['state']}", r["done"], r["total"], r["first_scan"],
             ", ".join(r["patrollers"]), r["missed_list"], r["late_uploads"],
             "" if r["on_time"] is None else ("是" if r["on_time"] else "否")]
            for r in data["rounds"]])
    _sheet(book, "漏检 Misses", ["线路 Route", "开始 Start", "点位 Checkpoint", "名称 Name"],
           [[m["route_id"], m["start"], m["checkpoint_id"], m["name"]] for m in data["misses"]])
    hazard_header = ["编号 ID", "上报 Reported", "类别 Category", "点位 Checkpoint",
                     "上报人 By", "状态 Status", "期限 Due", "整改 Rectified", "复核 Verified",
                     "复核人 Verifier", "描述 Note"]

    def hazard_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
        return [[h["id"], h["reported_local"], f"{h['category_zh']} {h['category']}",
                 f"{h['checkpoint_id'] or ''} {h['checkpoint_name']}".strip(),
                 h["reported_by"], f"{h['status_zh']} {h['status']}", h["due_local"],
                 h["rectified_local"], h["verified_local"], h["verified_by"] or "",
                 h["note"] or ""] for h in items]

    _sheet(book, "新增隐患 Opened", hazard_header, hazard_rows(data["hazards_opened"]))
    _sheet(book, "销号隐患 Closed", hazard_header, hazard_rows(data["hazards_closed"]))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def render(data: dict[str, Any], fmt: str) -> bytes:
    """The daily report in ``html``, ``xlsx`` or ``pdf``."""
    if fmt == "html":
        return render_html(data).encode("utf-8")
    if fmt == "xlsx":
        return render_xlsx(data)
    if fmt == "pdf":
        return render_pdf(render_html(data))
    raise ValueError(f"unknown report format {fmt!r}: use {', '.join(FORMATS)}")


def _counts_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r["key"], r["name"], r["found"], r["rectified"], r["rectification_rate"],
             r["overdue"], r["supervised"]] for r in rows]


def render_period_xlsx(data: dict[str, Any]) -> bytes:
    """A monthly or quarterly report as an XLSX workbook, one sheet per table."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "汇总 Summary"
    title = ("隐患排查治理月报 Monthly" if data["kind"] == "monthly"
             else "隐患排查治理季报 Quarterly")
    totals, kpi = data["totals"], data["kpi"]
    lines: list[list[Any]] = [
        [title, f"{data['site_name']} ({data['site_name_en']})"],
        ["期间 Period", f"{data['period']} ({data['from']} – {data['to']})"],
        ["生成时间 Generated", data["generated_at"]],
        [],
        ["发现隐患 Hazards found", totals["found"]],
        ["已整改 Rectified", totals["rectified"]],
        ["整改率 Rectification rate", totals["rectification_rate"]],
        ["复核销号率 Verified rate", totals["verified_rate"]],
        ["逾期 Overdue", totals["overdue"]],
        ["督办 Supervised", totals["supervised"]],
        ["上报县级 Reported to the county", totals["county_reported"]],
        ["巡查覆盖率 Patrol coverage", kpi["patrol_coverage"]],
        ["按时率 On-time rate", kpi["on_time_rate"]],
    ]
    for line in lines:
        append_text_row(summary, line)
    summary["A1"].font = Font(bold=True, size=14)
    for row in (7, 8, 12, 13):
        summary.cell(row=row, column=2).number_format = "0.0%"
    summary.column_dimensions["A"].width = 32
    summary.column_dimensions["B"].width = 48
    header = ["键 Key", "名称 Name", "发现 Found", "整改 Rectified", "整改率 Rate",
              "逾期 Overdue", "督办 Supervised"]
    for sheet, key in (("按等级 By grade", "by_grade"), ("按社区 By community", "by_community"),
                       ("按部门 By department", "by_department"),
                       ("按巡查员 By inspector", "by_inspector"), ("按线路 By route", "by_route")):
        _sheet(book, sheet, header, _counts_rows(data[key]))
    _sheet(book, "线路巡查 Patrol",
           ["线路 Route", "名称 Name", "覆盖率 Coverage", "已巡 Done", "应巡 Scheduled",
            "按时率 On time", "完成 Completed", "未完成 Incomplete", "漏巡 Missed"],
           [[r["route_id"], r["name"], r["patrol_coverage"], r["checkpoint_visits"]["done"],
             r["checkpoint_visits"]["scheduled"], r["on_time_rate"], r["rounds"]["completed"],
             r["rounds"]["incomplete"], r["rounds"]["missed"]] for r in data["route_patrol"]])
    _sheet(book, "重大隐患 Major",
           ["编号 ID", "上报 Reported", "类别 Category", "点位 Checkpoint", "部门 Department",
            "期限 Due", "状态 Status", "督办 Supervised", "整改前 Before", "整改后 After",
            "描述 Note"],
           [[h["id"], h["reported_at"], h["category_zh"],
             f"{h['checkpoint_id'] or ''} {h['checkpoint_name']}".strip(),
             h["department_name"] or "", h["due_at"], h["status"],
             "是" if h["supervised"] else "", len(h["before"]), len(h["after"]),
             h["note"] or ""] for h in data["major_hazards"]])
    _sheet(book, "趋势 Trend", ["指标 Measure", "本期 This period", "上期 Previous",
                                "变化 Change"],
           [[t["label"], t["value"], t["previous"], t["delta"]] for t in data["trend"]])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def render_period(data: dict[str, Any], fmt: str) -> bytes:
    """A monthly or quarterly report in ``html``, ``xlsx`` or ``pdf``."""
    if fmt == "html":
        return render_html(data, "period.html.j2").encode("utf-8")
    if fmt == "xlsx":
        return render_period_xlsx(data)
    if fmt == "pdf":
        return render_pdf(render_html(data, "period.html.j2"))
    raise ValueError(f"unknown report format {fmt!r}: use {', '.join(FORMATS)}")
