"""Numeric options out of their bounds are refused by the parser, the option named, before
any table is read or written (no Spark, no warehouse)."""

from __future__ import annotations

import argparse

import pytest

from framework.cli.app import build_parser, main as cli_main
from framework.cli.jobs import _run_parser
from framework.cli.options import number

REFUSED = [
    # a negative timeout probed every source as down and logged it so (uptime fell)
    (["health", "--timeout", "-1"], "--timeout", "more than 0"),
    (["health", "--timeout", "0"], "--timeout", "more than 0"),
    (["health", "--timeout", "nan"], "--timeout", "finite"),
    (["health", "--expect", "200", "42"], "--expect", "at least 100"),
    # a claim that expires at once is one another runner may take while this one loads
    (["run", "--all", "--lease-minutes", "0"], "--lease-minutes", "at least 0.5"),
    (["run", "--all", "--lease-minutes", "-5"], "--lease-minutes", "at least 0.5"),
    (["run", "--all", "--parallel", "0"], "--parallel", "at least 1"),
    (["report", "--out", "ops", "--days", "-3"], "--days", "at least 1"),
    (["report", "--out", "ops", "--top", "-1"], "--top", "at least 0"),
    (["notify", "--config", "n.yaml", "--days", "0"], "--days", "at least 1"),
    (["quality", "--limit", "-1"], "--limit", "at least 1"),
    (["quality", "--days", "-1"], "--days", "at least 1"),
    (["audit", "--limit", "-1"], "--limit", "at least 1"),  # was DuckDB's "Binder Error"
    (["audit", "--limit", "ten"], "--limit", "whole number"),
    (["serve", "--port", "70000"], "--port", "at most 65535"),
    (["receive", "--port", "0"], "--port", "at least 1"),
    (["scheduler", "--grace", "-1"], "--grace", "at least 0"),
    (["--log-max-mb", "0", "status"], "--log-max-mb", "more than 0"),
]


@pytest.mark.parametrize("argv, option, reason", REFUSED, ids=[" ".join(a) for a, _, _ in REFUSED])
def test_an_out_of_bounds_value_is_refused_naming_the_option(argv, option, reason, capsys):
    parser, _ = build_parser()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and reason in err, err


def test_values_inside_the_bounds_parse_as_numbers():
    parser, _ = build_parser()
    args = parser.parse_args(["run", "--all", "--lease-minutes", "0.5", "--parallel", "4"])
    assert (args.lease_minutes, args.parallel) == (0.5, 4)
    args = parser.parse_args(["health", "--timeout", "2.5", "--expect", "200", "404"])
    assert (args.timeout, args.expect) == (2.5, [200, 404])
    assert parser.parse_args(["report", "--out", "o", "--top", "0"]).top == 0
    assert parser.parse_args(["serve", "--port", "65535"]).port == 65535


def test_the_wheel_tasks_run_refuses_a_lease_that_expires_at_once(capsys):
    with pytest.raises(SystemExit):
        _run_parser().parse_args(["--lease-minutes", "0.1"])
    assert "argument --lease-minutes: must be at least 0.5" in capsys.readouterr().err


def test_number_names_what_it_wanted():
    whole = number(int, minimum=1, maximum=3)
    assert whole("2") == 2
    for text, message in [("2.5", "must be a whole number, got '2.5'"), ("0", "at least 1, got 0"),
                          ("4", "at most 3, got 4")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            whole(text)
    with pytest.raises(argparse.ArgumentTypeError, match="finite"):
        number(float)("inf")


def test_init_in_a_folder_that_cannot_be_made_names_it_before_spark_starts(tmp_path, capsys,
                                                                            monkeypatch):
    # It started Spark, then printed 2 000 characters of a Java stack trace
    # ("Py4JJavaError: An error occurred while calling o67.execute ...").
    from framework.cli import console

    def no_spark():
        raise AssertionError("Spark started")

    monkeypatch.setattr(console, "start_spark", no_spark)
    blocker = tmp_path / "file"
    blocker.write_text("")
    wh = blocker / "wh"  # a folder below a file
    assert cli_main(["--warehouse", str(wh), "init"]) == 1
    err = capsys.readouterr().err
    assert f"cannot create the warehouse folder {wh}" in err and "Not a directory" in err, err
    assert not wh.exists()


def test_an_unexpected_java_error_is_shown_as_its_first_lines_not_its_stack(capsys, monkeypatch):
    from framework.cli import control

    class Py4JJavaError(Exception):
        pass

    trace = ("An error occurred while calling o67.execute.\n"
             ": org.apache.spark.sql.delta.DeltaIOException: [DELTA_CANNOT_CREATE_LOG_PATH] "
             "Cannot create file:/data/wh/_delta_log\n"
             + "".join(f"\tat org.apache.spark.sql.delta.Frame{i}(DeltaLog.scala:{i})\n"
                       for i in range(60)))

    def fails(args):
        raise Py4JJavaError(trace)

    monkeypatch.setattr(control, "cmd_status", fails)
    assert cli_main(["status"]) == 1
    err = capsys.readouterr().err
    assert "[DELTA_CANNOT_CREATE_LOG_PATH] Cannot create file:/data/wh/_delta_log" in err
    assert "Frame" not in err and "DeltaLog.scala" not in err, err


def test_run_all_with_nothing_claimable_names_the_rows_held_under_a_lease():
    # After a runner died (kill -9) its rows stay RUNNING until their lease ends; `run
    # --all` said "no PENDING rows (run 'restlake generate')", and generate changes nothing.
    import datetime as dt

    from framework.cli.load import nothing_to_run

    until = dt.datetime(2026, 12, 3, 7, 30, tzinfo=dt.timezone.utc)
    rows = [{"ConfigId": "orders", "LoadStatus": "RUNNING", "LeaseExpiresAt": until,
             "LastJobRunId": "run-1", "Enabled": True},
            {"ConfigId": "done", "LoadStatus": "SUCCESS", "LeaseExpiresAt": None, "Enabled": True}]
    text = nothing_to_run(rows)
    assert "1 RUNNING under a lease" in text and "orders (run run-1, lease until 2026-12-03 07:30:00Z)" in text
    assert "done" not in text
    assert nothing_to_run(rows[1:]) == "nothing to run: no PENDING rows (run 'restlake generate')"
