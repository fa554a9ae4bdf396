"""Shared fixtures: one local Spark + Delta session per test run, a warehouse per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test run (local[2], few partitions, UI off)."""
    from framework.lake.spark import get_spark

    session = get_spark("restlake-tests", master="local[2]",
                        conf={"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"})
    # The commands tests start as processes (crash kills, signals, the CLI) are one-shot:
    # their JVMs start without the optimizing JIT and with one GC thread, as
    # RESTLAKE_SPARK_JAVA_OPTIONS is meant for. This session (long-lived) keeps the default.
    child = os.environ.get("RESTLAKE_TEST_CHILD_JAVA_OPTIONS",
                           "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    if child:
        os.environ.setdefault("RESTLAKE_SPARK_JAVA_OPTIONS", child)
    yield session
    session.stop()


@pytest.fixture(params=["threads", "spark"])
def executor(request):
    """The two ways ``run`` fetches windows: threads on the driver, or Spark tasks
    (``run --distributed``). Tests of the README's guarantees run on both."""
    return request.param


@pytest.fixture
def warehouse(tmp_path):
    from framework.lake.tables import Warehouse

    return Warehouse(tmp_path / "wh")


@pytest.fixture(scope="session")
def initialized_warehouse(spark, session_tmp):
    """A warehouse folder on which ``init`` ran once (the control plane's tables and, as
    ``restlake init`` makes it, the health log); each ``store`` starts from a copy."""
    from control.store import ControlStore
    from framework.lake.tables import Warehouse
    from framework.ops.health_store import ensure_table

    template = Warehouse(session_tmp / "initialized" / "wh")
    ControlStore(spark, template).init()
    ensure_table(spark, template)
    return template.root


@pytest.fixture
def store(spark, warehouse, initialized_warehouse):
    """An initialized control store in this test's warehouse. The empty tables are copied
    from a warehouse initialized once per run (creating them is the slow part); ``init``
    then runs on the copy as on any existing warehouse."""
    from control.store import ControlStore

    if not Path(warehouse.root).exists():
        shutil.copytree(initialized_warehouse, warehouse.root)
    st = ControlStore(spark, warehouse)
    st.init()
    return st


@pytest.fixture(scope="session")
def session_tmp():
    path = Path(tempfile.mkdtemp(prefix="restlake-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def secret_registry(monkeypatch):
    """Each test forgets the secrets it registered (the registry is process-wide): a base
    URL a test kept in ``${ENV}`` is registered for masking, and a later test's server that
    got the same port would see its own URL masked in messages."""
    from framework import secrets

    monkeypatch.setattr(secrets, "_secrets", set(secrets._secrets))
