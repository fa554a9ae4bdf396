"""The local session's start: the remembered Delta jars, and a start in the background
(no JVM here: the start function is a stand-in)."""

from __future__ import annotations

import threading

import pytest

from framework.errors import LoadInterrupted, SparkUnavailable
from framework.lake.spark import SparkStarting, cached_jars, jar_cache_file, remember_jars


class FakeSession:
    def __init__(self) -> None:
        self.read = "the reader"
        self._jvm = "gateway"


def test_the_first_use_waits_for_a_background_start_and_gets_the_session():
    gate, calls = threading.Event(), []

    def start():
        calls.append(threading.current_thread().name)
        gate.wait(timeout=30)
        return FakeSession()

    spark = SparkStarting(start)
    assert calls == [] and not spark.ready  # nothing starts before begin()
    spark.begin()
    got: list = []
    user = threading.Thread(target=lambda: got.append(spark.read))
    user.start()
    user.join(timeout=0.2)
    assert user.is_alive() and got == []  # waiting for the start, not failing
    gate.set()
    user.join(timeout=30)
    assert got == ["the reader"] and spark._jvm == "gateway" and spark.ready
    assert calls == ["restlake-spark-start"]  # one start, in the background thread
    assert spark.session() is spark.session()


def test_a_use_before_begin_starts_the_session_in_the_callers_thread():
    calls = []
    spark = SparkStarting(lambda: calls.append(threading.current_thread().name) or FakeSession())
    assert spark.read == "the reader"
    assert calls == [threading.current_thread().name]
    spark.begin()  # already started: no second start
    assert len(calls) == 1


def test_a_failed_start_is_a_drain_for_the_loads_and_reported_once():
    reported = []
    done = threading.Event()

    def start():
        raise RuntimeError("Java gateway process exited before sending its port number\n"
                           "        at org.example.Launcher.main(Launcher.java:1)")

    def on_failure(exc):
        reported.append(exc)
        done.set()

    spark = SparkStarting(start).begin(on_failure=on_failure)
    assert done.wait(timeout=30)
    with pytest.raises(SparkUnavailable) as caught:
        spark.read  # noqa: B018 - the first use
    assert isinstance(caught.value, LoadInterrupted)  # the runtime releases the row
    message = str(caught.value)
    assert "Spark did not start: RuntimeError: Java gateway process exited" in message
    assert "\n" not in message and "Launcher.java" not in message  # one line, no trace
    assert [type(e) for e in reported] == [RuntimeError]
    assert isinstance(spark.failure, RuntimeError) and not spark.ready
    later = []
    spark.begin(on_failure=later.append)  # a failure already known is reported at once
    assert len(later) == 1 and len(reported) == 1


def test_own_attributes_are_not_delegated():
    spark = SparkStarting(FakeSession)
    with pytest.raises(AttributeError):
        spark.__wrapped__  # noqa: B018 - dunder lookups never start Spark
    assert not spark.ready


def test_resolved_jars_are_remembered_and_used_while_every_file_exists(tmp_path):
    jars = [tmp_path / "io.delta_delta-spark_2.13-4.0.0.jar", tmp_path / "io.delta_delta-storage-4.0.0.jar"]
    for jar in jars:
        jar.write_bytes(b"PK")
    cache = tmp_path / "cache" / "spark-jars-delta.txt"
    assert cached_jars(cache) is None  # nothing remembered yet
    remember_jars(cache, ",".join(f"file://{j}" for j in jars))
    assert cached_jars(cache) == ",".join(f"file://{j}" for j in jars)
    jars[1].unlink()  # a cleaned Ivy cache: resolve again
    assert cached_jars(cache) is None


def test_what_is_not_a_jar_list_is_never_remembered(tmp_path):
    cache = tmp_path / "spark-jars.txt"
    remember_jars(cache, None)
    remember_jars(cache, "")
    remember_jars(cache, "file:///x/a.jar,/etc/passwd")
    assert not cache.exists()
    cache.write_text("file:///nowhere/a.jar\n")
    assert cached_jars(cache) is None


def test_the_cache_file_follows_the_environment(tmp_path):
    named = jar_cache_file({"RESTLAKE_CACHE_DIR": str(tmp_path)})
    assert named is not None and named.parent == tmp_path
    assert named.name.startswith("spark-jars-delta-spark") and named.suffix == ".txt"
    xdg = jar_cache_file({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert xdg is not None and xdg.parent == tmp_path / "xdg" / "restlake"
    assert jar_cache_file({"RESTLAKE_JAR_CACHE": "off", "RESTLAKE_CACHE_DIR": str(tmp_path)}) is None
