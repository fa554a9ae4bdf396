"""The ``records`` parser: the objects found at ``data_path``, as they are."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from parsers.base import Option, Parser, select_records
from parsers.registry import register


@register("records")
class RecordsParser(Parser):
    """Records at ``data_path``; one object becomes one record, ``[]`` fans out over lists.

    Options:
        wrap_scalars: load non-object records (numbers, strings, lists) as
            ``{"value": x}`` instead of failing the window.

    Example:
        >>> RecordsParser("result[].data[]").parse({"result": [{"data": [{"a": 1}]}]})
        [{'a': 1}]
    """

    OPTIONS: ClassVar[Mapping[str, Option]] = {"wrap_scalars": Option(bool, False)}

    def parse(self, data: Any) -> list[dict[str, Any]]:
        """The page's records (see :func:`parsers.base.select_records` for the errors)."""
        return select_records(data, self.data_path, self.steps,
                              wrap_scalars=self.options["wrap_scalars"])
