"""Helpers for integration tests: build configs against the demo API, run loads, read targets."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from framework.config import SourceConfig, parse_source
from framework.lake.tables import TableRef

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
START = dt.datetime(2024, 1, 1, tzinfo=UTC)


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


STYLE_SOURCES: dict[str, dict[str, Any]] = {
    "none": {"path": "/api/none/issues", "pagination": {"style": "none"}, "data_path": "data"},
    "offset": {"path": "/api/offset/issues",
               "pagination": {"style": "offset", "page_size": 30, "total_path": "total"},
               "data_path": "data"},
    "page": {"path": "/api/page/issues",
             "pagination": {"style": "page", "size_param": "per_page", "page_size": 30,
                            "total_pages_path": "total_pages"}, "data_path": "data"},
    "cursor": {"path": "/api/cursor/issues", "params": {"limit": 30},
               "pagination": {"style": "cursor"}, "data_path": "data"},
    "next_key": {"path": "/api/next_key/issues", "params": {"pageSize": 30},
                 "pagination": {"style": "next_key"}, "data_path": "items"},
    "link_header": {"path": "/api/link_header/issues", "params": {"per_page": 30},
                    "pagination": {"style": "link_header"}, "data_path": "$"},
    "has_more": {"path": "/api/has_more/issues", "params": {"limit": 30},
                 "pagination": {"style": "has_more"}, "data_path": "data"},
    "body_token": {"path": "/api/body_token/search", "method": "POST", "allow_post": True,
                   "body": {"since": "{window_start}", "until": "{window_end}", "page_size": 30},
                   "pagination": {"style": "body_token", "token_path": "next_page_token",
                                  "body_field": "page_token"},
                   "data_path": "results.items"},
}


def source(base_url: str, style: str, config_id: str, *, table: Optional[str] = None,
           start: str = "2024-01-01T00:00:00Z", end: str = "2024-01-04T00:00:00Z",
           window: str = "daily", **overrides: Any) -> SourceConfig:
    """A validated config reading ``style`` from the demo API at ``base_url``."""
    spec = dict(STYLE_SOURCES[style])
    path = spec.pop("path")
    params = {"since": "{window_start}", "until": "{window_end}"}
    params.update(spec.pop("params", {}))
    if spec.get("method") == "POST":
        params = {}
    raw: dict[str, Any] = {
        "config_id": config_id, "api_name": "Demo", "source_system": "demo",
        "endpoint": base_url + path, "params": params, "primary_key": ["id"],
        "cursor_field": "updated_at", "load_start": start, "load_end": end, "window": window,
        "target": {"catalog": "raw", "schema": "tests", "table": table or f"t_{config_id}"},
        "limits": {"timeout_s": 5, "max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
                   "concurrency": 3},
        **spec,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_source(raw)


def target_ref(cfg: SourceConfig) -> TableRef:
    return TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)


def run_loads(spark, warehouse, store, configs: list[SourceConfig], now: Optional[dt.datetime] = None,
              generate: bool = True, executor: str = "threads"):
    """generate (optional) + run the given configs; returns their outcomes.

    ``executor``: ``threads`` (the default fetch) or ``spark`` (``run --distributed``).
    """
    from framework.load import runtime

    if executor not in ("threads", "spark"):
        raise ValueError(f"executor must be threads or spark, got {executor!r}")
    if generate:
        store.generate(configs, now=now)
    ctx = runtime.RunContext(spark, warehouse, store, warehouse.root / "_staging",
                             distributed=executor == "spark")
    return runtime.run(ctx, [c.config_id for c in configs])


def read_target(spark, warehouse, cfg: SourceConfig):
    return warehouse.read(spark, target_ref(cfg))


def expected_rows(api, since: str, until: str) -> list[tuple[int, str, str]]:
    return sorted((r["id"], r["title"], r["updated_at"]) for r in api.dataset.records_in(since, until))


def actual_rows(df) -> list[tuple[int, str, str]]:
    return sorted((r["id"], r["title"], r["updated_at"]) for r in
                  df.select("id", "title", "updated_at").collect())


# ------------------------------------------------------------ runs in their own process
def wait_for(condition, what: str, timeout_s: float = 900) -> None:
    """Poll ``condition`` (a subprocess starts its own Spark: minutes on a busy machine)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_run(warehouse: Path, config_id: str, log: Path, *extra: str) -> subprocess.Popen:
    """``restlake run --config-id ID`` in its own process (its own Spark), output to ``log``."""
    env = dict(os.environ, RESTLAKE_SPARK_MASTER="local[1]", PYTHONPATH=str(ROOT))
    env.pop("RESTLAKE_CRASH_AT", None)
    cmd = [sys.executable, "-m", "framework.cli", "--warehouse", str(warehouse), "run",
           "--config-id", config_id, *extra]
    with log.open("w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def run_killed_at(warehouse: Path, config_id: str, crash_at: Optional[str], store=None,
                  **env: str) -> subprocess.CompletedProcess:
    """``restlake run --config-id ID --lease-minutes 0.5`` in its own process (its own
    Spark), killed by SIGKILL at the crash point ``crash_at`` when given. With ``store``,
    the row a killed run left is taken over once its lease ran out."""
    if store is not None:
        end_lease_of_killed_run(store, config_id)
        wait_claimable(store, config_id)
    env = dict(os.environ, RESTLAKE_SPARK_MASTER="local[1]", PYTHONPATH=str(ROOT), **env)
    env.pop("RESTLAKE_CRASH_AT", None)
    if crash_at:
        env["RESTLAKE_CRASH_AT"] = crash_at
    cmd = [sys.executable, "-m", "framework.cli", "--warehouse", str(warehouse), "run",
           "--config-id", config_id, "--lease-minutes", "0.5"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


def java_env(tmp_path: Path, script: str, **extra: str) -> dict[str, str]:
    """An environment (for a subprocess) whose ``java`` is the shell ``script``:
    ``JAVA_HOME`` and ``PATH`` point at it, ``SPARK_HOME`` is unset."""
    home = tmp_path / "java-home"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    java = home / "bin" / "java"
    java.write_text(script)
    java.chmod(0o755)
    env = {**os.environ, "JAVA_HOME": str(home), "PATH": f"{home / 'bin'}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), **extra}
    env.pop("SPARK_HOME", None)
    return env


def no_jvm_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose ``java`` records that it was started and fails, and the
    record's path: a JVM start is detected, not timed."""
    marker = tmp_path / "jvm-started"
    env = java_env(tmp_path, f'#!/bin/sh\necho "$@" >> "{marker}"\nexit 1\n', COLUMNS="200")
    return env, marker


def requested(api, since: str) -> bool:
    """True once the API saw a request for the window starting at ``since``."""
    return any(e["query"].get("since") == since for e in api.request_log)


def end_lease_of_killed_run(store, config_id: str) -> None:
    """Time passes for a row whose runner was SIGKILLed: its lease ends now, so the next run
    takes it over at once instead of waiting out the lease (leases that run out in real
    time, and a late runner being fenced, are ``test_leases.py``'s subject)."""
    from pyspark.sql import functions as F

    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    (store.warehouse.delta(store.spark, store.control_ref).alias("t")
     .update(condition=(F.col("ConfigId") == F.lit(config_id)) & (F.col("LoadStatus") == "RUNNING"),
             set={"LeaseExpiresAt": F.lit(now).cast("timestamp")}))


def wait_claimable(store, config_id: str, timeout_s: float = 300) -> None:
    """Wait until a row killed while RUNNING can be claimed again (its lease ran out)."""
    wait_for(lambda: (store.get(config_id) or {}).get("LoadStatus") != "RUNNING"
             or config_id in store.claimable_ids(), f"{config_id}'s lease to run out", timeout_s)
