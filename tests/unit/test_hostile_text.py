"""Text an API controls (error bodies, field names) cannot break the progress output, a run,
the report's XLSX and HTML, the worksheet CSV or a notification."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from openpyxl import load_workbook

from framework.ops.notify import (Event, NotificationState, Notifier, build_message,
                                  parse_notifications)
from framework.ops.report import Report, Section, render_html, write_xlsx
from framework.ops.worksheet import Observed, build, to_csv, to_markdown

try:
    from _httpd import FakeApi, Reply
except ImportError:  # collected as a package
    from tests.unit._httpd import FakeApi, Reply

NOW = dt.datetime(2024, 3, 1, 6, 0, tzinfo=dt.timezone.utc)
FORMULA = '=HYPERLINK("http://evil.example/x","click")'
HOSTILE = ("[/] [link=https://evil.example]click[/link] [bold red]x \x1b[31mred\x1b[0m "
           "\x1b]8;;https://evil.example\x07link\x1b]8;;\x07 nul\x00 bell\x07 csi\x9b2J")


def test_the_progress_printer_shows_api_text_as_text(capsys):
    from framework.cli.console import progress_printer

    printer = progress_printer()
    printer("load_finished", {"config_id": "c1", "status": "FAILED", "rows": 0, "source_rows": 0,
                              "error": f"GET /x returned 400 Bad Request: {HOSTILE}"})
    printer("skipped", {"config_id": "c2", "reason": HOSTILE})
    out = capsys.readouterr().out
    assert "[/]" in out and "[link=https://evil.example]click[/link]" in out
    assert "\\x1b[31m" in out and "\\x00" in out and "\\x9b" in out
    for raw in ("\x1b", "\x00", "\x07", "\x9b"):
        assert raw not in out


def test_the_progress_printer_lists_each_failed_check_on_its_line(capsys):
    from framework.cli.console import progress_printer
    from framework.ops.quality import CheckResult

    printer = progress_printer()
    failed = [CheckResult("min_rows", None, 2, 5, "fail", False, "2 rows, fewer than the 5 required"),
              CheckResult("not_null", "state", 10, 0, "warn", False, f"no state {HOSTILE}")]
    printer("quality_checked", {"config_id": "c1", "verdict": "FAILED", "failed": failed})
    printer("quality_checked", {"config_id": "c2", "verdict": "PASSED", "failed": []})
    lines = capsys.readouterr().out.splitlines()
    assert [line.strip() for line in lines[:2]] == [
        "c1: quality FAILED", "CheckResult(min_rows FAIL: 2 rows, fewer than the 5 required)"]
    assert lines[2].strip().startswith("CheckResult(not_null[state] WARN: no state [/] [link=")
    assert "\x1b" not in lines[2] and "\\x1b[31m" in lines[2]
    assert [line.strip() for line in lines[3:]] == ["c2: quality PASSED"]


def test_tables_of_the_cli_show_api_text_as_text(capsys):
    from framework.cli.console import console, print_outcomes, table

    class Outcome:
        config_id, status, source_rows, rows_written, error = "c1", "FAILED", 0, 0, HOSTILE

    print_outcomes([Outcome()])
    console.print(table("audit", ["ConfigId", "ErrorMessage"], [{"ConfigId": "c1", "ErrorMessage": HOSTILE}]))
    out = capsys.readouterr().out
    assert "[/]" in out and "\x1b" not in out and "\x00" not in out


def test_a_failing_progress_printer_cannot_break_a_run_step(caplog):
    from framework.load.runtime import RunContext

    def broken(event, data):
        raise RuntimeError("terminal gone")

    ctx = RunContext(spark=None, warehouse=None, store=None, staging_root=None, on_event=broken)
    ctx.emit("load_finished", config_id="c1", status="FAILED")  # logged, not raised
    assert "terminal gone" in caplog.text


def _report() -> Report:
    return Report(NOW, "/wh", [
        Section("ingestion_failures", "Failures", [("ConfigId", "str"), ("ErrorMessage", "str"),
                                                   ("Loads", "int")],
                [{"ConfigId": "c1", "ErrorMessage": HOSTILE, "Loads": 2},
                 {"ConfigId": FORMULA, "ErrorMessage": "+cmd|' /C calc'!A0", "Loads": -1},
                 {"ConfigId": "c3", "ErrorMessage": "-2+3", "Loads": 1},
                 {"ConfigId": "c4", "ErrorMessage": "@SUM(A1:A2)", "Loads": 1}]),
    ], headline={"failed loads": 2, "note": FORMULA})


def test_xlsx_holds_control_characters_and_formulas_as_plain_text(tmp_path):
    path = write_xlsx(_report(), tmp_path / "r.xlsx")  # openpyxl refused control characters
    ws = load_workbook(path)["ingestion_failures"]
    rows = list(ws.iter_rows(min_row=2))
    assert rows[0][1].value.startswith("[/] [link=") and "\\x1b[31m" in rows[0][1].value
    for row in rows:
        for cell in row[:2]:
            assert cell.data_type == "s", (cell.coordinate, cell.value)
    assert rows[1][0].value == FORMULA and rows[1][0].quotePrefix  # text, not a live formula
    assert rows[1][1].quotePrefix and rows[2][1].quotePrefix and rows[3][1].quotePrefix
    assert rows[1][2].value == -1 and rows[1][2].data_type == "n"  # numbers stay numbers
    summary = load_workbook(path)["summary"]
    notes = [c for row in summary.iter_rows() for c in row if c.value == FORMULA]
    assert notes and all(c.data_type == "s" for c in notes)


def test_html_shows_control_characters_escaped():
    html = render_html(_report())
    assert "\x1b" not in html and "\x00" not in html and "\\x1b[31m" in html
    assert "[link=https://evil.example]" in html


def test_worksheet_csv_and_markdown_neutralise_formulas_and_control_characters():
    from framework.config import parse_source

    cfg = parse_source({"config_id": "w", "api_name": "W", "endpoint": "https://api.example.com/x",
                        "load_start": "2024-01-01T00:00:00Z", "primary_key": ["id"],
                        "target": {"catalog": "raw", "schema": "t", "table": "w"}})
    rows = build([cfg], {"w": Observed(columns=("id", "name"),
                                       rescued=(FORMULA, "evil\x1b[2J", "@calc", "`tick`"))})
    table = list(csv.reader(io.StringIO(to_csv(rows))))
    flagged = table[1][table[0].index("Unmapped fields (flagged)")]
    assert not flagged.startswith(("=", "+", "-", "@"))
    cells = [c for r in table for c in r]
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    assert all("\x1b" not in c for c in cells) and "\\x1b[2J" in flagged
    md = to_markdown(rows)
    assert "\x1b" not in md and "`'tick'`" in md


def test_notifications_carry_api_text_without_control_characters_or_markup(tmp_path):
    event = Event("load_failed", "c1\x1b[2J", "load_failed:c1:L1", f"failed: {HOSTILE} <!channel>")
    subject, text = build_message(event)
    assert "\n" not in subject and "\x1b" not in subject + text and "\x00" not in text
    with FakeApi() as hook:
        hook.route("/hook", Reply(200, {"ok": True}))
        config = parse_notifications({"notifications": {"webhook": {"url": hook.url("/hook"),
                                                                    "retries": 0}}})
        [delivery] = Notifier(config, NotificationState(tmp_path / "s.json")).notify([event], NOW)
        assert delivery.channels == ["webhook"], delivery.errors
        sent = hook.requests_to("/hook")[0].json()["text"]
    assert "<!channel>" not in sent and "&lt;!channel&gt;" in sent
    assert "\x1b" not in sent and "\\x1b[31m" in sent


@pytest.mark.parametrize("text, expected", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"),
    ("\uff1dcmd", "'\uff1dcmd"), ("plain", "plain"), ("a=b", "a=b"), ("\x1b[1m", "\\x1b[1m"),
])
def test_spreadsheet_text(text, expected):
    from framework.untrusted import spreadsheet_text

    assert spreadsheet_text(text) == expected


def test_log_lines_show_control_characters_instead_of_sending_them_to_the_terminal():
    import logging

    from framework.secrets import RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("restlake.test.hostile")
    logger.addHandler(handler)
    try:
        logger.error("load failed: %s", HOSTILE)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "\x1b" not in line and "\x00" not in line and "\\x1b[31m" in line
