"""``restlake status`` over a control table written with delta-rs (no JVM): why a row waits."""

from __future__ import annotations

import datetime as dt

from control.states import ControlState, LoadStatus, claim_note
from framework.cli.app import main
from framework.lake.tables import TableRef, Warehouse
from tests.unit._lake import CONTROL_COLUMNS, CONTROL_TYPES, TS, UTC, write

NOW = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_a_running_row_says_who_holds_it_and_until_when():
    lease = NOW + dt.timedelta(minutes=40)
    held = ControlState(load_status=LoadStatus.RUNNING, claimed_by="vm:41:ab12cd",
                        lease_expires_at=lease)
    assert claim_note(held, NOW).startswith("RUNNING by vm:41:ab12cd, lease until 2024-03-01T12:40:00Z")
    assert "the next run takes the load over" in claim_note(held, lease)
    assert "lease of vm:41:ab12cd ended at 2024-03-01T12:40:00Z" in claim_note(held, lease)
    assert claim_note(ControlState(load_status=LoadStatus.PENDING), NOW) is None


def test_status_says_why_a_source_waits(tmp_path, capsys):
    # A `serve` killed mid-load left its row RUNNING: `status` showed RUNNING and nothing of
    # the dead holder, nor that the row waits for its lease (up to limits.lease_s, an hour).
    wh = Warehouse(tmp_path / "wh")
    now = dt.datetime.now(UTC)
    base = {"LoadType": "FULL_LOAD", "TargetCatalog": "raw", "TargetSchema": "t",
            "TriggerFrequency": "daily", "Attempt": 1}
    rows = [
        {**base, "ConfigId": "held", "TargetTable": "a", "LoadStatus": "RUNNING",
         "ClaimedBy": "vm:41:ab12cd", "LeaseExpiresAt": now + dt.timedelta(minutes=40)},
        {**base, "ConfigId": "orphan", "TargetTable": "b", "LoadStatus": "RUNNING",
         "ClaimedBy": "vm:42:ef34ab", "LeaseExpiresAt": now - dt.timedelta(minutes=1)},
        {**base, "ConfigId": "off", "TargetTable": "c", "LoadStatus": "PENDING", "Enabled": False},
        {**base, "ConfigId": "done", "TargetTable": "d", "LoadStatus": "SUCCESS"},
    ]
    write(wh, TableRef("main", "metadata", "api_control_table"), rows,
          {**CONTROL_TYPES, "LeaseExpiresAt": TS}, (*CONTROL_COLUMNS, "ClaimedBy", "LeaseExpiresAt"))
    assert main(["--warehouse", str(wh.root), "status"]) == 0
    out = capsys.readouterr().out
    notes = {line.split(":", 1)[0]: line for line in out.splitlines()
             if line.split(":", 1)[0] in ("held", "orphan", "off", "done")}
    assert set(notes) == {"held", "orphan", "off"}, out
    assert "RUNNING by vm:41:ab12cd, lease until" in notes["held"]
    assert "lease of vm:42:ef34ab ended at" in notes["orphan"]
    assert "the next run takes the load over" in notes["orphan"]
    assert "disabled" in notes["off"] and "restlake enable" in notes["off"]


def test_status_of_no_sources_or_an_unknown_one_says_so(tmp_path, capsys):
    # On a warehouse without sources `status --stale` said "every source is fresh", as it
    # did for a mistyped --config-id (and `status` showed an empty table, exit 0).
    wh = Warehouse(tmp_path / "wh")
    ref = TableRef("main", "metadata", "api_control_table")
    write(wh, ref, [], CONTROL_TYPES, CONTROL_COLUMNS)
    for stale in ([], ["--stale"]):
        assert main(["--warehouse", str(wh.root), "status", *stale]) == 0
        assert "no sources yet" in capsys.readouterr().out
    base = {"LoadType": "FULL_LOAD", "LoadStatus": "PENDING", "TargetCatalog": "raw",
            "TargetSchema": "t", "TriggerFrequency": "daily", "Enabled": False}
    write(wh, ref, [{**base, "ConfigId": "a", "TargetTable": "a"},
                    {**base, "ConfigId": "b", "TargetTable": "b"}], CONTROL_TYPES, CONTROL_COLUMNS)
    assert main(["--warehouse", str(wh.root), "status", "--stale"]) == 0
    assert "every source is fresh (0 checked; 2 disabled, not checked)" in capsys.readouterr().out
    for stale in ([], ["--stale"]):
        assert main(["--warehouse", str(wh.root), "status", *stale, "--config-id", "a", "nope"]) == 1
        captured = capsys.readouterr()
        assert "no control row with ConfigId nope" in captured.err and "fresh" not in captured.out


def test_status_shows_a_row_whose_state_column_was_edited_by_hand(tmp_path, capsys):
    # A LoadStatus typed by hand ('DONE') made `status` fail as a whole (exit 1, no table):
    # the row is shown as it is, with its column named, and the other rows' notes follow.
    wh = Warehouse(tmp_path / "wh")
    base = {"LoadType": "FULL_LOAD", "TargetCatalog": "raw", "TargetSchema": "t",
            "TriggerFrequency": "daily", "Attempt": 1}
    write(wh, TableRef("main", "metadata", "api_control_table"), [
        {**base, "ConfigId": "typed", "TargetTable": "a", "LoadStatus": "DONE"},
        {**base, "ConfigId": "off", "TargetTable": "b", "LoadStatus": "PENDING", "Enabled": False},
    ], CONTROL_TYPES, CONTROL_COLUMNS)
    assert main(["--warehouse", str(wh.root), "status"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "DONE" in out and "off: disabled" in out
    assert "typed: control row column LoadStatus: 'DONE' is not one of" in out
    for command in (["status", "--stale"], ["status", "--config-id", "typed"], ["audit"]):
        assert main(["--warehouse", str(wh.root), *command]) in (0, 1), command
        assert "Traceback" not in capsys.readouterr().err


def test_audit_of_an_id_without_a_row_or_history_says_so(tmp_path, capsys):
    # `audit --config-id typo` showed an empty table and exit 0, as for a source not loaded
    # yet, where `status --config-id typo` names it and exits 1.
    from tests.unit._lake import AUDIT_COLUMNS, AUDIT_TYPES

    wh = Warehouse(tmp_path / "wh")
    base = {"LoadType": "FULL_LOAD", "TargetCatalog": "raw", "TargetSchema": "t",
            "TriggerFrequency": "daily", "Attempt": 0, "LoadStatus": "PENDING"}
    write(wh, TableRef("main", "metadata", "api_control_table"),
          [{**base, "ConfigId": "fresh", "TargetTable": "a"}], CONTROL_TYPES, CONTROL_COLUMNS)
    write(wh, TableRef("main", "metadata", "api_audit_table"),
          [{"ConfigId": "retired", "RunId": "r1", "LoadType": "FULL_LOAD", "LoadStatus": "SUCCESS",
            "LoggedAt": NOW}], AUDIT_TYPES, AUDIT_COLUMNS, append_only=True)
    assert main(["--warehouse", str(wh.root), "audit", "--config-id", "typo"]) == 1
    captured = capsys.readouterr()
    assert "no control row or audit row with ConfigId typo" in " ".join(captured.err.split())
    # a source not loaded yet, and the history of a row since removed, are no error
    assert main(["--warehouse", str(wh.root), "audit", "--config-id", "fresh"]) == 0
    assert main(["--warehouse", str(wh.root), "audit", "--config-id", "retired"]) == 0
    assert "retired" in capsys.readouterr().out
