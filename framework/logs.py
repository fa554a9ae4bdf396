"""One logging setup for every entry point: the CLI, the wheel tasks, the notebooks, the service.

:func:`setup_logging` installs, on the root logger, a stderr handler and optionally a
size-rotated file handler, both in one format:

* ``text`` — ``2024-01-05T00:05:00.123Z INFO framework.load.runtime: message
  [config_id=gh_issues run_id=run-… window=…]``;
* ``json`` — one object per line (python-json-logger) with ``ts, level, logger, msg``
  and, where the record belongs to a load, ``config_id, run_id, window``.

Every handler carries :class:`framework.secrets.RedactingFilter`, and the JSON formatter
masks secrets in every string field too, so neither format ever shows a secret. Which
load a record belongs to comes from :func:`log_context` (a context variable the runtime
sets around a load and a window), or from ``extra=`` on the call itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from pythonjsonlogger.json import JsonFormatter

from framework.secrets import RedactingFilter, install_log_redaction, redact

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Fields a record may carry about the load it belongs to, in output order.
CONTEXT_FIELDS = ("config_id", "run_id", "window")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log every byte at INFO/DEBUG.
NOISY = ("py4j", "urllib3", "apscheduler.executors", "apscheduler.scheduler")

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("restlake_log_context",
                                                                         default={})


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Tag every record logged inside the block (in this thread or task) with ``fields``.

    Example::

        with log_context(config_id="gh_issues", run_id=run_id):
            ...   # log.info(...) here carries config_id and run_id
    """
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    """The fields :func:`log_context` set for this thread or task."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the :func:`log_context` fields onto each record (``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _iso(created: float) -> str:
    stamp = dt.datetime.fromtimestamp(created, dt.timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """The human format: UTC timestamp, level, logger, message, then the load it belongs to."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:  # noqa: N802
        return _iso(record.created)

    def format(self, record: logging.LogRecord) -> str:  # noqa: A003
        text = super().format(record)
        tags = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS
                        if getattr(record, k, None) is not None)
        return f"{text} [{redact(tags)}]" if tags else text


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: ``ts, level, logger, msg`` first, then the load's fields,
    then any other ``extra=`` field; every string in it redacted."""

    def __init__(self) -> None:
        super().__init__(["levelname", "name", "message"],
                         rename_fields={"levelname": "level", "name": "logger", "message": "msg"},
                         json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["ts"] = _iso(record.created)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        first = ("ts", "level", "logger", "msg", *CONTEXT_FIELDS)
        ordered = {k: log_data[k] for k in first if log_data.get(k) is not None}
        ordered.update({k: v for k, v in log_data.items() if k not in first})
        return {k: _redact_value(v) for k, v in ordered.items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


def _formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    return JsonLineFormatter() if fmt == "json" else TextFormatter()


def setup_logging(level: Union[str, int] = "INFO", fmt: str = "text",
                  file: Optional[Union[str, Path]] = None, *,
                  max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS,
                  stream: Any = None) -> list[logging.Handler]:
    """Install restlake's logging on the root logger (again: replaces its own handlers).

    Args:
        level: root level (``"INFO"``, ``"WARNING"``, ... or a number).
        fmt: ``"text"`` or ``"json"`` (one object per line).
        file: also log to this file, rotated when it reaches ``max_bytes`` (keeping
            ``backups`` old files: ``FILE.1`` ... ``FILE.N``).
        stream: where the console handler writes (default ``sys.stderr``).

    Returns:
        the handlers installed.

    Raises:
        ValueError: an unknown format or level.
    """
    if isinstance(level, str):
        if level.upper() not in LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        level = getattr(logging, level.upper())
    formatter = _formatter(fmt)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_restlake", False)]:
        root.removeHandler(old)
        old.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if file:
        path = Path(file).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True))
    for handler in handlers:
        handler._restlake = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter)
        handler.addFilter(ContextFilter())
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, int(level)))
    install_log_redaction()  # handlers someone else installed (a notebook's, a cluster's)
    return handlers


def add_arguments(parser: Any, *, suppress: bool = False, level: Optional[str] = None) -> None:
    """Add ``--log-format``, ``--log-file``, ``--log-level`` and ``--log-max-mb`` to ``parser``.

    Args:
        suppress: leave the options unset unless given (for subcommands that repeat
            the global options, so ``restlake --log-format json run`` and ``restlake run
            --log-format json`` both work).
        level: the default level (``None``: the command decides).
    """
    import argparse

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--log-format", choices=FORMATS, default=default("text"),
                        help="log lines as text (default) or one JSON object per line")
    parser.add_argument("--log-file", metavar="PATH", default=default(None),
                        help="also log to PATH, rotated by size (see --log-max-mb)")
    parser.add_argument("--log-level", choices=LEVELS, type=str.upper, default=default(level),
                        help="lowest level logged" + (f" (default {level})" if level else ""))
    from framework.cli.options import number

    parser.add_argument("--log-max-mb", type=number(float, above=0), default=default(10.0), metavar="MB",
                        help="rotate the log file at this size, keeping 5 old files (default 10)")


def setup_from_args(args: Any, default_level: str = "WARNING") -> list[logging.Handler]:
    """:func:`setup_logging` from the options :func:`add_arguments` added."""
    level = getattr(args, "log_level", None) or default_level
    return setup_logging(level, getattr(args, "log_format", "text") or "text",
                         getattr(args, "log_file", None),
                         max_bytes=int(float(getattr(args, "log_max_mb", 10.0) or 10.0) * 1024 * 1024))
