"""framework.load.distributed without Spark: what a task sends back and how the driver rebuilds it."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from framework.load.distributed import (error_to_json, result_from_json, result_to_json, task_share)
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
