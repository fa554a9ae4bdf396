"""framework.load.staging: window rows streamed to JSON-lines files, quarantine, completion marker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.load import staging
from framework.schema import ColumnType
from framework.load.staging import RunStaging


def read_rows(files: list[Path]) -> list[dict]:
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def test_layout_and_rows(tmp_path: Path) -> None:
    run = RunStaging(tmp_path, "gh_issues", "run-1")
    stage = run.window(3)

    stage.write({"id": 1, "name": "é"})
    stage.write({"id": 2, "name": None})
    stage.close()

    assert stage.folder == tmp_path / "gh_issues" / "run-1" / "w000003"
    assert read_rows(stage.files) == [{"id": 1, "name": "é"}, {"id": 2, "name": None}]
    assert (stage.folder / "_DONE").read_text() == "2"
    assert stage.rows == 2 and stage.rejected == 0
    assert stage.tracker.resolved() == {"id": ColumnType.LONG, "name": ColumnType.STRING}
    assert repr(stage) == "WindowStage(w3 rows=2 rejected=0)"


def test_files_roll_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "ROWS_PER_FILE", 2)
    stage = RunStaging(tmp_path, "c", "r").window(0)

    for i in range(5):
        stage.write({"i": i})
    stage.close()

    assert [f.name for f in stage.files] == ["part-00000.jsonl", "part-00001.jsonl",
                                             "part-00002.jsonl"]
    assert [r["i"] for r in read_rows(stage.files)] == [0, 1, 2, 3, 4]


def test_window_without_rows_is_still_complete(tmp_path: Path) -> None:
    stage = RunStaging(tmp_path, "c", "r").window(0)
    stage.close()
    assert stage.files == [] and (stage.folder / "_DONE").read_text() == "0"


def test_rejected_records_go_to_quarantine(tmp_path: Path) -> None:
    stage = RunStaging(tmp_path, "c", "r").window(0)
    assert stage.quarantine_file is None

    stage.reject("required field 'id' is missing", {"b": 2, "a": 1}, window_start="2024-01-01")
    stage.close()

    assert stage.quarantine_file is not None
    [entry] = read_rows([stage.quarantine_file])
    assert entry == {"reason": "required field 'id' is missing", "raw_payload": '{"a":1,"b":2}',
                     "window_start": "2024-01-01"}
    assert stage.rejected == 1 and stage.rows == 0


def test_leftover_of_a_crashed_attempt_is_cleared(tmp_path: Path) -> None:
    run = RunStaging(tmp_path, "c", "r")
    first = run.window(0)
    first.write({"id": 1})
    first.close()

    again = run.window(0)

    assert again.folder == first.folder
    assert list(again.folder.iterdir()) == []


def test_abort_removes_the_window(tmp_path: Path) -> None:
    stage = RunStaging(tmp_path, "c", "r").window(0)
    stage.write({"id": 1})
    stage.reject("bad", {"x": 1})

    stage.abort()

    assert not stage.folder.exists()


def test_cleanup_removes_the_run_and_an_empty_config_folder(tmp_path: Path) -> None:
    run = RunStaging(tmp_path, "c", "r")
    stage = run.window(0)
    stage.write({"id": 1})
    stage.close()
    other = RunStaging(tmp_path, "d", "r1")
    RunStaging(tmp_path, "d", "r2")

    run.cleanup()
    other.cleanup()

    assert not (tmp_path / "c").exists()
    assert (tmp_path / "d" / "r2").exists() and not other.folder.exists()
    assert repr(run) == f"RunStaging({run.folder})"


def _staged(tmp_path: Path, name: str, windows: list[list[dict]], **shaper) -> list:
    import datetime as dt

    from framework.load.fetch import stage_records
    from framework.schema import RowShaper

    at = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    run = RunStaging(tmp_path, name, "r1")
    shape = RowShaper("demo", ("id",), **shaper)
    stages = []
    for index, records in enumerate(windows):
        stage = run.window(index)
        stage_records(records, shape, stage, run_id="r1", window_start=at, window_end=at,
                      collected_at=at, seq=0)
        stage.close()
        stages.append(stage)
    return stages


def test_keys_are_known_distinct_only_when_no_key_repeats_across_the_windows(tmp_path: Path) -> None:
    distinct = _staged(tmp_path, "a", [[{"id": 1}, {"id": 2}], [{"id": 3, "x.y": 0}]])
    repeated = _staged(tmp_path, "b", [[{"id": 1}, {"id": 2}], [{"id": 2}]])
    within = _staged(tmp_path, "c", [[{"id": "1"}, {"id": 1}]])  # one key once Spark reads them

    assert staging.keys_distinct(distinct)
    assert not staging.keys_distinct(repeated)
    assert not staging.keys_distinct(within)
    assert staging.keys_distinct(repeated[:1])


def test_keys_not_staged_exactly_or_staged_elsewhere_are_not_known_distinct(tmp_path: Path) -> None:
    floats = _staged(tmp_path, "a", [[{"id": 1}], [{"id": 2.5}]])
    single = RunStaging(tmp_path, "b", "r1").window(0)
    single.write({"id": 1})  # a row written without its key hash
    single.close()
    [shaped] = _staged(tmp_path, "c", [[{"id": 1}]])
    attached = staging.WindowStage.completed(0, shaped.folder, shaped.files, rows=1, rejected=0,
                                             tracker=shaped.tracker)

    assert not staging.keys_distinct(floats)
    assert not staging.keys_distinct([single])
    assert not staging.keys_distinct([attached])
    assert staging.keys_distinct([shaped])
