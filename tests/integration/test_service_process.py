"""Read commands and 'restlake serve' as real processes: no JVM starts, and the dashboard
renders in headless Chromium.

A JVM start is detected, not timed: ``JAVA_HOME`` and ``PATH`` point at a ``java`` that
records its call in a marker file and fails, so any Spark start would leave the marker
(and fail the command).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from framework.demoapi import DemoApi
from tests.integration.helpers import no_jvm_env, source
from tests.integration.service_data import END, MARKUP, build_warehouse
from tests.unit._service import DashboardDom, free_port

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
RESTLAKE = Path(sys.executable).with_name("restlake")


def restlake(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(RESTLAKE), *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


@pytest.fixture(scope="module")
def api():
    with DemoApi(seed=5, records_per_resource=60, end=END, max_page_size=20) as demo:
        yield demo


@pytest.fixture(scope="module")
def rich(spark, api, tmp_path_factory):
    """A warehouse with real loads, a failed one, and an open incident."""
    return build_warehouse(spark, tmp_path_factory.mktemp("proc") / "wh", api)[0]


@pytest.fixture(scope="module")
def thousand(spark, api, tmp_path_factory):
    """A warehouse with 1,000 control rows (generated, not loaded)."""
    from control.store import ControlStore
    from framework.lake.tables import Warehouse
    from framework.ops.health_store import ensure_table

    warehouse = Warehouse(tmp_path_factory.mktemp("k") / "wh")
    store = ControlStore(spark, warehouse)
    store.init()
    ensure_table(spark, warehouse)
    configs = [source(api.base_url, "offset", f"src_{i:04d}", schedule={"frequency": "hourly"})
               for i in range(1000)]
    store.generate(configs)
    return warehouse


def test_status_on_1000_control_rows_and_the_other_read_commands_start_no_jvm(thousand, tmp_path):
    env, marker = no_jvm_env(tmp_path)
    wh = str(thousand.root)
    status = restlake(env, "--warehouse", wh, "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert len(re.findall(r"src_\d{4}", status.stdout)) == 1000 and "PENDING" in status.stdout
    one = restlake(env, "--warehouse", wh, "status", "--config-id", "src_0042", cwd=tmp_path)
    assert one.returncode == 0 and re.findall(r"src_\d{4}", one.stdout) == ["src_0042"]
    stale = restlake(env, "--warehouse", wh, "status", "--stale", cwd=tmp_path)
    assert stale.returncode == 1 and "no data collected yet" in stale.stdout  # nothing loaded yet
    audit = restlake(env, "--warehouse", wh, "audit", cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr
    init = restlake(env, "--warehouse", wh, "init", cwd=tmp_path)
    assert init.returncode == 0 and "exists" in init.stdout and "created" not in init.stdout
    conf = ROOT / "tests" / "configs" / "good" / "minimal.yaml"
    assert restlake(env, "validate", str(conf), cwd=tmp_path).returncode == 0
    assert not marker.exists(), marker.read_text()


def test_generate_of_30_configs_and_retry_start_no_jvm(spark, initialized_warehouse, tmp_path):
    # On a local warehouse the control plane reads and writes with delta-rs: planning
    # sources and setting a failed one back to PENDING need no Spark.
    from control.store import ControlStore
    from control.states import LoadStatus
    from framework.lake.tables import Warehouse

    wh = tmp_path / "wh"
    shutil.copytree(initialized_warehouse, wh)
    conf = tmp_path / "conf"
    conf.mkdir()
    for i in range(30):
        (conf / f"src_{i:02d}.yaml").write_text(yaml.safe_dump({
            "config_id": f"src_{i:02d}", "api_name": "File", "endpoint": f"https://api.example.com/{i}",
            "load_start": "2024-01-01T00:00:00Z", "primary_key": ["id"],
            "target": {"catalog": "raw", "schema": "files", "table": f"t_{i:02d}"}}))
    env, marker = no_jvm_env(tmp_path)
    made = restlake(env, "--warehouse", str(wh), "generate", "--config", *sorted(map(str, conf.iterdir())),
                    cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    store = ControlStore(spark, Warehouse(wh))
    rows = store.rows()
    assert [r["ConfigId"] for r in rows] == [f"src_{i:02d}" for i in range(30)]
    assert {r["LoadStatus"] for r in rows} == {LoadStatus.PENDING.value}
    # src_07 failed: retry puts it back to PENDING with its range
    claim = store.claim("src_07", "runner", "run-1")
    from control.states import fail

    assert store.finish(claim, fail(claim.state, "runner", "boom"))
    again = restlake(env, "--warehouse", str(wh), "retry", "--config-id", "src_07", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert store.get("src_07")["LoadStatus"] == LoadStatus.PENDING.value
    assert not marker.exists(), marker.read_text()


def test_health_probes_logs_and_shows_uptime_without_a_jvm(rich, tmp_path):
    # `health` on a cron (every few minutes) started a JVM each time (~10 s) for one
    # append and a view over the health log: the append is delta-rs's and the uptime the
    # service's JVM-free metric. Every enabled source is probed and logged once.
    from deltalake import DeltaTable as RsDeltaTable

    wh = tmp_path / "wh"
    shutil.copytree(rich.root, wh)
    log = wh / "main" / "metadata" / "api_health_log"
    before = {r["RunId"] for r in RsDeltaTable(str(log)).to_pyarrow_table(columns=["RunId"]).to_pylist()}
    env, marker = no_jvm_env(tmp_path)

    done = restlake(env, "--warehouse", str(wh), "health", cwd=tmp_path)

    rows = [r for r in RsDeltaTable(str(log)).to_pyarrow_table().to_pylist()
            if r["RunId"] not in before]
    probes = {r["ConfigId"]: r for r in rows if r["CheckKind"] == "probe"}
    control = RsDeltaTable(str(wh / "main" / "metadata" / "api_control_table")).to_pyarrow_table()
    enabled = {r["ConfigId"] for r in control.to_pylist() if r["Enabled"] is not False}
    assert len(rows) == len(probes) and set(probes) == enabled, (done.stdout, done.stderr)
    assert done.returncode == (0 if all(r["Ok"] for r in probes.values()) else 1), done.stderr
    assert "uptime (view api_uptime)" in done.stdout
    assert all(config_id in done.stdout for config_id in probes)
    assert not marker.exists(), marker.read_text()


def test_report_and_worksheet_gather_their_data_without_a_jvm(rich, api, tmp_path):
    env, marker = no_jvm_env(tmp_path)
    wh = str(rich.root)
    report = restlake(env, "--warehouse", wh, "report", "--out", str(tmp_path / "ops"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "ops" / "output" / "monitoring_daily.html").read_text()
    assert "broken" in html and "&lt;img src=x" in html and '<img src=x' not in html
    conf = tmp_path / "alerts.yaml"
    cfg = source(api.base_url, "offset", "alerts", table="cache_monitoring_alerts", window="none")
    conf.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True, exclude_none=True)))
    sheet = restlake(env, "--warehouse", wh, "worksheet", "--config", str(conf), "--out",
                     str(tmp_path / "ws"), cwd=tmp_path)
    assert sheet.returncode == 0, sheet.stderr
    assert "title" in (tmp_path / "ws" / "field_mapping_worksheet.md").read_text()
    assert not marker.exists(), marker.read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (see .ci/run)")
def test_serve_answers_without_a_jvm_and_the_dashboard_renders_in_chromium(rich, tmp_path):
    env, marker = no_jvm_env(tmp_path)
    port = free_port()
    proc = subprocess.Popen([str(RESTLAKE), "--warehouse", str(rich.root), "serve", "--port", str(port),
                             "--public-read"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert requests.get(url + "/health", timeout=10).json()["warehouse"]["readable"]
        sources = requests.get(url + "/api/v1/sources", timeout=30).json()["items"]
        assert {s["config_id"] for s in sources} == {"alerts", "issues", "broken"}
        assert requests.post(url + "/api/v1/sources/alerts/run", timeout=30).status_code == 401

        profile = tmp_path / "chromium-profile"
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url + "/"],
            capture_output=True, text=True, timeout=180)
        assert dom.returncode == 0, dom.stderr[-2000:]
        page = DashboardDom()
        page.feed(dom.stdout)
        assert page.body_state == "ready", dom.stdout[:3000]
        assert page.rows["sources"] == 3
        assert page.rows["incidents"] == 1 and page.rows["failures"] >= 2 and page.rows["stale"] >= 1
        text = "".join(page.text)
        assert "broken" in text and "alerts" in text
        assert MARKUP in text and page.images == 0  # the API's markup is shown as text
        assert dom.stdout.count("<polyline") >= 3  # a sparkline per source with checks
        assert not marker.exists(), marker.read_text()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err[-3000:]


@pytest.mark.parametrize("command", ["serve", "receive"])
def test_a_port_in_use_is_named_and_nothing_starts(rich, tmp_path, command):
    # `serve` printed its banner, warmed its caches from the tables, failed to bind, and
    # died in the interpreter's exit with a segmentation fault (exit 139) while the
    # warm-up thread was reading: a supervisor saw a crash, not "port in use".
    import socket

    env, marker = no_jvm_env(tmp_path)
    env.update(RESTLAKE_KEY="k" * 32, RESTLAKE_API_KEYS="env:RESTLAKE_KEY",
               RESTLAKE_SPOOL=str(tmp_path / "spool"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = restlake(env, "--warehouse", str(rich.root), command, "--port", str(port),
                        cwd=tmp_path)
    assert done.returncode == 1, (done.returncode, done.stdout[-1000:], done.stderr[-1000:])
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "in use" in done.stderr
    assert " on http://" not in done.stdout  # no banner for a server that never started
    assert not marker.exists()


@pytest.mark.parametrize("options", [(), ("--public-read", "--host", "0.0.0.0")])
def test_serve_schedule_that_cannot_serve_claims_nothing(spark, store, api, tmp_path, options):
    # Its access options were checked once the scheduler ran: the process claimed a due
    # row, began a load and started Spark, then stopped it all (an INTERRUPTED audit row
    # for nothing) to say that it had no API key.
    from deltalake import DeltaTable as RsDeltaTable

    store.generate([source(api.base_url, "offset", "waiting", end="2024-01-02T00:00:00Z")])
    env, marker = no_jvm_env(tmp_path)
    env.pop("RESTLAKE_API_KEYS", None)
    done = restlake(env, "--warehouse", str(store.warehouse.root), "serve", "--schedule",
                    "--port", str(free_port()), *options, cwd=tmp_path)
    assert done.returncode == 1, (done.stdout[-1000:], done.stderr[-1000:])
    assert ("--public-read" if options else "no API keys") in done.stderr
    assert not marker.exists()
    [row] = RsDeltaTable(str(store.warehouse.path(store.control_ref))).to_pyarrow_table().to_pylist()
    assert (row["LoadStatus"], row["Attempt"], row["ClaimedBy"]) == ("PENDING", 0, None)
    assert RsDeltaTable(str(store.warehouse.path(store.audit_ref))).to_pyarrow_table().num_rows == 0


def test_a_sigterm_while_serve_warms_up_exits_0(thousand, tmp_path):
    # A SIGTERM as the service starts (a supervisor's restart) came while its warm-up
    # thread read the tables; the process ended meanwhile and died in the reader's native
    # threads (exit 139) or, before uvicorn handled signals, was ignored.
    env, marker = no_jvm_env(tmp_path)
    env.update(RESTLAKE_KEY="k" * 32, RESTLAKE_API_KEYS="env:RESTLAKE_KEY")
    codes = []
    for _ in range(4):
        proc = subprocess.Popen([str(RESTLAKE), "--warehouse", str(thousand.root), "serve",
                                 "--port", str(free_port())], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "restlake serve on" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        codes.append((proc.returncode, err[-500:]))
    assert [code for code, _ in codes] == [0] * 4, codes
    assert not marker.exists()
