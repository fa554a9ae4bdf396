"""Parsers by name: the ``parser:`` key of a source config picks one from here."""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, Mapping, TypeVar

from parsers.base import Parser, ParserConfigError

P = TypeVar("P", bound=type[Parser])

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_lock = threading.Lock()
_registry: dict[str, type[Parser]] = {}


def register(name: str) -> Callable[[P], P]:
    """Class decorator registering a :class:`~parsers.base.Parser` subclass under ``name``.

    Args:
        name: lowercase letters, digits and ``_``, starting with a letter.

    Raises:
        ValueError: a bad name, a class that is not a Parser, or a name already
            taken by another class (re-registering the same class is allowed, so
            reloading a module in a notebook works).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"parser name must match {_NAME.pattern}, got {name!r}")

    def decorate(cls: P) -> P:
        if not (isinstance(cls, type) and issubclass(cls, Parser)):
            raise ValueError(f"@register({name!r}) needs a Parser subclass, got {cls!r}")
        with _lock:
            current = _registry.get(name)
            if current is not None and current.__qualname__ != cls.__qualname__:
                raise ValueError(f"parser name {name!r} is already registered by "
                                 f"{current.__module__}.{current.__qualname__}")
            cls.name = name
            _registry[name] = cls
        return cls

    return decorate


def unregister(name: str) -> None:
    """Remove a parser (tests and plugins that replace one); unknown names are ignored."""
    with _lock:
        _registry.pop(name, None)


def known_parsers() -> list[str]:
    """The registered names, sorted."""
    with _lock:
        return sorted(_registry)


def parser_class(name: str) -> type[Parser]:
    """The class registered under ``name``.

    Raises:
        ParserConfigError: unknown name; the message lists the known ones.
    """
    with _lock:
        cls = _registry.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ParserConfigError(f"unknown parser {name!r}; known parsers: "
                                f"{', '.join(known_parsers())}", field="parser")
    return cls


def get_parser(name: str, options: Mapping[str, Any] | None = None, *,
               data_path: str | None = None) -> Parser:
    """Build the parser ``name`` with its options.

    Args:
        name: a registered name (``records``, ``flatten``, ...).
        options: the parser options; may hold ``data_path``.
        data_path: the source's data path; overrides ``options["data_path"]``.

    Raises:
        ParserConfigError: unknown name, unknown option or bad option value.

    Example:
        >>> get_parser("flatten", {"separator": "."}, data_path="data")
        FlattenParser(data_path='data', wrap_scalars=False, separator='.', max_depth=5)
    """
    cls = parser_class(name)
    if options is not None and not isinstance(options, Mapping):
        raise ParserConfigError(f"parser options must be a mapping, got "
                                f"{type(options).__name__}", field="parser_options")
    kwargs = dict(options or {})
    if data_path is not None:
        kwargs["data_path"] = data_path
    return cls(**kwargs)
