"""The class archive made for real: a JVM records it, the next JVM maps it (``-Xshare:on``
makes a JVM that cannot map it fail), and a session whose start fails with a broken
archive starts without it and sets it aside."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from framework.lake import classes
from framework.lake.spark import cached_jars, jar_cache_file

pytestmark = pytest.mark.spark

SESSION = """
import sys
from framework.lake.spark import get_spark
spark = get_spark("archive-test", master="local[1]")
spark.range(3).write.format("delta").save(sys.argv[1])
print("rows", spark.read.format("delta").load(sys.argv[1]).count())
"""


def _session(env: dict, target) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SESSION, str(target)], env=env,
                          cwd=target.parent, capture_output=True, text=True, timeout=600)


def test_the_archive_is_made_once_and_mapped_by_the_next_sessions(tmp_path):
    # the jars this machine resolved, so that the empty cache folder costs no resolution
    cache = jar_cache_file(os.environ)
    jars = os.environ.get("RESTLAKE_SPARK_JARS") or (cached_jars(cache) if cache else None)
    env = dict(os.environ, RESTLAKE_CACHE_DIR=str(tmp_path / "cache"), RESTLAKE_SPARK_JARS=jars or "")
    if not jars:
        env.pop("RESTLAKE_SPARK_JARS")
    env.pop("RESTLAKE_CLASS_ARCHIVE", None)
    path = classes.build(env)
    assert path is not None and classes.usable_archive(env) == path

    mapped = _session(dict(env, RESTLAKE_SPARK_JAVA_OPTIONS="-Xshare:on"), tmp_path / "t1")
    assert mapped.returncode == 0 and "rows 3" in mapped.stdout, mapped.stderr[-2000:]

    # cut short, with a size that claims it whole: the JVM cannot start with it
    with open(path, "r+b") as archive:
        archive.truncate(path.stat().st_size // 2)
    path.with_name(path.name + ".size").write_text(f"{path.stat().st_size}\n")
    broken = _session(env, tmp_path / "t2")
    assert broken.returncode == 0 and "rows 3" in broken.stdout, broken.stderr[-2000:]
    assert "set aside" in broken.stderr
    assert not path.exists() and classes.usable_archive(env) is None
