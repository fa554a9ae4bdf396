"""Exceptions of restlake, grouped by what the caller does next.

* ``RetriableError``: a transient failure (429, 5xx, timeout, reset); the HTTP
  layer retries it within the retry budget.
* ``WindowError``: the window cannot be loaded (bad response, pagination that
  never ends, 4xx); the window writes nothing and the load fails.
* ``LoadError``: the whole load cannot run (bad control row, missing secret,
  schema drift with ``schema_mode: fail``, a failed quality check of severity ``fail``). Two of them stop a load without failing
  its row: ``LeaseLostError`` (another runner holds the row now: write nothing more)
  and ``LoadInterrupted`` (a stop was requested: the row is released to PENDING).
* ``RecordRejected``: one record is bad; it goes to quarantine, the load goes on.
* ``ConfigError``: a config file or control row is invalid; raised before any I/O.

Every message is passed through :func:`framework.secrets.redact` when it is
created, so no later code has to remember to mask secrets.
"""

from __future__ import annotations

from typing import Any


def trace_summary(exc: BaseException, lines: int = 4) -> str:
    """``Type: message`` on one line, a Spark/Java trace cut to its first ``lines`` lines
    (the ``at ...`` frames dropped, the rest joined by `` | ``)."""
    text = f"{type(exc).__name__}: {exc}"
    kept = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("at ")]
    return " | ".join(kept[:lines])


class RestlakeError(Exception):
    """Base class of every restlake error; its text is already redacted."""

    def __init__(self, message: str, **context: Any) -> None:
        from framework.secrets import redact

        self.message = redact(str(message))
        self.context = context
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ConfigError(RestlakeError):
    """A config file, config value or control row is invalid."""

    def __init__(self, message: str, *, file: str | None = None, source: str | None = None,
                 field: str | None = None) -> None:
        self.file = file
        self.source = source
        self.field = field
        parts = []
        if file:
            parts.append(f"{file}:")
        if source:
            parts.append(f"source '{source}':")
        if field:
            parts.append(f"{field}:")
        parts.append(message)
        super().__init__(" ".join(parts))


class ConfigErrors(ConfigError):
    """Several problems of one config document, each a :class:`ConfigError` naming its field;
    the first one is this error's own message, file, source and field.

    Attributes:
        errors: every problem: by source, each source's in the order its model checks them.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.message)
        self.file, self.source, self.field = first.file, first.source, first.field
        self.errors = list(errors)


def config_errors(exc: ConfigError) -> list[ConfigError]:
    """Each problem of ``exc`` (one, unless it is a :class:`ConfigErrors`)."""
    return list(exc.errors) if isinstance(exc, ConfigErrors) else [exc]


class SecretError(ConfigError):
    """A secret reference cannot be resolved (the message never holds the value)."""


class RetriableError(RestlakeError):
    """A transient failure that may succeed when retried.

    Attributes:
        status: HTTP status when there was a response, else ``None``.
        retry_after: seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class WindowError(RestlakeError):
    """The window cannot be loaded; nothing of it is written to the target."""


class HttpError(WindowError):
    """A non-retriable HTTP status (400, 403, 404, ...) or retries exhausted."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AuthError(HttpError):
    """Authentication failed (401 after one refresh, or token endpoint failure)."""


class ResponseError(WindowError):
    """A response body is not JSON, is an error object, or lacks the data path."""


class PaginationError(WindowError):
    """Pagination cannot complete (repeated cursor/page/link, or a bad option)."""


class CrossOriginError(WindowError):
    """A request would carry the source's credentials outside its origin (a next link or a
    redirect to another host, or from https to http) and was not sent."""


class CompletenessError(WindowError):
    """The window's record count differs from the API's total (``completeness: strict``)."""


class LoadError(RestlakeError):
    """The load cannot run or finish."""


class SchemaDriftError(LoadError):
    """Records carry fields the target lacks while ``schema_mode`` is ``fail``."""


class QualityError(LoadError):
    """A quality check of severity ``fail`` did not pass: the load is ``FAILED_QUALITY``
    (before the commit, nothing of it was written)."""


class LeaseLostError(LoadError):
    """This runner no longer holds the control row (its lease ran out and another runner
    claimed it, or the lease could not be confirmed): it must write nothing more."""


class LoadInterrupted(LoadError):
    """A stop was requested (SIGTERM, service shutdown): the load stops at a commit or page
    checkpoint and its row goes back to PENDING."""


class SparkUnavailable(LoadInterrupted):
    """The SparkSession a load needs did not start (no Java, the Delta jars missing): the
    run stops as a drain does: each load it reached goes back to PENDING (not FAILED: the
    next run takes it up, no ``retry`` needed)."""


class CommitConflictError(LoadError):
    """A Delta commit kept conflicting with concurrent writers after retries."""


class RecordRejected(RestlakeError):
    """One record is rejected (for example, a required field is missing)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)
