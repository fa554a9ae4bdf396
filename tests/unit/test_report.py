"""Rendering the daily ops report (no Spark): HTML, XLSX, and a look in headless Chromium."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tempfile

import pytest

from framework.ops.report import Chart, Report, Section, render_html, write_xlsx

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 6, 1, 8, tzinfo=UTC)


def sample() -> Report:
    return Report(NOW, "/wh", [
        Section("stale_data", "Stale data warnings",
                [("ConfigId", "str"), ("NewestCollectedAt", "datetime"), ("AgeMinutes", "float"),
                 ("Stale", "bool")],
                [{"ConfigId": "gh<script>", "NewestCollectedAt": NOW - dt.timedelta(hours=3),
                  "AgeMinutes": 180.0, "Stale": True}], note="stale rows", severity="warn"),
        Section("ingestion_summary", "Ingestion", [("ConfigId", "str"), ("Loads", "int")],
                [{"ConfigId": "gh", "Loads": 3}]),
        Section("ingestion_failures", "Failures", [("ErrorMessage", "str")], []),
    ], [Chart("rows_per_day", "Rows per day", ["05-31", "06-01"], [10, 20]),
        Chart("freshness", "Age", ["gh"], [2.0], horizontal=True, threshold=1.0)],
        {"loads": 3, "stale sources": 1})


def test_html_is_self_contained_and_escaped():
    html = render_html(sample())
    assert "<script>" not in html and "gh&lt;script&gt;" in html
    assert html.count("data:image/png;base64,") == 2
    assert "http://" not in html and "https://" not in html  # nothing fetched from outside
    assert "<style>" in html and "2024-06-01 05:00:00Z" in html and "nothing to report" in html


def test_xlsx_has_typed_columns_and_frozen_headers(tmp_path):
    from openpyxl import load_workbook

    path = write_xlsx(sample(), tmp_path / "r.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == ["summary", "stale_data", "ingestion_summary", "ingestion_failures"]
    ws = wb["stale_data"]
    assert ws.freeze_panes == "A2"
    assert [c.value for c in ws[1]] == ["ConfigId", "NewestCollectedAt (UTC)", "AgeMinutes", "Stale"]
    assert ws["B2"].value == dt.datetime(2024, 6, 1, 5) and ws["B2"].is_date
    assert ws["C2"].value == 180.0 and ws["D2"].value is True
    assert wb["ingestion_summary"]["B2"].value == 3 and wb["ingestion_failures"].max_row == 1


def test_section_rejects_unknown_types():
    with pytest.raises(ValueError, match="type 'money'"):
        Section("x", "X", [("a", "money")])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    html = tmp_path / "monitoring_daily.html"
    html.write_text(render_html(sample()), encoding="utf-8")
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp()
    try:
        subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                        f"--screenshot={shot}", "--window-size=1280,1200", html.as_uri()],
                       check=True, capture_output=True, timeout=120)
        dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--disable-component-update",
                              "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                              "--dump-dom", html.as_uri()],
                             check=True, capture_output=True, timeout=120, text=True).stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Stale data warnings" in dom and dom.count("<img") == 2


def test_a_warehouse_of_hundreds_of_sources_charts_the_worst_25(tmp_path):
    # With 400 sources the freshness chart drew 400 bars in a 3-inch figure: a smear whose
    # labels overlapped into a black block, nothing in it readable.
    from framework.lake.reader import TableReader
    from framework.lake.tables import TableRef, Warehouse
    from framework.ops.monitoring import CHART_BARS, build_report
    from framework.ops.queries import Queries
    from tests.unit._lake import CONTROL_COLUMNS, CONTROL_TYPES, write

    wh = Warehouse(tmp_path / "wh")
    rows = [{"ConfigId": f"src{i:03d}", "LoadType": "FULL_LOAD", "LoadStatus": "PENDING",
             "TargetCatalog": "raw", "TargetSchema": "t", "TargetTable": f"src{i:03d}",
             "TriggerFrequency": "hourly", "Enabled": True} for i in range(400)]
    write(wh, TableRef("main", "metadata", "api_control_table"), rows, CONTROL_TYPES, CONTROL_COLUMNS)
    report = build_report(Queries(TableReader(wh), clock=lambda: NOW), now=NOW)
    freshness = next(c for c in report.charts if c.key == "freshness")
    assert len(freshness.labels) == len(freshness.values) == len(freshness.colors) == CHART_BARS
    assert freshness.title.endswith(f"the {CHART_BARS} highest of 400")
    assert len(report.section("stale_data").rows) == 400  # the table keeps every source
    assert render_html(report).count("data:image/png;base64,") == 3


def test_a_chart_of_many_bars_keeps_the_largest_in_their_order():
    chart = Chart("c", "Age", ["a", "b", "c", "d"], [1.0, 3.0, 2.0, 3.0], horizontal=True,
                  colors=["w", "x", "y", "z"])
    top = chart.top(2)
    assert (top.labels, top.values, top.colors) == (["b", "d"], [3.0, 3.0], ["x", "z"])
    assert top.title == "Age: the 2 highest of 4" and chart.top(4) is chart
