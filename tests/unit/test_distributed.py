"""framework.load.distributed without Spark: what a task sends back and how the driver rebuilds it."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from framework.load.distributed import (error_to_json, health_from_json, pieces_from_json,
                                        result_from_json, result_to_json, task_share)
from framework.load.fetch import StagedSegment
from framework.ops.health import HealthRecorder
from framework.errors import HttpError, SchemaDriftError, WindowError
from framework.load.fetch import WindowResult
from framework.load.staging import RunStaging
from framework.http.telemetry import Telemetry
from framework.windows import Window

UTC = dt.timezone.utc
WINDOW = Window(dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC))


def test_a_staged_window_survives_the_trip_to_the_driver(tmp_path):
    stage = RunStaging(tmp_path, "c", "r").window(3)
    stage.write({"id": 1, "title": "a", "score": None, "_seq": 1})
    stage.write({"id": 2, "title": "b", "score": 1.5, "_seq": 2})
    stage.reject("required field 'id' is missing", {"x": 1})
    stage.close()
    tel = Telemetry()
    tel.count_request(200, 512)
    tel.count_request(429)
    tel.count_page()
    sent = WindowResult(3, WINDOW, stage, records=3, pages=1, expected=3, new_fields={"extra"},
                        rescued_rows=1, telemetry=tel, checkpoint={"cursor": "abc"})

    back = result_from_json(3, WINDOW, result_to_json(sent))

    assert (back.index, back.window, back.records, back.pages, back.expected) == (3, WINDOW, 3, 1, 3)
    assert back.new_fields == {"extra"} and back.rescued_rows == 1
    assert back.checkpoint == {"cursor": "abc"}
    assert back.telemetry.as_dict() == tel.as_dict()
    assert back.stage.files == stage.files and back.stage.rows == 2 and back.stage.rejected == 1
    assert back.stage.tracker.resolved() == stage.tracker.resolved()
    assert back.stage.quarantine_file is not None
    assert (stage.folder / "_DONE").exists()  # attaching does not wipe the folder


@pytest.mark.parametrize("error, kind", [
    (HttpError("GET /x returned 404 Not Found: nope", status=404), HttpError),
    (SchemaDriftError("field 'x' is not in the target table"), SchemaDriftError),
    (KeyError("boom"), WindowError),
])
def test_a_window_error_keeps_its_class_and_message(error, kind):
    with pytest.raises(kind) as caught:
        result_from_json(0, WINDOW, error_to_json(error))
    assert type(caught.value) is kind
    assert ("boom" if kind is WindowError else str(error)) in str(caught.value)
    if kind is HttpError:
        assert caught.value.status == 404
    assert json.loads(error_to_json(error))["error"]["type"] == kind.__name__


def test_each_task_holds_its_share_of_the_budget():
    assert task_share(10, 4) == 2.5
    assert task_share(10, 0) == 10
    assert task_share(None, 4) is None


def test_page_batches_and_health_rows_travel_with_the_window(tmp_path):
    staging = RunStaging(tmp_path, "c", "r")
    batch = staging.segment(0, 1)
    batch.write({"id": 1, "_seq": 1})
    batch.close()
    rest = staging.window(0)
    rest.write({"id": 2, "_seq": 2})
    rest.close()
    health = HealthRecorder("c", "demo", "r")
    health.observe("GET", "http://h/x?api_key=k", 503, 0.01, "http_status")
    health.observe("GET", "http://h/x", 200, 0.02, None)
    checkpoint = {"segment": 1, "seq": 1, "request": {"url": "http://h/x"}, "paginator": {"cursor": "c1"}}
    sent = WindowResult(0, WINDOW, rest, records=2, pages=4, telemetry=Telemetry())
    text = result_to_json(sent, [StagedSegment(0, WINDOW, batch, checkpoint)], health.drain())

    segment, result = pieces_from_json(0, WINDOW, text)
    assert isinstance(segment, StagedSegment) and segment.checkpoint == checkpoint
    assert segment.stage.files == batch.files and segment.stage.rows == 1
    assert isinstance(result, WindowResult) and result.stage.files == rest.files
    driver = HealthRecorder("c", "demo", "r")
    driver.absorb(health_from_json(text))
    assert [(r["StatusCode"], r["Ok"]) for r in driver.rows()] == [(503, False), (200, True)]
    assert driver.rows()[0]["CheckedAt"].tzinfo is not None
    assert len(health) == 0  # drained

    # a window that fails after a committed-to-be batch: the batch first, then the error
    failed = error_to_json(HttpError("GET /x returned 500", status=500),
                           [StagedSegment(0, WINDOW, batch, checkpoint)])
    segment, error = pieces_from_json(0, WINDOW, failed)
    assert isinstance(segment, StagedSegment) and isinstance(error, HttpError)
    assert error.status == 500
    with pytest.raises(HttpError):
        result_from_json(0, WINDOW, failed)
