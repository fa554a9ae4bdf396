"""The Spark + Delta session: Databricks' active one, or a local one built here.

Local sessions resolve the Delta jars from Maven Central at first start
(``spark.jars.packages`` via ``configure_spark_with_delta_pip``) and remember the jar files
that resolution gave (:func:`jar_cache_file`): later starts use them with ``spark.jars``
and skip the resolution (seconds per command). Offline, point ``RESTLAKE_SPARK_JARS`` at
local jars (comma-separated paths) and they are used with ``spark.jars`` instead.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

log = logging.getLogger(__name__)

DEFAULT_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Small metadata tables: Delta's defaults (50 snapshot partitions) cost seconds per commit.
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.databricks.delta.stateReconstructionValidation.enabled": "false",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    "spark.databricks.delta.merge.repartitionBeforeWrite.enabled": "false",
    # Adaptive execution submits every shuffle stage as a job of its own: a one-row control
    # MERGE took 13 jobs with it, 6 without (bench/README.md). It only re-plans (partition
    # coalescing, join strategy), never changes a result; locally, with few shuffle
    # partitions, it has little to re-plan.
    "spark.sql.adaptive.enabled": "false",
}


#: log4j2 settings of local sessions (a file of this package)
LOG4J_CONFIG = Path(__file__).resolve().with_name("log4j2.properties")


def on_databricks() -> bool:
    """True inside a Databricks runtime (notebook, job or wheel task)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def get_spark(app_name: str = "restlake", *, master: str | None = None,
              conf: dict[str, Any] | None = None) -> Any:
    """Return the active SparkSession, or build a local Spark + Delta session.

    Args:
        app_name: the application name of a new local session.
        master: Spark master of a new local session (default ``RESTLAKE_SPARK_MASTER``
            or ``local[*]``).
        conf: extra Spark settings for a new local session.

    ``RESTLAKE_SPARK_JAVA_OPTIONS`` adds JVM options to a new local session's driver (for
    example ``-XX:TieredStopAtLevel=1 -XX:+UseSerialGC`` for one-shot commands: half the JVM's
    CPU at start; longer processes are faster with the default JIT).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession() or _session_of_this_process(SparkSession)
    if active is not None:
        return active
    if on_databricks():
        return SparkSession.builder.getOrCreate()

    # PySpark turns naive datetimes into local time; restlake's timestamps are UTC.
    os.environ["TZ"] = "UTC"
    time.tzset()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", _python())

    builder = SparkSession.builder.appName(app_name).master(
        master or os.environ.get("RESTLAKE_SPARK_MASTER", "local[*]"))
    for key, value in local_settings(conf, os.environ).items():
        builder = builder.config(key, value)
    jars = os.environ.get("RESTLAKE_SPARK_JARS")
    cache = None if jars else jar_cache_file(os.environ)
    if not jars and cache is not None:
        jars = cached_jars(cache)
    if jars:
        builder = builder.config("spark.jars", jars)
    else:
        from delta import configure_spark_with_delta_pip

        builder = configure_spark_with_delta_pip(builder)
    started = time.monotonic()
    try:
        spark = builder.getOrCreate()
    except Exception:
        builder = _without_class_archive(builder, conf, os.environ)
        if builder is None:
            raise
        spark = builder.getOrCreate()
    if cache is not None and not jars:
        remember_jars(cache, spark.sparkContext.getConf().get("spark.jars"))
    spark.sparkContext.setLogLevel(os.environ.get("RESTLAKE_SPARK_LOG_LEVEL", "ERROR"))
    log.info("local Spark %s started in %.1fs", spark.version, time.monotonic() - started)
    return spark


def _without_class_archive(builder: Any, conf: dict[str, Any] | None, environ: Any) -> Any:
    """The builder again without the class archive's options, when the failed start used
    the archive (it is set aside, so later starts do not try it); else ``None``."""
    from framework.lake.classes import set_aside, usable_archive

    archive = usable_archive(environ)
    if archive is None:
        return None
    log.warning("Spark did not start with the class archive %s: it is set aside and Spark "
                "starts without it", archive)
    set_aside(archive)
    key = "spark.driver.extraJavaOptions"
    return builder.config(key, local_settings(conf, environ).get(key, ""))


def _session_of_this_process(session_class: Any) -> Any:
    """The session this process already started, seen from any thread.

    ``getActiveSession`` is per thread: from a thread other than the one that built the
    session it answers ``None``, and building again would return the same session with
    the local defaults applied over its settings (``SparkStarting`` starts in a thread).
    """
    session = getattr(session_class, "_instantiatedSession", None)
    if session is None or getattr(session.sparkContext, "_jsc", None) is None:  # stopped
        return None
    return session


def jar_cache_file(environ: Mapping[str, str]) -> Optional[Path]:
    """Where the jar files of this install's Delta package are remembered once resolved:
    ``RESTLAKE_CACHE_DIR`` (else ``$XDG_CACHE_HOME/restlake``, else ``~/.cache/restlake``),
    one file per Delta artifact and version; ``None`` when ``RESTLAKE_JAR_CACHE=off`` or
    the version cannot be known."""
    from framework.lake.classes import OFF, cache_dir

    if environ.get("RESTLAKE_JAR_CACHE", "").lower() in OFF:
        return None
    try:
        from framework.lake.jars import delta_coordinates

        artifact, version = delta_coordinates()
    except Exception:  # noqa: BLE001 - no cache then; the resolution works as before
        return None
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{artifact}-{version}")
    return cache_dir(environ) / f"spark-jars-{name}.txt"


def cached_jars(cache: Path) -> Optional[str]:
    """The remembered ``spark.jars`` value, when the file exists and every jar it names
    still does (a cleaned Ivy cache makes the next start resolve again)."""
    try:
        paths = _jar_list(cache.read_text(encoding="utf-8"))
    except OSError:
        return None
    if not paths or not all(p.endswith(".jar") and Path(_local_path(p)).is_file() for p in paths):
        return None
    return ",".join(paths)


def remember_jars(cache: Path, jars: Optional[str]) -> None:
    """Keep the jar files a resolution gave (written whole or not at all; a failure to
    write only costs the next start its resolution)."""
    paths = _jar_list(jars or "")
    if not paths or not all(p.endswith(".jar") for p in paths):
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text(",".join(paths) + "\n", encoding="utf-8")
        os.replace(tmp, cache)
    except OSError as exc:
        log.debug("could not remember the Delta jars in %s: %s", cache, exc)


def _jar_list(value: str) -> list[str]:
    """The entries of a comma-separated ``spark.jars`` value."""
    return [p.strip() for p in value.split(",") if p.strip()]


def _local_path(jar: str) -> str:
    return jar[len("file://"):] if jar.startswith("file://") else jar


class SparkStarting:
    """A SparkSession that starts in a background thread, used where a session is expected.

    ``restlake run`` claims its rows and fetches their windows (neither needs Spark on a
    local warehouse) while the JVM starts. :meth:`begin` starts it; the first use of the
    session (an attribute read: ``spark.read``, ``spark._jvm``) waits for the start, and
    starts it in the caller's thread when nothing did yet. When the start fails, that use
    raises :class:`~framework.errors.SparkUnavailable` (a drain: the load's row goes back to
    PENDING, not FAILED) and :meth:`begin`'s ``on_failure`` is called once.
    """

    _OWN = frozenset({"_start", "_lock", "_begun", "_done", "_session", "_error", "_on_failure"})

    def __init__(self, start: Callable[[], Any]) -> None:
        self._start = start
        self._lock = threading.Lock()
        self._begun = False
        self._done = threading.Event()
        self._session: Any = None
        self._error: Optional[BaseException] = None
        self._on_failure: Optional[Callable[[BaseException], None]] = None

    def begin(self, on_failure: Optional[Callable[[BaseException], None]] = None) -> "SparkStarting":
        """Start the session in a background thread (once; later calls only set
        ``on_failure``, which is called at once when the start already failed)."""
        with self._lock:
            self._on_failure = on_failure
            failed = self._done.is_set() and self._error is not None
            start = not self._begun
            self._begun = True
        if start:
            threading.Thread(target=self._run, name="restlake-spark-start", daemon=True).start()
        elif failed:
            self._report(on_failure)
        return self

    def _run(self) -> None:
        try:
            self._session = self._start()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever needs the session
            self._error = exc
        finally:
            self._done.set()
        if self._error is not None:
            with self._lock:
                on_failure = self._on_failure
            self._report(on_failure)

    def _report(self, on_failure: Optional[Callable[[BaseException], None]]) -> None:
        if on_failure is None or self._error is None:
            return
        try:
            on_failure(self._error)
        except Exception:  # noqa: BLE001
            log.exception("on_failure of a failed Spark start failed")

    @property
    def ready(self) -> bool:
        """True once the session is up."""
        return self._done.is_set() and self._error is None

    @property
    def failure(self) -> Optional[BaseException]:
        """Why the start failed, once it did (``None`` while it runs or when it succeeded)."""
        return self._error if self._done.is_set() else None

    def session(self) -> Any:
        """The session, once started (started here and now when :meth:`begin` was not called).

        Raises:
            SparkUnavailable: the start failed (the cause is chained).
        """
        with self._lock:
            here = not self._begun
            self._begun = True
        if here:
            self._run()
        self._done.wait()
        if self._error is not None:
            from framework.errors import SparkUnavailable, trace_summary

            raise SparkUnavailable(f"Spark did not start: {trace_summary(self._error)[:500]}"
                                   ) from self._error
        return self._session

    def __getattr__(self, name: str) -> Any:
        if name in SparkStarting._OWN or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        return getattr(self.session(), name)

    def __repr__(self) -> str:
        if not self._done.is_set():
            return f"SparkStarting({'starting' if self._begun else 'not started'})"
        return f"SparkStarting({'failed' if self._error is not None else 'started'})"


def local_settings(conf: dict[str, Any] | None, environ: Any) -> dict[str, str]:
    """The settings of a new local session: the defaults, then ``conf``, then, appended to
    the driver's JVM options, those mapping the class archive when there is one
    (:mod:`framework.lake.classes`) and those of ``RESTLAKE_SPARK_JAVA_OPTIONS``.

    The JVM logs through :data:`LOG4J_CONFIG` (warnings and errors, without the notices
    every start printed) unless the options name another ``log4j2.configurationFile``.

    The session's own catalog folder (``spark.sql.warehouse.dir``) is in restlake's cache
    folder, not the current one: a local warehouse's tables are paths, and the catalog's
    empty ``spark-warehouse`` folder was left in whatever folder a command ran in."""
    from framework.lake.classes import cache_dir, java_options as archive_options

    settings = dict(DEFAULT_CONF)
    settings["spark.sql.warehouse.dir"] = str(cache_dir(environ) / "spark-warehouse")
    settings.update({k: str(v) for k, v in (conf or {}).items()})
    key = "spark.driver.extraJavaOptions"
    # the JVM's logging without the start's notices; a later -D of the same name wins
    settings[key] = f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()} {settings.get(key, '')}".strip()
    for java_options in (archive_options(environ),
                         environ.get("RESTLAKE_SPARK_JAVA_OPTIONS", "").strip()):
        if java_options:
            settings[key] = f"{settings.get(key, '')} {java_options}".strip()
    return settings


def _python() -> str:
    import sys

    return sys.executable
