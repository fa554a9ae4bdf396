"""``--log-format json`` / ``--log-file`` on a real load: the load's fields, and no secret anywhere."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from framework.cli.app import main
from tests.unit._httpd import FakeApi, Reply

pytestmark = pytest.mark.spark
KEY = "Lg-k3y-90210-zz"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def _reply(request):
    # day 1 answers; day 2 refuses the key and echoes it back (as some APIs do)
    if request.query.get("since") == ["2024-01-01T00:00:00Z"]:
        return Reply(200, {"data": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]})
    return Reply(400, {"message": f"api_key {request.query['api_key'][0]} is not valid here"})


def test_json_and_text_logs_of_a_load_name_it_and_hold_no_secret(spark, tmp_path, capsys, monkeypatch,
                                                                restore_logging):
    monkeypatch.setenv("RL_LOG_KEY", KEY)
    wh, log_file = str(tmp_path / "wh"), tmp_path / "logs" / "restlake.log"
    with FakeApi() as api:
        api.route("/items", _reply)
        conf = tmp_path / "src.yaml"
        conf.write_text(yaml.safe_dump({
            "config_id": "logged", "api_name": "Logged", "endpoint": api.url("/items"),
            "params": {"since": "{window_start}"}, "data_path": "data", "primary_key": ["id"],
            "auth": {"method": "api_key", "secret": "env:RL_LOG_KEY", "query": "api_key"},
            "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-03T00:00:00Z",
            "window": "daily", "target": {"catalog": "raw", "schema": "logs", "table": "items"},
            "limits": {"concurrency": 1, "max_retries": 0}}))
        assert main(["--warehouse", wh, "generate", "--config", str(conf)]) == 0
        capsys.readouterr()
        assert main(["--warehouse", wh, "run", "--config-id", "logged", "--log-format", "json",
                     "--log-file", str(log_file), "--log-level", "info"]) == 1
        out, err = capsys.readouterr()
        assert api.requests_to("/items")[-1].query["api_key"] == [KEY]  # the key was used

        for text in (err, log_file.read_text(encoding="utf-8")):
            assert KEY not in text
            lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
            assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
            runtime = [line for line in lines if line["logger"] == "framework.load.runtime"]
            started = next(line for line in runtime if line["msg"].startswith("load started"))
            run_id = started["run_id"]
            assert started["config_id"] == "logged" and run_id.startswith("run-")
            fetched = next(line for line in runtime if line["msg"].startswith("window fetched"))
            assert fetched["window"].startswith("2024-01-01") and fetched["run_id"] == run_id
            failed = next(line for line in runtime if line["level"] == "ERROR")
            assert failed["config_id"] == "logged" and "api_key *** is not valid" in failed["msg"]
        assert KEY not in out and "api_key *** is not valid" in out

        # the same in text, the options given before the command this time
        assert main(["--warehouse", wh, "retry", "--config-id", "logged"]) == 0
        capsys.readouterr()
        text_file = tmp_path / "logs" / "text.log"
        assert main(["--warehouse", wh, "--log-file", str(text_file), "--log-level", "INFO",
                     "run", "--config-id", "logged"]) == 1
        out, err = capsys.readouterr()
        for text in (err, text_file.read_text(encoding="utf-8")):
            assert KEY not in text
            [failed] = [ln for ln in text.splitlines() if " ERROR framework.load.runtime: " in ln]
            assert "api_key *** is not valid" in failed and "[config_id=logged run_id=run-" in failed
