"""Delta jars for local Spark: check that Spark can start with Delta, or fetch the jars.

``python -m framework.lake.jars check`` starts a local Spark + Delta session (resolving the
jars from Maven Central through ``spark.jars.packages``) and writes a tiny Delta table.
``python -m framework.lake.jars fetch --dest DIR`` downloads the same jars with Maven (which
uses the machine's Maven settings and proxy) and prints the comma-separated list to put
in ``RESTLAKE_SPARK_JARS`` (used as ``spark.jars``). ``check`` then makes the JVM's class
archive (:mod:`framework.lake.classes`) if this Java and these jars have none yet.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>restlake</groupId><artifactId>delta-jars</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>io.delta</groupId><artifactId>{artifact}</artifactId>
      <version>{version}</version></dependency>
  </dependencies>
</project>
"""


def delta_coordinates() -> tuple[str, str]:
    """(artifactId, version) of the Delta jar matching the installed delta-spark and pyspark."""
    from importlib.metadata import version

    import pyspark

    delta_version = version("delta-spark")
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    major = int(delta_version.split(".")[0])
    artifact = f"delta-spark_{spark_minor}_2.13" if major >= 4 else "delta-spark_2.13"
    return artifact, delta_version


def check() -> int:
    from framework.lake.spark import get_spark

    try:
        spark = get_spark("restlake-jar-check", master="local[1]")
        with tempfile.TemporaryDirectory() as tmp:
            spark.range(2).write.format("delta").save(tmp + "/t")
            rows = spark.read.format("delta").load(tmp + "/t").count()
        spark.stop()
    except Exception as exc:  # noqa: BLE001
        print(f"Spark + Delta did not start: {type(exc).__name__}: {str(exc)[:500]}", file=sys.stderr)
        return 1
    print(f"Spark + Delta ok ({rows} rows written and read back)")
    from framework.lake.classes import build

    try:  # faster starts from now on; without it Spark starts as before
        print(f"class archive: {build() or 'off'}")
    except RuntimeError as exc:
        print(f"class archive not made (Spark starts without it): {exc}", file=sys.stderr)
    return 0


def fetch(dest: str) -> int:
    artifact, version = delta_coordinates()
    out = Path(dest).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pom.xml").write_text(POM.format(artifact=artifact, version=version))
        cmd = ["mvn", "-q", "-f", str(Path(tmp, "pom.xml")), "dependency:copy-dependencies",
               f"-DoutputDirectory={out}", "-DincludeScope=runtime"]
        result = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if result.returncode != 0:
            print("mvn could not fetch the Delta jars", file=sys.stderr)
            return result.returncode
    jars = sorted(str(p) for p in out.glob("*.jar")
                  if not p.name.startswith(("scala-library", "slf4j")))
    print(",".join(jars))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framework.lake.jars")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check")
    f = sub.add_parser("fetch")
    f.add_argument("--dest", default=".jars")
    args = parser.parse_args(argv)
    return check() if args.cmd == "check" else fetch(args.dest)


if __name__ == "__main__":
    sys.exit(main())
