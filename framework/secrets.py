"""Secret references and masking.

A config never holds a secret value, only a reference:

* ``env:NAME`` — the environment variable ``NAME``;
* ``file:PATH`` — the content of a file (trailing newline stripped);
* ``databricks:SCOPE/KEY`` — ``dbutils.secrets.get(SCOPE, KEY)`` on Databricks.

Every value resolved here is registered with the process-wide redactor, and
:func:`redact` replaces registered values (and common credential shapes in URLs
and headers) with ``***``. Errors, log lines and audit rows pass through it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable

MASK = "***"
MIN_ENV_MASK = 8  # ${ENV} values this long or longer are masked like secrets
REF_PATTERN = re.compile(r"^(env|file|databricks):(.+)$")

_lock = threading.Lock()
_secrets: set[str] = set()
_dbutils_provider: Callable[[], Any] | None = None

# Credentials that may show up in text even when not resolved by us
# (e.g. a token echoed back by an API in an error body).
_SHAPES = [
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(bearer|basic|api-token|token)?\s*[^\s,;'\"]+"),
     lambda m: f"{m.group(1)}{(m.group(2) + ' ') if m.group(2) else ''}{MASK}"),
    # a credential-named query parameter, also under a prefix (X-Amz-Security-Token,
    # X-Goog-Signature, auth_token: a pre-signed link's session token and signature)
    (re.compile(r"(?i)([?&](?:[\w.-]*[-_.])?(?:api[_-]?key|apikey|access_token|token|key|client_secret|password|secret|sig|signature)=)[^&\s'\"#]+"),
     lambda m: f"{m.group(1)}{MASK}"),
    (re.compile(r"(?i)(\"(?:access_token|refresh_token|client_secret|password|api_key|token)\"\s*:\s*\")[^\"]*(\")"),
     lambda m: f"{m.group(1)}{MASK}{m.group(2)}"),
    (re.compile(r"(https?://)[^/\s:@]+:[^/\s@]+@"), lambda m: f"{m.group(1)}{MASK}@"),
]


def is_reference(value: str) -> bool:
    """True when ``value`` has the form of a secret reference."""
    return isinstance(value, str) and bool(REF_PATTERN.match(value.strip()))


def reference_problem(reference: str) -> str | None:
    """Why a reference-shaped value can never resolve, or ``None`` (checked without
    resolving it: ``validate`` runs where the secrets are not)."""
    match = REF_PATTERN.match((reference or "").strip())
    if not match:
        return "expected a secret reference env:NAME, file:PATH or databricks:SCOPE/KEY"
    kind, target = match.group(1), match.group(2)
    if kind == "env" and (any(c.isspace() for c in target) or "=" in target):
        return f"env:{target} is not an environment variable name"
    if kind == "databricks":
        scope, _, key = target.partition("/")
        if not scope or not key:
            return f"databricks:{target} needs a scope and a key: databricks:SCOPE/KEY"
    return None


@functools.lru_cache(maxsize=256)
def _as_shown(secret: str) -> tuple[str, ...]:
    """``secret`` as text may show it: itself, and escaped as ``repr`` and JSON escape it
    (an exception quoting a header value writes a line break as ``\\n``)."""
    forms = [secret]
    if not secret.isprintable() or "\\" in secret or '"' in secret or "'" in secret:
        for form in (repr(secret)[1:-1], json.dumps(secret)[1:-1],
                     json.dumps(secret, ensure_ascii=False)[1:-1]):
            if form not in forms:
                forms.append(form)
    return tuple(forms)


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@functools.lru_cache(maxsize=256)
def _as_in_urls(secret: str) -> "re.Pattern[str] | None":
    """A pattern matching ``secret`` as a URL may carry it: each character that a URL
    encodes either as is or percent-encoded (either case), a space also as ``+``; ``None``
    when no character of it is ever encoded (the plain match covers it)."""
    if all(c in _UNRESERVED for c in secret):
        return None
    parts = []
    for char in secret:
        if char in _UNRESERVED:
            parts.append(re.escape(char))
            continue
        escaped = "".join(f"%(?i:{b:02x})" for b in char.encode("utf-8"))
        extra = r"|\+" if char == " " else ""
        parts.append(f"(?:{re.escape(char)}|{escaped}{extra})")
    return re.compile("".join(parts))


def register(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` masks it everywhere."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def set_dbutils_provider(provider: Callable[[], Any] | None) -> None:
    """Install a function returning ``dbutils`` (Databricks, or a local stand-in)."""
    global _dbutils_provider
    _dbutils_provider = provider


def _dbutils() -> Any:
    if _dbutils_provider is not None:
        return _dbutils_provider()
    try:  # Databricks notebooks and jobs
        from pyspark.dbutils import DBUtils  # type: ignore
        from pyspark.sql import SparkSession

        return DBUtils(SparkSession.getActiveSession())
    except Exception:  # noqa: BLE001 - any failure means "not on Databricks"
        import builtins

        if hasattr(builtins, "dbutils"):
            return builtins.dbutils  # type: ignore[attr-defined]
    return None


def resolve(reference: str, *, field: str = "secret") -> str:
    """Resolve a secret reference to its value and register it for masking.

    Args:
        reference: ``env:NAME``, ``file:PATH`` or ``databricks:SCOPE/KEY``.
        field: the config field, named in errors.

    Raises:
        SecretError: the reference is malformed or its value is unavailable.
    """
    from framework.errors import SecretError

    problem = reference_problem(reference)
    if problem:
        raise SecretError(problem, field=field)
    kind, target = REF_PATTERN.match(reference.strip()).groups()  # type: ignore[union-attr]
    if kind == "env":
        value = os.environ.get(target)
        if value is None:
            raise SecretError(f"environment variable {target} is not set", field=field)
    elif kind == "file":
        path = Path(target).expanduser()
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}", field=field) from None
    else:
        scope, _, key = target.partition("/")
        dbutils = _dbutils()
        if dbutils is None:
            raise SecretError(f"databricks secret {scope}/{key} needs dbutils (run on Databricks)",
                              field=field)
        try:
            value = dbutils.secrets.get(scope=scope, key=key)
        except Exception as exc:  # noqa: BLE001
            raise SecretError(f"databricks secret {scope}/{key} is unavailable: "
                              f"{type(exc).__name__}", field=field) from None
    if not value:
        raise SecretError(f"secret {kind}:{target} is empty", field=field)
    register(value)
    return value


def expand_env(text: str, *, field: str = "endpoint") -> str:
    """Expand ``${NAME}`` from the environment at request time.

    The config keeps the template (``https://${API_HOST}/v1?key=${KEY}``), so the control
    row and the audit never hold the values; each value of :data:`MIN_ENV_MASK` characters
    or more is registered for masking, since ``${...}`` is how a config keeps a value out
    of the tables (shorter ones, such as ``v2``, would mask ordinary text).

    Raises:
        ConfigError: a variable is not set (named, never its value).
    """
    from framework.errors import ConfigError
    from framework.windows import env_names
    from framework.windows import expand_env as expand

    try:
        out = expand(text, dict(os.environ))
    except KeyError as exc:
        raise ConfigError(f"environment variable {exc.args[0]} is not set "
                          f"(used as ${{{exc.args[0]}}})", field=field) from None
    for name in env_names(text):
        if len(os.environ[name]) >= MIN_ENV_MASK:
            register(os.environ[name])
    return out


def redact_values(value: Any, *, known_only: bool = False) -> Any:
    """``value`` (dicts, lists, strings) with :func:`redact` applied to every string."""
    if isinstance(value, str):
        return redact(value, known_only=known_only)
    if isinstance(value, dict):
        return {k: redact_values(v, known_only=known_only) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(v, known_only=known_only) for v in value]
    return value


def redact(text: Any, *, known_only: bool = False) -> str:
    """Return ``text`` with every registered secret and credential shape masked.

    Args:
        known_only: mask only the registered values (resolved secrets, OAuth tokens,
            ``${ENV}`` values), not the credential shapes: for text that must stay
            usable, such as a page checkpoint whose next link has a ``token=`` cursor.
    """
    if text is None:
        return ""
    out = str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        for form in _as_shown(secret):
            if form in out:
                out = out.replace(form, MASK)
    if "%" in out or "+" in out:  # a URL may carry a secret percent-encoded
        for secret in known:
            pattern = _as_in_urls(secret)
            if pattern is not None:
                out = pattern.sub(MASK, out)
    if known_only:
        return out
    for pattern, repl in _SHAPES:
        out = pattern.sub(repl, out)
    return out


class RedactingFilter(logging.Filter):
    """Logging filter that masks secrets in every record it passes, and writes control
    characters (an API's ESC sequences, NUL) as ``\\xNN`` so a log line on a terminal
    shows them instead of obeying them."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003
        from framework.untrusted import printable

        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        record.msg = printable(redact(message))
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = printable(redact(logging.Formatter().formatException(record.exc_info)))
            record.exc_info = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach :class:`RedactingFilter` to the handlers of ``logger`` (root by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
