"""The local JVM's class archive (framework.lake.classes): which file, when it is used, how
it is made. No JVM here: the child that records the archive is replaced where noted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from framework.lake import classes
from framework.lake.spark import local_settings


def _java(tmp_path: Path, name: str = "jdk", release: str = 'JAVA_VERSION="17.0.15"') -> dict:
    home = tmp_path / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    (home / "release").write_text(release)
    return {"JAVA_HOME": str(home), "RESTLAKE_CACHE_DIR": str(tmp_path / "cache")}


def _made(path: Path, size: int = 64) -> Path:
    """An archive file as ``build`` leaves it: the file and its recorded size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    path.with_name(path.name + ".size").write_text(f"{size}\n")
    return path


def test_each_java_and_jar_set_has_its_own_archive(tmp_path):
    env = _java(tmp_path)
    path = classes.archive_file(env)

    assert path.parent == tmp_path / "cache" and path.name.startswith("spark-classes-")
    assert classes.archive_file(dict(env)) == path
    assert classes.archive_file(dict(env, RESTLAKE_SPARK_JARS="/jars/delta.jar")) != path
    assert classes.archive_file(_java(tmp_path, "jdk21", 'JAVA_VERSION="21"')) != path
    assert classes.archive_file(dict(env, RESTLAKE_CLASS_ARCHIVE="off")) is None
    assert classes.archive_file({"PATH": str(tmp_path / "nowhere")}) is None  # no java


def test_an_archive_is_used_only_whole(tmp_path):
    env = _java(tmp_path)
    path = classes.archive_file(env)
    assert classes.java_options(env) == ""  # not made yet

    _made(path)
    assert classes.java_options(env).split()[:2] == [f"-XX:SharedArchiveFile={path}", "-Xshare:auto"]
    path.write_bytes(b"x" * 10)  # cut short: Java would crash mapping it
    assert classes.java_options(env) == ""
    _made(path)
    path.with_name(path.name + ".size").unlink()  # its size was never recorded
    assert classes.java_options(env) == ""


def test_a_path_spark_would_split_is_not_used(tmp_path):
    env = _java(tmp_path)
    env["RESTLAKE_CACHE_DIR"] = str(tmp_path / "my cache")
    _made(classes.archive_file(env))
    assert classes.java_options(env) == ""
    with pytest.raises(RuntimeError, match="space or a quote"):
        classes.build(env)


def test_the_sessions_jvm_maps_the_archive_before_the_users_own_options(tmp_path):
    env = _java(tmp_path)
    path = _made(classes.archive_file(env))
    options = local_settings(None, dict(env, RESTLAKE_SPARK_JAVA_OPTIONS="-Xshare:on"))[
        "spark.driver.extraJavaOptions"].split()

    assert options.index(f"-XX:SharedArchiveFile={path}") < options.index("-Xshare:on")
    assert "-Duser.timezone=UTC" in options
    classes.set_aside(path)
    assert not path.exists() and classes.java_options(env) == ""


def test_build_renames_the_childs_archive_into_place_with_its_size(tmp_path, monkeypatch):
    env = _java(tmp_path)
    seen = {}

    def child(cmd, env, **kwargs):  # the JVM's part: it writes the file named in its options
        seen.update(env)
        dump = next(o for o in env["RESTLAKE_SPARK_JAVA_OPTIONS"].split()
                    if o.startswith("-XX:ArchiveClassesAtExit="))
        Path(dump.split("=", 1)[1]).write_bytes(b"a" * 100)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(classes.subprocess, "run", child)
    path = classes.build(dict(env, RESTLAKE_SPARK_JAVA_OPTIONS="-XX:+UseSerialGC"))

    assert path == classes.archive_file(env) and path.stat().st_size == 100
    assert classes.java_options(env).startswith(f"-XX:SharedArchiveFile={path}")
    assert seen["RESTLAKE_CLASS_ARCHIVE"] == "off"  # the recording JVM maps none itself
    assert seen["RESTLAKE_SPARK_JAVA_OPTIONS"].startswith("-XX:+UseSerialGC ")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".size"]
    assert classes.build(env) == path  # made: not again


def test_a_child_that_leaves_no_archive_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    env = _java(tmp_path)
    monkeypatch.setattr(classes.subprocess, "run", lambda cmd, env, **kw: subprocess.CompletedProcess(
        cmd, 1, "", "Traceback ...\nJAVA_GATEWAY_EXITED: Java gateway process exited"))

    with pytest.raises(RuntimeError, match="not written: JAVA_GATEWAY_EXITED"):
        classes.build(env)
    assert not any((tmp_path / "cache").iterdir())
