"""``restlake serve`` as a real process: uvicorn's own log lines (access log, errors) go
through restlake's handlers, so they land in ``--log-file`` / the JSON stream, redacted.

No Spark: the service reads Delta without a JVM, and an empty warehouse is enough.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.unit._service import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "svc-proc-key-5d1e09b7c4"


def test_uvicorn_access_lines_land_in_the_log_file_redacted(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESTLAKE_ACCESS_LOG": "1",
           "RL_PROC_KEY": KEY, "RESTLAKE_API_KEYS": "env:RL_PROC_KEY"}
    log_file = tmp_path / "logs" / "serve.log"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "framework.cli", "--warehouse", str(tmp_path / "wh"),
         "--log-format", "json", "--log-file", str(log_file), "serve", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(url + "/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        # a key pasted into a URL: uvicorn's access log sees it, restlake's redaction masks it
        assert requests.get(url + "/health", params={"probe": KEY}, timeout=10).status_code == 200
        wrong = requests.get(url + "/api/v1/sources", headers={"X-API-Key": "not-the-key"}, timeout=10)
        assert wrong.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    access = [r for r in lines if r.get("logger") == "uvicorn.access"]
    assert any("GET /health?probe=" in r["msg"] for r in access), lines[-10:]
    assert KEY not in log_file.read_text() and KEY not in out and KEY not in err
