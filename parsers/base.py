"""The parser interface, its option checking, and the checks every parser shares.

A parser turns one decoded response page into records (dicts). Options come
from YAML (``parser_options``), so they are checked once, when the parser is
built, with errors that name the option; ``parse`` then only deals with data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

from framework import jsonpath
from framework.errors import ConfigError, ResponseError

# Keys of a 200 body that mean "this is an error, not data" (Google/JSON:API/GraphQL
# use "error"/"errors"; JSend uses "status": "error" or "fail").
ERROR_KEYS = ("error", "errors")
ERROR_STATUSES = ("error", "fail")
_MESSAGE_KEYS = ("message", "error_description", "detail", "description", "msg", "title", "reason")
_MAX_MESSAGE = 300
_MAX_KEYS_SHOWN = 20
# APIs sometimes echo the credential they rejected ("invalid token Bearer abc..."); the
# shared redactor only knows registered secrets and "Authorization:" shapes.
_ECHOED_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic|api-token)(\s+)(?=\S*\d)[A-Za-z0-9._~+/=-]{8,}")


class ParserConfigError(ConfigError, ValueError):
    """A parser name or option is invalid.

    It is a :class:`~framework.errors.ConfigError` for the config layer and a
    ``ValueError`` for code that only knows the builtin.
    """


@dataclass(frozen=True)
class Option:
    """One parser option: its accepted type(s), default, and an extra rule.

    Attributes:
        type: accepted type or tuple of types (``bool`` is never taken as ``int``).
        default: value when the option is not given.
        check: predicate the value must satisfy, if any.
        rule: what ``check`` requires, for the error message.
    """

    type: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], bool] | None = None
    rule: str = ""

    def validate(self, parser: str, name: str, value: Any) -> Any:
        """Return ``value`` when valid.

        Raises:
            ParserConfigError: wrong type or rule broken; the message names the option.
        """
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise ParserConfigError(f"option {name!r} of parser {parser!r} must be {expected}, "
                                    f"got {type(value).__name__} {value!r}",
                                    field=f"parser_options.{name}")
        if self.check is not None and not self.check(value):
            raise ParserConfigError(f"option {name!r} of parser {parser!r} must be {self.rule}, "
                                    f"got {value!r}", field=f"parser_options.{name}")
        return value


class Parser:
    """Turns one response page into records.

    Subclasses set ``OPTIONS`` and implement :meth:`parse`, and register with
    :func:`parsers.registry.register` (which also sets ``name``).

    Args:
        data_path: where the records are in the body (``$``, ``data``,
            ``results.items``, ``result[].data[]``).
        **options: parser options, checked against ``OPTIONS``.

    Raises:
        ParserConfigError: a bad ``data_path``, an unknown option, or a bad option value.
    """

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, data_path: str = "$", **options: Any) -> None:
        label = self.name or type(self).__name__
        try:
            self.steps = jsonpath.compile_path(data_path)
        except jsonpath.PathError as exc:
            raise ParserConfigError(str(exc), field="data_path") from None
        self.data_path = data_path
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(sorted(self.OPTIONS)) or "none"
            raise ParserConfigError(f"unknown option {unknown[0]!r} for parser {label!r}; "
                                    f"known options: {known}", field=f"parser_options.{unknown[0]}")
        self.options: dict[str, Any] = {
            key: spec.validate(label, key, options.get(key, spec.default))
            for key, spec in self.OPTIONS.items()
        }

    def parse(self, data: Any) -> list[dict[str, Any]]:
        """Return the records of one decoded response body.

        Raises:
            ResponseError: the body is an error object, lacks the data path, or holds
                records of the wrong shape.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(data_path={self.data_path!r}{opts})"


def _message(value: Any) -> str:
    """The human part of an API error value (str, object, or list of either)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(m for m in (_message(v) for v in value[:5]) if m)
    if isinstance(value, dict):
        text = next((str(value[k]) for k in _MESSAGE_KEYS if value.get(k)), "")
        if not text and isinstance(value.get("error"), (str, dict, list)):
            text = _message(value["error"])
        code = value.get("code", value.get("status"))
        if code not in (None, "") and text:
            return f"{code}: {text}"
        if text:
            return text
        return str(code) if code not in (None, "") else (str(value) if value else "")
    return str(value)


def error_message(data: Any) -> str | None:
    """The API's error message when ``data`` is an error object, else ``None``."""
    if not isinstance(data, dict):
        return None
    for key in ERROR_KEYS:
        if data.get(key):
            return _message(data[key]) or key
    status = data.get("status")
    if isinstance(status, str) and status.lower() in ERROR_STATUSES:
        return _message({k: v for k, v in data.items() if k in _MESSAGE_KEYS}) or f"status {status}"
    return None


def check_error_body(data: Any, data_path: str | tuple[jsonpath.Step, ...]) -> None:
    """Raise when a (200) body is an API error object rather than data.

    A body counts as an error when it is an object with a non-empty ``error`` or
    ``errors``, or ``"status": "error" | "fail"``, and holds no data at
    ``data_path`` (with ``$`` the body itself is the would-be data, so the error
    shape alone decides). A body that carries data *and* warnings is left alone.

    Raises:
        ResponseError: naming the API's message (secrets masked).
    """
    message = error_message(data)
    if message is None:
        return
    steps = jsonpath.compile_path(data_path) if isinstance(data_path, str) else data_path
    if steps and jsonpath.find(data, steps) is not None:
        return
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    message = _ECHOED_CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}***", message)
    raise ResponseError(f"API returned an error in a successful response: {message}")


def missing_path_error(data: Any, data_path: str) -> ResponseError:
    """The error for a body that lacks ``data_path``, listing what the body does have."""
    if isinstance(data, dict):
        keys = sorted(map(str, data))
        shown = keys[:_MAX_KEYS_SHOWN] + (["..."] if len(keys) > _MAX_KEYS_SHOWN else [])
        found = f"top-level keys: {shown}"
    else:
        found = f"the response is a JSON {type(data).__name__}, not an object"
    return ResponseError(f"data path {data_path!r} not found in response; {found}")


def select_records(data: Any, data_path: str, steps: tuple[jsonpath.Step, ...], *,
                   wrap_scalars: bool = False) -> list[dict[str, Any]]:
    """The records at ``data_path``, after the error-body check, as dicts.

    Args:
        data: the decoded body.
        data_path: the path as written in the config (for messages).
        steps: the compiled path.
        wrap_scalars: wrap non-object records as ``{"value": x}`` instead of failing.

    Raises:
        ResponseError: error body, missing path, or a non-object record.
    """
    check_error_body(data, steps)
    found = jsonpath.records(data, steps)
    if found is None:
        raise missing_path_error(data, data_path)
    out: list[dict[str, Any]] = []
    for index, record in enumerate(found):
        if isinstance(record, dict):
            out.append(record)
        elif wrap_scalars:
            out.append({"value": record})
        else:
            raise ResponseError(
                f"record {index} at data path {data_path!r} is a JSON {type(record).__name__}, "
                f"not an object (set parser option wrap_scalars: true to load it as "
                f"{{'value': ...}})")
    return out
