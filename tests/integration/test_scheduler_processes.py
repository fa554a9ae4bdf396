"""Real ``restlake scheduler`` / ``restlake serve --schedule`` processes on one warehouse:
two schedulers never load a row twice; SIGTERM mid-load drains and the next start finishes.

The processes have their own Spark; this test process plans the rows (its session) and
reads the results back with the ``deltalake`` reader.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from deltalake import DeltaTable as RsDeltaTable

from framework.demoapi import DemoApi
from tests.integration.helpers import UTC, expected_rows, java_env, no_jvm_env, requested, source

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
DAY1, DAY9 = "2024-01-01T00:00:00Z", "2024-01-09T00:00:00Z"


def _env() -> dict[str, str]:
    env = dict(os.environ, RESTLAKE_SPARK_MASTER="local[1]", PYTHONPATH=str(ROOT))
    env.pop("RESTLAKE_CRASH_AT", None)
    return env


class Proc:
    """One ``restlake`` process logging JSON lines to its own file."""

    def __init__(self, tmp: Path, name: str, warehouse: Path, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.log = tmp / f"{name}.log"
        self.out = open(tmp / f"{name}.out", "w")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "framework.cli", "--warehouse", str(warehouse), *args,
             "--log-format", "json", "--log-file", str(self.log)],
            cwd=ROOT, env=env or _env(), stdout=self.out, stderr=subprocess.STDOUT)

    def lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(ln) for ln in self.log.read_text(encoding="utf-8").splitlines() if ln]

    def logged(self, text: str) -> bool:
        return any(text in line["msg"] for line in self.lines())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 300) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.out.close()

    def output(self) -> str:
        return (self.log.parent / (self.log.stem + ".out")).read_text(encoding="utf-8")[-3000:]


def wait_for(what: str, check: Callable[[], bool], procs: list[Proc], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for p in procs:
            assert p.proc.poll() is None, f"{what}: process exited early:\n{p.output()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def control(warehouse: Path) -> dict[str, dict[str, Any]]:
    rows = RsDeltaTable(str(warehouse / "main/metadata/api_control_table")).to_pyarrow_table().to_pylist()
    return {r["ConfigId"]: r for r in rows}


def audit(warehouse: Path) -> list[dict[str, Any]]:
    return RsDeltaTable(str(warehouse / "main/metadata/api_audit_table")).to_pyarrow_table().to_pylist()


def target_rows(warehouse: Path, cfg: Any) -> list[tuple[int, str, str]]:
    path = warehouse / cfg.target.catalog / cfg.target.schema_ / cfg.target.table
    table = RsDeltaTable(str(path)).to_pyarrow_table(columns=["id", "title", "updated_at"])
    return sorted((r["id"], r["title"], r["updated_at"]) for r in table.to_pylist())


def service_config(tmp: Path, **scheduler: Any) -> Path:
    path = tmp / "service.yaml"
    path.write_text(json.dumps({"scheduler": {"poll": "PT2S", **scheduler}}))
    return path


@pytest.mark.slow
def test_two_schedulers_on_one_warehouse_never_load_a_row_twice(spark, store, warehouse, tmp_path):
    """Two scheduler processes (two JVMs) racing for six sources. Slow: the default suite keeps
    the same claim path under the same race with four runners in one process
    (``test_reliability.py::test_four_runners_process_each_row_exactly_once``) and a second
    runner's batched claim (``test_small_loads.py::test_run_claims_its_rows_in_one_commit_and_a_second_runner_gets_none``)."""
    with DemoApi(seed=31, records_per_resource=240, end=dt.datetime(2024, 1, 9, tzinfo=UTC),
                 max_page_size=20, latency_ms=40) as api:
        configs = [source(api.base_url, style, f"pair_{i}", end=DAY9, window="P2D",
                          limits={"concurrency": 1}, health={"enabled": False})
                   for i, style in enumerate(["cursor", "offset", "page", "cursor", "next_key", "offset"])]
        conf = service_config(tmp_path, parallel=1)
        procs = [Proc(tmp_path, name, warehouse.root, "scheduler", "--service-config", str(conf))
                 for name in ("one", "two")]
        try:
            wait_for("both schedulers started", lambda: all(p.logged("scheduler started")
                                                            for p in procs), procs)
            store.generate(configs)  # the rows appear while both are polling
            ids = {c.config_id for c in configs}
            wait_for("every load done", lambda: {cid for cid, r in control(warehouse.root).items()
                                                 if r["LoadStatus"] == "SUCCESS"} == ids, procs)
        finally:
            codes = [p.stop() for p in procs]
        assert codes == [0, 0], [p.output() for p in procs]

        # each load ran once: one audit row per source, one claim (Attempt 1), the source's pages once
        runs = audit(warehouse.root)
        assert Counter(r["ConfigId"] for r in runs) == Counter(ids)
        assert all(r["LoadStatus"] == "SUCCESS" for r in runs)
        assert {cid: r["Attempt"] for cid, r in control(warehouse.root).items()} == dict.fromkeys(ids, 1)
        expected = expected_rows(api, DAY1, DAY9)
        for cfg in configs:
            assert target_rows(warehouse.root, cfg) == expected, cfg.config_id
        # both processes went for the rows: each loaded some, or found them taken
        ends = [[ln for ln in p.lines() if ln.get("event") in ("load_finished", "skipped")]
                for p in procs]
        assert sum("status=SUCCESS" in ln["msg"] for e in ends for ln in e) == len(ids)
        assert all(ends), [len(e) for e in ends]


def test_sigterm_mid_load_drains_and_the_next_start_finishes(spark, store, warehouse, tmp_path):
    with DemoApi(seed=32, records_per_resource=300, end=dt.datetime(2024, 1, 9, tzinfo=UTC),
                 max_page_size=10, latency_ms=150) as api:
        slow = source(api.base_url, "cursor", "slow_a", end=DAY9, window="daily",
                      params={"limit": 10}, limits={"concurrency": 1}, health={"enabled": False})
        later = source(api.base_url, "offset", "slow_b", end=DAY9, window="daily",
                       limits={"concurrency": 1}, health={"enabled": False})
        store.generate([slow, later])
        conf = service_config(tmp_path, parallel=1)
        first = Proc(tmp_path, "first", warehouse.root, "scheduler", "--service-config", str(conf),
                     "--grace", "120")
        try:
            # mid-load: the first source's pages are being fetched
            wait_for("the load to be under way",
                     lambda: sum("/api/cursor/" in c["path"] for c in api.request_log) >= 5, [first])
            assert control(warehouse.root)["slow_a"]["LoadStatus"] == "RUNNING"
            code = first.stop(signal.SIGTERM)
        finally:
            first.kill()
        assert code == 0, first.output()
        assert first.logged("SIGTERM received: draining")
        assert first.logged("scheduler stopped: every job finished")
        rows = control(warehouse.root)
        assert "RUNNING" not in {r["LoadStatus"] for r in rows.values()}, rows
        assert rows["slow_b"]["LoadStatus"] == "PENDING"  # not claimed once the stop was asked
        # the load in flight was drained: back to PENDING, same LoadId
        assert rows["slow_a"]["LoadStatus"] == "PENDING", rows["slow_a"]
        [audit] = RsDeltaTable(str(warehouse.root / "main/metadata/api_audit_table")
                               ).to_pyarrow_table().to_pylist()
        assert audit["ConfigId"] == "slow_a" and audit["LoadStatus"] == "INTERRUPTED", audit
        assert audit["LoadId"] == rows["slow_a"]["LoadId"]
        # a FULL load commits only whole: it stopped at its next page and wrote nothing
        assert audit["LoadType"] == "FULL_LOAD" and audit["WindowsLoaded"] == 0, audit
        assert audit["TargetRowCount"] == 0, audit

        second = Proc(tmp_path, "second", warehouse.root, "scheduler", "--service-config", str(conf))
        try:
            wait_for("the next start to finish both loads",
                     lambda: {r["LoadStatus"] for r in control(warehouse.root).values()} == {"SUCCESS"},
                     [second])
        finally:
            code = second.stop(signal.SIGINT)
        assert code == 0, second.output()
        expected = expected_rows(api, DAY1, DAY9)
        for cfg in (slow, later):
            assert target_rows(warehouse.root, cfg) == expected, cfg.config_id
        assert "RUNNING" not in {r["LoadStatus"] for r in control(warehouse.root).values()}


def test_serve_killed_mid_load_leaves_its_row_to_the_next_start_once_its_lease_ends(
        spark, store, warehouse, tmp_path):
    """kill -9 of ``serve --schedule`` (and its JVM: a crash) mid-load: nothing drains, the
    row stays RUNNING under the dead runner, ``status`` says whose and until when, and the
    next start takes the load over once the lease ends and finishes it once."""
    with DemoApi(seed=34, records_per_resource=300, end=dt.datetime(2024, 1, 9, tzinfo=UTC),
                 max_page_size=10, latency_ms=150) as api:
        cfg = source(api.base_url, "cursor", "crashed", end=DAY9, window="daily",
                     params={"limit": 10}, limits={"concurrency": 1}, health={"enabled": False})
        store.generate([cfg])
        conf = service_config(tmp_path, parallel=1, lease_minutes=0.5)
        first = Proc(tmp_path, "first", warehouse.root, "serve", "--schedule", "--public-read",
                     "--port", str(_free_port()), "--service-config", str(conf))
        try:
            wait_for("the load to be under way",
                     lambda: sum("/api/cursor/" in c["path"] for c in api.request_log) >= 5, [first])
        finally:
            jvms = subprocess.run(["pgrep", "-P", str(first.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
            first.kill()
            for pid in jvms:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        held = control(warehouse.root)["crashed"]
        assert held["LoadStatus"] == "RUNNING" and held["ClaimedBy"], held
        status = subprocess.run([sys.executable, "-m", "framework.cli", "--warehouse",
                                 str(warehouse.root), "status"], cwd=ROOT, env=_env(),
                                capture_output=True, text=True, timeout=300)
        assert f"crashed: RUNNING by {held['ClaimedBy']}, lease until" in status.stdout, status.stdout

        second = Proc(tmp_path, "second", warehouse.root, "scheduler", "--service-config", str(conf))
        try:
            wait_for("the next start to take the load over and finish it",
                     lambda: control(warehouse.root)["crashed"]["LoadStatus"] == "SUCCESS", [second])
        finally:
            code = second.stop(signal.SIGTERM)
        assert code == 0, second.output()
        [run] = audit(warehouse.root)  # the killed run wrote none
        assert (run["LoadStatus"], run["Attempt"]) == ("SUCCESS", 2), run
        row = control(warehouse.root)["crashed"]
        assert (row["Attempt"], row["ClaimedBy"], row["LastJobRunId"]) == (2, None, run["RunId"])
        assert target_rows(warehouse.root, cfg) == expected_rows(api, DAY1, DAY9)


def test_serve_with_the_scheduler_reports_it_in_health_and_drains_on_sigterm(spark, store, warehouse,
                                                                           tmp_path):
    import socket

    import requests

    with DemoApi(seed=33, records_per_resource=60, end=dt.datetime(2024, 1, 3, tzinfo=UTC)) as api:
        cfg = source(api.base_url, "cursor", "served", end="2024-01-03T00:00:00Z",
                     health={"interval": "PT10S"})
        store.generate([cfg])
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = Proc(tmp_path, "serve", warehouse.root, "serve", "--schedule", "--public-read",
                    "--port", str(port), "--service-config", str(service_config(tmp_path)))
        url = f"http://127.0.0.1:{port}/health"

        def health() -> dict[str, Any]:
            try:
                return requests.get(url, timeout=5).json()
            except requests.RequestException:
                return {}

        try:
            wait_for("the load and a probe round", lambda: (
                health().get("scheduler", {}).get("jobs", {}).get("probes", {}).get("runs", 0) >= 1
                and control(warehouse.root)["served"]["LoadStatus"] == "SUCCESS"), [proc])
            state = health()["scheduler"]
            code = proc.stop(signal.SIGTERM)
        finally:
            proc.kill()
    assert state["attached"] and state["state"] == "running" and state["sources"] == 1
    assert state["jobs"]["loads"]["last_started"] and state["jobs"]["loads"]["next_run"]
    assert code == 0, proc.output()
    assert proc.logged("scheduler stopped: every job finished")
    assert target_rows(warehouse.root, cfg) == expected_rows(api, DAY1, "2024-01-03T00:00:00Z")
    probes = RsDeltaTable(str(warehouse.root / "main/metadata/api_health_log")).to_pyarrow_table()
    assert "served" in set(probes.column("ConfigId").to_pylist())


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_and_fetches_while_its_spark_starts(spark, store, warehouse, tmp_path):
    """``serve --schedule`` starts its JVM in the background: the test's ``java`` starts the
    real one only once the test opens a gate, after /health answered (Spark "starting") and
    the API saw the scheduled load's first request. Before, the service started Spark
    before serving: nothing answered while the gate was shut."""
    import requests

    real_java = shutil.which("java")
    assert real_java, "the tests need Java"
    gate, record = tmp_path / "gate", tmp_path / "java-calls"
    env = java_env(tmp_path,
                   "#!/bin/sh\n"
                   "i=0\n"  # 300 s: a bound against a hung test, not a measurement
                   f"while [ ! -e {gate} ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done\n"
                   f"echo started >> {record}\n"
                   f'exec {real_java} "$@"\n', RESTLAKE_SPARK_MASTER="local[1]")
    env.pop("RESTLAKE_CRASH_AT", None)
    with DemoApi(seed=35, records_per_resource=60, end=dt.datetime(2024, 1, 3, tzinfo=UTC)) as api:
        cfg = source(api.base_url, "cursor", "early", end="2024-01-03T00:00:00Z",
                     health={"enabled": False})
        store.generate([cfg])
        port = _free_port()
        proc = Proc(tmp_path, "serve", warehouse.root, "serve", "--schedule", "--public-read",
                    "--port", str(port), "--service-config", str(service_config(tmp_path)), env=env)

        def health() -> dict[str, Any]:
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            except requests.RequestException:
                return {}

        try:
            wait_for("/health while Spark starts",
                     lambda: health().get("scheduler", {}).get("spark") == "starting", [proc], 240)
            wait_for("the load's first request", lambda: requested(api, DAY1), [proc], 240)
            assert not record.exists()  # no JVM yet: the gate is shut
            gate.touch()
            wait_for("the load", lambda: control(warehouse.root)["early"]["LoadStatus"] == "SUCCESS",
                     [proc])
            spark_state = health()["scheduler"]["spark"]
            code = proc.stop(signal.SIGTERM)
        finally:
            gate.touch()
            proc.kill()
    assert spark_state == "up" and set(record.read_text().split()) == {"started"}
    assert code == 0, proc.output()
    assert target_rows(warehouse.root, cfg) == expected_rows(api, DAY1, "2024-01-03T00:00:00Z")


def test_a_scheduler_whose_spark_cannot_start_exits_1_and_leaves_its_rows_pending(
        spark, store, warehouse, tmp_path):
    env, marker = no_jvm_env(tmp_path)
    env.update(RESTLAKE_SPARK_MASTER="local[1]")
    env.pop("RESTLAKE_CRASH_AT", None)
    with DemoApi(seed=36, records_per_resource=60, end=dt.datetime(2024, 1, 3, tzinfo=UTC)) as api:
        cfg = source(api.base_url, "cursor", "nospark", end="2024-01-03T00:00:00Z",
                     health={"enabled": False})
        store.generate([cfg])
        proc = Proc(tmp_path, "sched", warehouse.root, "scheduler", "--service-config",
                    str(service_config(tmp_path)), env=env)
        try:
            code = proc.proc.wait(300)
        finally:
            proc.kill()
    assert code == 1 and marker.exists(), proc.output()
    assert "Spark did not start" in proc.output()
    row = control(warehouse.root)["nospark"]
    assert row["LoadStatus"] == "PENDING" and not target_exists(warehouse.root, cfg)


def target_exists(warehouse: Path, cfg: Any) -> bool:
    return (warehouse / cfg.target.catalog / cfg.target.schema_ / cfg.target.table / "_delta_log").exists()
