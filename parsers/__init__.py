"""Parsers turn one decoded response page into records (dicts).

A source config picks one by name (``parser: flatten``) and passes options
(``parser_options: {separator: "."}``); :func:`get_parser` builds it::

    from parsers import get_parser

    parser = get_parser("records", {"wrap_scalars": True}, data_path="results.items")
    rows = parser.parse(response.data)

Built in: ``records`` (the objects at ``data_path``) and ``flatten`` (the same,
with nested objects lifted into ``parent_child`` columns).

Adding a parser for an API whose JSON needs its own code: subclass
:class:`Parser` (or :class:`RecordsParser` to reuse the error-body check and
the data path), declare its options, and register it under a name. Import the
module once (for example from ``parsers/__init__.py``) so the name is known::

    from typing import Any

    from parsers import Option, RecordsParser, register


    @register("dynatrace_metrics")
    class DynatraceMetricsParser(RecordsParser):
        \"\"\"One record per (metric, dimensions, timestamp) of a metrics query.\"\"\"

        OPTIONS = {**RecordsParser.OPTIONS, "value_field": Option(str, "value")}

        def parse(self, data: Any) -> list[dict[str, Any]]:
            rows = []
            for series in super().parse(data):  # data_path: "result[].data[]"
                for ts, value in zip(series["timestamps"], series["values"]):
                    rows.append({"dimensions": series["dimensions"], "timestamp": ts,
                                 self.options["value_field"]: value})
            return rows

Options are checked when the parser is built: an unknown option or a value of
the wrong type raises :class:`ParserConfigError` (a ``ValueError``) naming it.
``parse`` raises :class:`framework.errors.ResponseError` for a body it cannot
use (an error object, a missing data path, records of the wrong shape), which
fails the window.
"""

from parsers.base import (Option, Parser, ParserConfigError, check_error_body, error_message,
                          select_records)
from parsers.registry import get_parser, known_parsers, parser_class, register, unregister
from parsers.records import RecordsParser  # noqa: E402 - registers "records"
from parsers.flatten import FlattenParser, flatten_record  # noqa: E402 - registers "flatten"
from parsers.dynatrace import DynatraceMetricsParser  # noqa: E402 - registers "dynatrace_metrics"

__all__ = ["Parser", "Option", "ParserConfigError", "RecordsParser", "FlattenParser",
           "DynatraceMetricsParser",
           "register", "unregister", "get_parser", "known_parsers", "parser_class",
           "check_error_body", "error_message", "select_records", "flatten_record"]
