"""framework.logs: one logging setup (text or JSON, stderr and a rotated file), always redacted."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from framework import logs
from framework.secrets import register

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Log-Token-4242"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_on_stderr_and_in_the_file_carry_the_load_and_no_secret(tmp_path, restore_logging):
    register(SECRET)
    stream, path = io.StringIO(), tmp_path / "logs" / "restlake.log"
    logs.setup_logging("INFO", "json", path, stream=stream)
    log = logging.getLogger("framework.load.runtime")
    with logs.log_context(config_id="gh_issues", run_id="run-1"):
        log.info("fetched with token %s", SECRET)
        with logs.log_context(window="2024-01-01..2024-01-02"):
            log.warning("echoed %s", f"Authorization: Bearer {SECRET}",
                        extra={"url": f"https://api.example.com/x?api_key={SECRET}"})
    try:
        raise ValueError(f"boom {SECRET}")
    except ValueError:
        log.exception("load failed")
    log.debug("below the level")

    for text in (stream.getvalue(), path.read_text(encoding="utf-8")):
        assert SECRET not in text
        first, second, third = _json_lines(text)
        assert list(first)[:4] == ["ts", "level", "logger", "msg"]
        assert first["ts"].endswith("Z") and first["level"] == "INFO"
        assert first["logger"] == "framework.load.runtime"
        assert first["msg"] == "fetched with token ***"
        assert (first["config_id"], first["run_id"]) == ("gh_issues", "run-1")
        assert "window" not in first
        assert second["window"] == "2024-01-01..2024-01-02" and second["level"] == "WARNING"
        assert second["url"] == "https://api.example.com/x?api_key=***"
        assert "config_id" not in third  # outside the block
        assert third["level"] == "ERROR" and "ValueError: boom ***" in third["exc_info"]


def test_text_lines_show_the_load_and_mask_secrets(tmp_path, restore_logging):
    register(SECRET)
    stream, path = io.StringIO(), tmp_path / "restlake.log"
    logs.setup_logging("WARNING", "text", path, stream=stream)
    log = logging.getLogger("framework.scheduler")
    with logs.log_context(config_id="c1", run_id="run-2"):
        log.warning("token=%s", SECRET)
    log.info("not shown at WARNING")
    for text in (stream.getvalue(), path.read_text(encoding="utf-8")):
        [line] = text.splitlines()
        assert SECRET not in line and "token=***" in line
        assert " WARNING framework.scheduler: " in line and line.endswith("[config_id=c1 run_id=run-2]")


def test_setup_twice_replaces_its_own_handlers_and_the_file_rotates_by_size(tmp_path, restore_logging):
    path = tmp_path / "r.log"
    logs.setup_logging("INFO", "json", path, stream=io.StringIO(), max_bytes=2000, backups=2)
    handlers = logs.setup_logging("INFO", "json", path, stream=io.StringIO(), max_bytes=2000, backups=2)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_restlake", False)]
    assert ours == handlers and len(ours) == 2
    log = logging.getLogger("rot")
    for i in range(100):
        log.info("line %d %s", i, "x" * 50)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.log", "r.log.1", "r.log.2"]
    for name in files:  # every file holds whole JSON lines
        lines = _json_lines((tmp_path / name).read_text(encoding="utf-8"))
        assert lines and all(line["logger"] == "rot" for line in lines)
    assert (tmp_path / "r.log").stat().st_size <= 2000


def test_bad_format_or_level_is_refused(restore_logging):
    with pytest.raises(ValueError, match="log format 'xml'"):
        logs.setup_logging("INFO", "xml")
    with pytest.raises(ValueError, match="log level 'LOUD'"):
        logs.setup_logging("LOUD", "text")


def test_every_command_takes_the_log_options_before_or_after_its_name():
    from framework.cli.app import build_parser

    parser, handlers = build_parser()
    assert {"init", "run", "report", "health", "worksheet"} <= set(handlers)
    for command in handlers:
        after = parser.parse_args([command, "--log-format", "json", "--log-file", "x.log",
                                   "--log-level", "debug"] + _required(command))
        before = parser.parse_args(["--log-format", "json", "--log-file", "x.log", command]
                                   + _required(command))
        for args in (after, before):
            assert (args.log_format, args.log_file) == ("json", "x.log"), command
        assert after.log_level == "DEBUG"
    plain = parser.parse_args(["init"])
    assert (plain.log_format, plain.log_file, plain.log_level) == ("text", None, None)


def _required(command: str) -> list[str]:
    return {"validate": ["a.yaml"], "generate": ["--due"], "retry": ["--config-id", "x"],
            "disable": ["--config-id", "x"], "enable": ["--config-id", "x"],
            "report": ["--out", "o"], "notify": ["--config", "n.yaml"], "drill": ["all"],
            "replay": ["--config-id", "x", "--run-id", "r"], "worksheet": ["--config", "a.yaml"],
            "run": ["--all"]}.get(command, [])


# ------------------------------------------------- wheel entry points and notebooks
# A fresh interpreter (no handler on the root logger yet, as on a cluster): the step logs a
# registered secret; what reaches stderr and the log file must be masked.
_ENTRY = textwrap.dedent("""
    import logging, sys
    from framework.cli import jobs
    from framework.secrets import register
    SECRET = {secret!r}
    register(SECRET)
    def step(spark, **kw):
        logging.getLogger("framework.load.runtime").error("load failed: token %s", SECRET)
        return []
    jobs.run = jobs.generate = step
    jobs._spark = lambda: None
    sys.exit(getattr(jobs, sys.argv[1])(sys.argv[2:]))
""")


def _entry(entry: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _ENTRY.format(secret=SECRET), entry, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("entry,args", [("run_main", ["--all"]), ("generate_main", ["--due"])])
def test_wheel_entry_points_mask_secrets_in_their_logs(entry, args):
    done = _entry(entry, args)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stderr
    assert " ERROR framework.load.runtime: load failed: token ***" in done.stderr


@pytest.mark.parametrize("entry,args", [("run_main", ["--all"]), ("generate_main", ["--due"])])
def test_wheel_entry_points_log_json_to_a_file_too(tmp_path, entry, args):
    log_file = tmp_path / "job.log"
    done = _entry(entry, [*args, "--log-format", "json", "--log-file", str(log_file)])
    assert done.returncode == 0, done.stderr
    for text in (done.stderr, log_file.read_text(encoding="utf-8")):
        assert SECRET not in text
        [line] = [ln for ln in _json_lines(text) if ln["logger"] == "framework.load.runtime"]
        assert line["msg"] == "load failed: token ***"


_NOTEBOOK = textwrap.dedent("""
    import logging, sys
    from pathlib import Path
    from framework.cli import jobs
    from framework.secrets import register
    from tests.local_dbutils import LocalDbutils, run_notebook
    SECRET = {secret!r}
    register(SECRET)
    def step(spark, **kw):
        logging.getLogger("framework.load.runtime").error("load failed: token %s", SECRET)
        return []
    jobs.run = jobs.generate = step

    class FakeSpark:
        def createDataFrame(self, rows, schema):
            return rows
    run_notebook(Path(sys.argv[1]), FakeSpark(), LocalDbutils())
""")


@pytest.mark.parametrize("notebook", ["01_generate.py", "02_run.py"])
def test_notebooks_mask_secrets_in_their_logs(notebook):
    done = subprocess.run([sys.executable, "-c", _NOTEBOOK.format(secret=SECRET),
                           str(ROOT / "notebooks" / notebook)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stderr
    assert "framework.load.runtime: load failed: token ***" in done.stderr
