"""The ``flatten`` parser: nested objects become columns, so tables need no struct columns."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from framework.errors import ResponseError
from parsers.base import Option
from parsers.records import RecordsParser
from parsers.registry import register


def flatten_record(record: dict[str, Any], separator: str = "_", max_depth: int = 5
                   ) -> dict[str, Any]:
    """Lift nested objects into top-level keys joined by ``separator``.

    Objects nested deeper than ``max_depth`` levels stay objects, and lists stay
    lists (the writer stores them as JSON), so no value is ever dropped. An empty
    object stays an empty object for the same reason.

    Raises:
        ResponseError: two paths flatten to the same column (e.g. ``a_b`` and
            ``a.b``); overwriting one would lose data silently.

    Example:
        >>> flatten_record({"user": {"login": "mona", "org": {"id": 1}}}, max_depth=1)
        {'user_login': 'mona', 'user_org': {'id': 1}}
    """
    out: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if key in out:
            raise ResponseError(f"flatten: field {key!r} occurs twice after joining nested keys "
                                f"with {separator!r}; choose another separator")
        out[key] = value

    def walk(node: dict[str, Any], prefix: str, depth: int) -> None:
        for key, value in node.items():
            column = f"{prefix}{separator}{key}" if prefix else str(key)
            if isinstance(value, dict) and value and depth < max_depth:
                walk(value, column, depth + 1)
            else:
                put(column, value)

    walk(record, "", 0)
    return out


@register("flatten")
class FlattenParser(RecordsParser):
    """Like ``records``, then nested objects become ``parent<separator>child`` columns.

    Options:
        separator: joins the keys of nested objects (default ``_``).
        max_depth: levels of nesting flattened (default 5; 0 leaves records as they are).
        wrap_scalars: as for ``records``.

    Example:
        >>> FlattenParser("data").parse({"data": [{"id": 1, "user": {"login": "mona"}}]})
        [{'id': 1, 'user_login': 'mona'}]
    """

    OPTIONS: ClassVar[Mapping[str, Option]] = {
        **RecordsParser.OPTIONS,
        "separator": Option(str, "_", lambda v: v != "", "a non-empty string"),
        "max_depth": Option(int, 5, lambda v: v >= 0, "an integer >= 0"),
    }

    def parse(self, data: Any) -> list[dict[str, Any]]:
        """The page's records, flattened."""
        separator, depth = self.options["separator"], self.options["max_depth"]
        return [flatten_record(r, separator, depth) for r in super().parse(data)]
