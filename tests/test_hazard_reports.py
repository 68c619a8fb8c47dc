"""Monthly and quarterly reports from a simulated month: totals equal /api/kpi, HTML, XLSX and
an A4 PDF with Chinese text; range limits; device text in workbooks stays text (#14 item 12).

On SQLite and PostgreSQL (``state_url``). With HUB_SCREENSHOTS=1 the first PDF page is written
to docs/screenshots/report-monthly-pdf.png (pdftoppm).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from hub.patrol import periodic
from tests.support.browser import SCREENSHOTS, screenshots_enabled
from tests.support.hazard_api import Api, simulate_month
from tests.support.hazard_rig import HazardRig, fuping_with_routes, local
from tests.support.require import require_binary

TOTALS = [("发现隐患 Hazards found", "hazards_found"),
          ("整改率 Rectification rate", "rectification_rate"),
          ("逾期 Overdue", "overdue"), ("督办 Supervised", "supervised"),
          ("巡查覆盖率 Patrol coverage", "patrol_coverage"),
          ("按时率 On-time rate", "on_time_rate")]


@pytest.fixture
def api(state_url: str, tmp_path: Path) -> Iterator[Api]:
    # the routes of the hazards' checkpoints only: the tracker's rounds are most of the time
    sites = fuping_with_routes(tmp_path, {"FP-RT02", "FP-RT03", "FP-RT04"})
    rig = HazardRig(state_url, local(date(2026, 10, 14), "23:00"), sites_dir=sites)
    yield Api(rig, tmp_path)
    rig.close()


def _xlsx_summary(content: bytes) -> dict[str, Any]:
    book = load_workbook(io.BytesIO(content))
    sheet = book["汇总 Summary"]
    return {row[0]: row[1] for row in sheet.iter_rows(values_only=True) if row and row[0]}


def test_monthly_and_quarterly_reports_agree_with_kpi(api: Api, tmp_path: Path) -> None:
    ids = simulate_month(api)
    kpi = api.get("/api/kpi", site="fuping", **{"from": "2026-11-01", "to": "2026-11-30"})
    assert kpi.status_code == 200
    kpi = kpi.json()
    assert (kpi["hazards_found"], kpi["supervised"], kpi["overdue"]) == (5, 3, 3)
    data = periodic.period_report(api.rig.patrol, "fuping", periodic.month("2026-11"),
                                  api.evidence)
    totals = data["totals"]
    assert (totals["found"], totals["rectification_rate"], totals["overdue"],
            totals["supervised"]) == (kpi["hazards_found"], kpi["rectification_rate"],
                                      kpi["overdue"], kpi["supervised"])
    assert {g["key"]: g["found"] for g in data["by_grade"]} == {"general": 3, "major": 2}
    assert {r["key"]: r["found"] for r in data["by_community"]} == {
        "beizhengjie": 2, "gaoshanjie": 2, "langzhoulu": 1}
    assert {r["name"] for r in data["by_department"]} >= {"燃气公司", "交警", "未指定 unassigned"}
    assert {r["key"] for r in data["by_inspector"]} == {"FP-P007", "FP-P008", "FP-P017",
                                                         "FP-P019"}
    assert [h["id"] for h in data["major_hazards"]] == [ids["N1"], ids["N2"]]
    n1 = data["major_hazards"][0]
    assert len(n1["before"]) == 1 and len(n1["after"]) == 1
    assert n1["before"][0]["data_uri"].startswith("data:image/jpeg;base64,")
    trend = {t["key"]: t for t in data["trend"]}
    assert (trend["hazards_found"]["previous"], trend["hazards_found"]["delta"]) == (2, 3)

    html = api.get("/api/reports/monthly", site="fuping", month="2026-11", format="html")
    assert html.status_code == 200 and "隐患排查治理月报" in html.text
    assert ids["N2"] in html.text and html.text.count("data:image/jpeg;base64,") == 3

    xlsx = api.get("/api/reports/monthly", site="fuping", month="2026-11", format="xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    summary = _xlsx_summary(xlsx.content)
    for label, key in TOTALS:
        assert summary[label] == kpi[key], label

    pdf = api.get("/api/reports/monthly", site="fuping", month="2026-11", format="pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf.content))
    assert 2 <= len(reader.pages) <= 6
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in points
    text = "".join(page.extract_text() for page in reader.pages)
    assert "隐患排查治理月报" in text and "重大隐患清单" in text and ids["N1"] in text
    fonts = {str(f["/BaseFont"]) for page in reader.pages
             for f in page["/Resources"]["/Font"].values()}
    assert any("Noto-Sans-CJK" in f for f in fonts), fonts  # embedded Chinese glyphs
    _pdf_screenshot(pdf.content, tmp_path)

    quarter = periodic.period_report(api.rig.patrol, "fuping", periodic.quarter("2026-Q4"))
    kpi_q = api.get("/api/kpi", site="fuping", **{"from": "2026-10-01",
                                                  "to": "2026-12-31"}).json()
    assert quarter["totals"]["found"] == kpi_q["hazards_found"] == 7
    assert quarter["totals"]["supervised"] == kpi_q["supervised"]
    assert quarter["previous_period"] == "2026-Q3"
    response = api.get("/api/reports/quarterly", site="fuping", quarter="2026-Q4",
                       format="html")  # the PDF is this HTML rendered, as the monthly one
    assert response.status_code == 200 and "隐患排查治理季报" in response.text
    assert "2026-Q3" in response.text


def _pdf_screenshot(pdf: bytes, tmp: Path) -> None:
    binary = require_binary("pdftoppm")  # fails in CI when poppler-utils is missing
    source = tmp / "report.pdf"
    source.write_bytes(pdf)
    subprocess.run([binary, "-png", "-r", "70", "-f", "1", "-l", "2", str(source),
                    str(tmp / "page")], check=True, timeout=60)
    pages = sorted(tmp.glob("page-*.png"))
    assert len(pages) == 2 and all(p.stat().st_size > 10_000 for p in pages)
    if screenshots_enabled():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for index, page in enumerate(pages, start=1):
            shutil.copy(page, SCREENSHOTS / f"report-monthly-pdf-{index}.png")


def test_periods_are_bounded_and_checked(api: Api) -> None:
    api.rig.tick(local(date(2026, 11, 15), "09:00"))
    for params, words in (({"month": "2026-13"}, "YYYY-MM"), ({"month": "2099-12"}, "begun"),
                          ({"month": "9999-12"}, "out of range"),
                          ({"month": "2019-01"}, "years back"),
                          ({"month": "2026-11", "format": "docx"}, "format")):
        response = api.get("/api/reports/monthly", site="fuping", **params)
        assert response.status_code == 422, params
        assert words in response.json()["detail"]["message"]
    response = api.get("/api/reports/quarterly", site="fuping", quarter="2026-Q5")
    assert response.status_code == 422 and "YYYY-Qn" in response.json()["detail"]["message"]
    assert api.get("/api/reports/quarterly", site="fuping").status_code == 200  # this quarter
    assert api.get("/api/reports/monthly", site="nowhere").status_code == 404
    assert periodic.month("2026-12").previous().label == "2026-11"
    assert periodic.quarter("2026-Q1").previous().label == "2025-Q4"
    assert periodic.month("2026-02").last == date(2026, 2, 28)


def test_device_text_in_workbooks_is_never_a_formula(api: Api) -> None:
    """#14 item 12: a note =HYPERLINK(...) and a patroller =cmd|... stay text cells."""
    day = date(2026, 11, 20)
    api.rig.tick(local(day, "08:00"))
    api.rig.hazard(local(day, "08:04"), note='=HYPERLINK("http://evil.example","点我")',
                   patroller="=cmd|' /C calc'!A0")
    daily = api.get("/api/reports/daily", site="fuping", date=day.isoformat(), format="xlsx")
    daily_pdf = api.get("/api/reports/daily", site="fuping", date=day.isoformat(), format="pdf")
    assert daily_pdf.status_code == 200 and "巡查日报" in PdfReader(
        io.BytesIO(daily_pdf.content)).pages[0].extract_text()
    api.rig.tick(local(date(2026, 12, 1), "09:00"))
    monthly = api.get("/api/reports/monthly", site="fuping", month="2026-11", format="xlsx")
    for response in (daily, monthly):
        assert response.status_code == 200
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            sheets = [archive.read(n).decode() for n in archive.namelist()
                      if n.startswith("xl/worksheets/sheet")]
        assert not any(re.search(r"<f[ >]", xml) for xml in sheets)
        book = load_workbook(io.BytesIO(response.content))
        cells = [c for sheet in book for row in sheet.iter_rows() for c in row
                 if isinstance(c.value, str) and c.value.startswith("=")]
        assert cells and all(c.data_type == "s" for c in cells)
        assert any("=cmd|" in c.value for c in cells)  # type: ignore[operator]
    daily_cells = [c.value for sheet in load_workbook(io.BytesIO(daily.content))
                   for row in sheet.iter_rows() for c in row]
    assert '=HYPERLINK("http://evil.example","点我")' in daily_cells
