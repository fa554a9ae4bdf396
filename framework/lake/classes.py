"""A class-data archive for the local Spark driver's JVM (Java's AppCDS).

Every local session's JVM loads, parses and verifies the same several thousand Spark,
Scala and Delta classes again: seconds of CPU at each start and at its first Delta write.
``python -m framework.lake.classes build`` (also run by ``python -m framework.lake.jars
check``) runs a small Delta workload once in a JVM started with
``-XX:ArchiveClassesAtExit``; later local sessions map the archive it leaves
(``-XX:SharedArchiveFile``), which holds those classes already parsed and verified.

The archive is specific to one Java build and one set of jars: its file name carries a
key of the ``java`` binary, its ``release`` file, pyspark's and delta-spark's versions and
``RESTLAKE_SPARK_JARS``, so a new Java or a new jar set looks for (and needs) another
archive. Java itself checks an archive against the running JVM and its class path and
ignores one that does not match (``-Xshare:auto``): a stale archive costs its speed-up,
never a start. ``RESTLAKE_CLASS_ARCHIVE=off`` leaves it out. Nothing here imports Spark.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Optional

OFF = ("off", "0", "false", "no")
#: the JVM's own messages about the archive (a mismatch, classes it cannot archive) are
#: not restlake's user's concern: the JVM goes on without it
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``RESTLAKE_CACHE_DIR``, else ``$XDG_CACHE_HOME/restlake``, else ``~/.cache/restlake``."""
    root = environ.get("RESTLAKE_CACHE_DIR")
    if root:
        return Path(root)
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "restlake"


def java_binary(environ: Mapping[str, str]) -> Optional[Path]:
    """The ``java`` Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").is_file():
        return Path(home, "bin", "java")
    found = shutil.which("java", path=environ.get("PATH", ""))
    return Path(found) if found else None


def archive_file(environ: Mapping[str, str]) -> Optional[Path]:
    """Where this Java's and these jars' archive is kept; ``None`` when it is off or no
    ``java`` is found."""
    if environ.get("RESTLAKE_CLASS_ARCHIVE", "").lower() in OFF:
        return None
    java = java_binary(environ)
    if java is None:
        return None
    try:
        real = Path(os.path.realpath(java))
        stat = real.stat()
        release = real.parent.parent / "release"
        release_text = release.read_text(encoding="utf-8", errors="replace") if release.is_file() else ""
    except OSError:
        return None
    key = hashlib.sha256("\n".join([
        str(real), str(stat.st_size), str(stat.st_mtime_ns), release_text,
        _version("pyspark"), _version("delta-spark"), environ.get("RESTLAKE_SPARK_JARS", ""),
    ]).encode("utf-8")).hexdigest()[:16]
    return cache_dir(environ) / f"spark-classes-{key}.jsa"


def usable_archive(environ: Mapping[str, str]) -> Optional[Path]:
    """The archive, when it is there whole: its size is the one recorded when it was made
    (Java maps the file, and a cut one crashes the JVM at start instead of being ignored)."""
    path = archive_file(environ)
    if path is None or not _plain(str(path)):
        return None
    try:
        recorded = int(_size_file(path).read_text(encoding="utf-8").strip())
        return path if path.stat().st_size == recorded else None
    except (OSError, ValueError):
        return None


def java_options(environ: Mapping[str, str]) -> str:
    """The JVM options that map the archive, or ``""`` when there is none (yet)."""
    path = usable_archive(environ)
    return f"-XX:SharedArchiveFile={path} -Xshare:auto {QUIET}" if path is not None else ""


def set_aside(path: Path) -> None:
    """Stop using an archive a JVM could not start with (the next ``build`` makes another)."""
    for stale in (_size_file(path), path):
        try:
            stale.unlink()
        except OSError:
            pass


def _size_file(path: Path) -> Path:
    return path.with_name(path.name + ".size")


def _plain(text: str) -> bool:
    """Whether ``text`` survives Spark's splitting of ``extraJavaOptions`` on whitespace."""
    return not any(c.isspace() or c in "\"'\\" for c in text)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def build(environ: Optional[Mapping[str, str]] = None, *, force: bool = False) -> Optional[Path]:
    """Make the archive (unless it exists and ``force`` is false); returns its path.

    The workload runs in a child process whose JVM writes the archive when it exits; the
    file is renamed into place only then (never half written where a start looks).

    Raises:
        RuntimeError: the workload failed, or its JVM left no archive.
    """
    environ = dict(os.environ if environ is None else environ)
    path = archive_file(environ)
    if path is None:
        return None
    if usable_archive(environ) is not None and not force:
        return path
    if not _plain(str(path)):
        raise RuntimeError(f"the class archive's path {path} holds a space or a quote; "
                           "set RESTLAKE_CACHE_DIR to a plain path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    options = " ".join(filter(None, [environ.get("RESTLAKE_SPARK_JAVA_OPTIONS", "").strip(),
                                     f"-XX:ArchiveClassesAtExit={tmp}", QUIET]))
    # the child maps no archive of its own (an archive cannot be dumped over another)
    env = dict(environ, RESTLAKE_CLASS_ARCHIVE="off", RESTLAKE_SPARK_JAVA_OPTIONS=options)
    try:
        done = subprocess.run([sys.executable, "-m", "framework.lake.classes", "workload"],
                              env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError("the class archive was not written: "
                               + (done.stderr.strip().splitlines() or ["no output"])[-1][:300])
        size = tmp.stat().st_size
        os.replace(tmp, path)
        _size_file(tmp).write_text(f"{size}\n", encoding="utf-8")
        os.replace(_size_file(tmp), _size_file(path))
    finally:
        tmp.unlink(missing_ok=True)
        _size_file(tmp).unlink(missing_ok=True)
    return path


def workload() -> int:
    """What the archive is recorded from: a session's start and the Delta paths of a load
    (JSON read against a schema, the one-row-per-key window, an idempotent append, a
    MERGE, an overwrite, reads and the history), then the JVM's exit, awaited."""
    from pyspark import SparkContext
    from pyspark.sql import Window as W
    from pyspark.sql import functions as F

    from framework.lake.spark import get_spark

    spark = get_spark("restlake-class-archive", master="local[2]")
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp, "rows.jsonl")
        rows.write_text("".join(
            f'{{"id": {i}, "title": "t{i}", "score": {i / 3}, "open": true, '
            f'"user": {{"login": "u{i}"}}, "at": "2024-01-0{1 + i % 2}T00:00:00.000000Z", '
            f'"_seq": {i}}}\n' for i in range(20)), encoding="utf-8")
        schema = ("id long, title string, score double, open boolean, user string, "
                  "at timestamp, _seq long")
        df = spark.read.schema(schema).option("mode", "FAILFAST").json(str(rows))
        ranked = df.withColumn("_rank", F.row_number().over(
            W.partitionBy("id").orderBy(F.col("at").desc_nulls_last(), F.col("_seq").desc())))
        frame = ranked.where(F.col("_rank") == 1).drop("_rank", "_seq")
        target = str(Path(tmp, "t"))
        (frame.write.format("delta").mode("append").option("txnAppId", "restlake:archive")
         .option("txnVersion", 1).save(target))
        from delta.tables import DeltaTable

        (DeltaTable.forPath(spark, target).alias("t")
         .merge(frame.alias("s"), "t.id = s.id")
         .whenMatchedUpdateAll(condition="t.title <> s.title").whenNotMatchedInsertAll().execute())
        frame.write.format("delta").mode("overwrite").save(target)
        spark.read.format("delta").load(target).groupBy("open").count().collect()
        DeltaTable.forPath(spark, target).history(1).collect()
    gateway = SparkContext._gateway
    spark.stop()
    process = getattr(gateway, "proc", None)
    gateway.shutdown()
    if process is not None:  # the JVM writes the archive as it exits
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=600)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framework.lake.classes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="make the archive for this Java and these jars")
    b.add_argument("--force", action="store_true", help="make it again though it exists")
    sub.add_parser("path", help="print where the archive is (or would be) kept")
    sub.add_parser("workload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cmd == "workload":
        return workload()
    if args.cmd == "path":
        print(archive_file(os.environ) or "off")
        return 0
    try:
        path = build(force=args.force)
    except RuntimeError as exc:
        print(f"class archive: {exc}", file=sys.stderr)
        return 1
    print(f"class archive: {path}" if path else "class archive: off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
