"""The small path syntax used by ``data_path`` and the pagination response paths.

Grammar (segments joined by dots)::

    $                 the whole document
    data              key "data"
    results.items     nested keys
    result[].data[]   "[]" fans out over a list: every element's "data" list, concatenated
    items[0].id       an index into a list
    a\\.b             a key that contains a dot

A full JSONPath library is more than this needs: these paths are written by data
engineers in YAML and must be validated before any I/O, with errors that name the
bad segment.
"""

from __future__ import annotations

import re
import functools
from dataclasses import dataclass
from typing import Any, Iterator

_MISSING = object()
_SEGMENT = re.compile(r"^(?P<key>(?:[^.\[\]\\]|\\.)+)?(?P<index>(?:\[\d*\])*)$")


@dataclass(frozen=True)
class Step:
    key: str | None
    indexes: tuple[int | None, ...]  # None means "[]" (fan out)


class PathError(ValueError):
    """A path does not follow the grammar."""


def _split(path: str) -> list[str]:
    parts, buf, escaped = [], [], False
    for ch in path:
        if escaped:
            buf.append("\\" + ch)  # keep the escape: the segment grammar allows an escaped dot
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ".":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def compile_path(path: str) -> tuple[Step, ...]:
    """Parse ``path`` into steps (cached: a source's few paths are parsed once).

    Raises:
        PathError: the path is empty or a segment is malformed.
    """
    if not isinstance(path, str):
        raise PathError(f"path must be a string, got {type(path).__name__}")
    return _compile(path)


@functools.lru_cache(maxsize=1024)
def _compile(path: str) -> tuple[Step, ...]:
    text = path.strip()
    if text in ("$", ""):
        if text == "":
            raise PathError("path is empty (use '$' for the whole document)")
        return ()
    if text.startswith("$."):
        text = text[2:]
    elif text.startswith("$["):
        text = text[1:]
    steps = []
    for segment in _split(text):
        m = _SEGMENT.match(segment)
        if not segment or not m or (m.group("key") is None and not m.group("index")):
            raise PathError(f"bad path segment {segment!r} in {path!r}")
        key = m.group("key")
        if key is not None:
            key = re.sub(r"\\(.)", r"\1", key)
        idx = tuple(int(i) if i else None for i in re.findall(r"\[(\d*)\]", m.group("index") or ""))
        steps.append(Step(key, idx))
    return tuple(steps)


def _walk(node: Any, steps: tuple[Step, ...], fanned: bool) -> Iterator[tuple[Any, bool]]:
    if not steps:
        yield node, fanned
        return
    step, rest = steps[0], steps[1:]
    current: list[Any] = [node]
    if step.key is not None:
        nxt = []
        for item in current:
            if isinstance(item, dict) and step.key in item:
                nxt.append(item[step.key])
        current = nxt
    for index in step.indexes:
        nxt = []
        for item in current:
            if not isinstance(item, list):
                continue
            if index is None:
                fanned = True
                nxt.extend(item)
            elif index < len(item):
                nxt.append(item[index])
        current = nxt
    for item in current:
        yield from _walk(item, rest, fanned)


def find(data: Any, path: str | tuple[Step, ...], default: Any = None) -> Any:
    """Return the single value at ``path`` (the first one), or ``default`` when absent."""
    steps = compile_path(path) if isinstance(path, str) else path
    for value, _ in _walk(data, steps, False):
        return value
    return default


def exists(data: Any, path: str | tuple[Step, ...]) -> bool:
    """True when ``path`` resolves to at least one value in ``data``."""
    steps = compile_path(path) if isinstance(path, str) else path
    return find(data, steps, _MISSING) is not _MISSING


def records(data: Any, path: str | tuple[Step, ...]) -> list[Any] | None:
    """Return the records at ``path`` as a list, or ``None`` when the path is absent.

    A value that is a list is returned as its elements; a single object becomes a
    one-element list; values reached through ``[]`` are concatenated (lists are
    flattened one level).
    """
    steps = compile_path(path) if isinstance(path, str) else path
    found = list(_walk(data, steps, False))
    if not found:
        return None
    out: list[Any] = []
    for value, _ in found:
        if isinstance(value, list):
            out.extend(value)
        elif value is not None:
            out.append(value)
    return out
