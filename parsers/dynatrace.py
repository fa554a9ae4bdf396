"""The ``dynatrace_metrics`` parser: Dynatrace API v2 ``/metrics/query`` pages as rows.

A metrics query answers with one entry per metric, each holding one series per
dimension set, and each series holding parallel ``timestamps`` (epoch ms) and
``values`` (numbers or null)::

    {"totalCount": 2, "nextPageKey": null, "resolution": "1h",
     "result": [{"metricId": "builtin:host.cpu.usage",
                 "data": [{"dimensions": ["HOST-1"],
                           "dimensionMap": {"dt.entity.host": "HOST-1"},
                           "timestamps": [1704067200000, 1704070800000],
                           "values": [12.5, null]}]}]}

Each (metric, dimension set, timestamp) becomes one row::

    {"metric_id": "builtin:host.cpu.usage", "dimension_key": "dt.entity.host=HOST-1",
     "dimensions": ["HOST-1"], "dimension_map": {"dt.entity.host": "HOST-1"},
     "timestamp": datetime(2024, 1, 1, tzinfo=UTC), "value": 12.5, "resolution": "1h"}

``timestamp`` is an aware UTC datetime (a Delta ``TIMESTAMP`` column) and ``value`` a
float or ``None`` (a ``DOUBLE``). ``metric_id, dimension_key, timestamp`` is a natural
primary key.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, ClassVar, Iterator, Mapping

from framework import jsonpath
from framework.errors import ResponseError
from parsers.base import Option, Parser, select_records
from parsers.registry import register

UTC = dt.timezone.utc
_RESULT = jsonpath.compile_path("result")


def dimension_key(dimension_map: Mapping[str, Any] | None, dimensions: list[Any] | None) -> str:
    """A stable text key for one dimension set (``k=v`` sorted by key, joined by ``,``).

    Falls back to the positional ``dimensions`` when the map is missing, and to ``-``
    for a metric without dimensions (a primary key part must not be empty).
    """
    if dimension_map:
        return ",".join(f"{k}={dimension_map[k]}" for k in sorted(dimension_map))
    if dimensions:
        return ",".join(str(d) for d in dimensions)
    return "-"


def epoch_ms(value: Any, where: str) -> dt.datetime:
    """An epoch-milliseconds timestamp as an aware UTC datetime.

    Raises:
        ResponseError: not an integer number of milliseconds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not math.isfinite(value)):
        raise ResponseError(f"{where}: timestamp {value!r} is not epoch milliseconds")
    return dt.datetime.fromtimestamp(value / 1000, tz=UTC)


def _value(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResponseError(f"{where}: value {value!r} is not a number or null")
    out = float(value)
    return out if math.isfinite(out) else None


@register("dynatrace_metrics")
class DynatraceMetricsParser(Parser):
    """One row per metric x dimension set x timestamp of a ``/api/v2/metrics/query`` page.

    ``data_path`` points at the list of metric results (``result``, the default when
    the config leaves ``$``).

    Options:
        drop_nulls: leave out data points whose value is null (default: keep them with
            ``value`` null, so "no data" is visible).
        dimension_columns: also lift each ``dimensionMap`` entry into a column
            ``dim_<name>`` (dots become ``_``), for dashboards that filter on them.

    Example:
        >>> rows = DynatraceMetricsParser("result").parse({"result": [{"metricId": "m",
        ...     "data": [{"dimensions": [], "dimensionMap": {}, "timestamps": [0],
        ...               "values": [1]}]}]})
        >>> rows[0]["metric_id"], rows[0]["value"], rows[0]["timestamp"].year
        ('m', 1.0, 1970)
    """

    OPTIONS: ClassVar[Mapping[str, Option]] = {
        "drop_nulls": Option(bool, False),
        "dimension_columns": Option(bool, False),
    }

    def parse(self, data: Any) -> list[dict[str, Any]]:
        """The page's data points as rows.

        Raises:
            ResponseError: an error body, a missing ``result``, or a series whose
                ``timestamps`` and ``values`` differ in length.
        """
        return list(self._rows(data))

    def _results(self, data: Any) -> list[dict[str, Any]]:
        if self.steps:
            return select_records(data, self.data_path, self.steps)
        return select_records(data, "result", _RESULT)

    def _rows(self, data: Any) -> Iterator[dict[str, Any]]:
        resolution = data.get("resolution") if isinstance(data, dict) else None
        drop_nulls, lift = self.options["drop_nulls"], self.options["dimension_columns"]
        for i, metric in enumerate(self._results(data)):
            metric_id = metric.get("metricId")
            if not isinstance(metric_id, str) or not metric_id:
                raise ResponseError(f"result[{i}] has no metricId")
            series_list = metric.get("data") or []
            if not isinstance(series_list, list):
                raise ResponseError(f"result[{i}].data is not a list")
            for j, series in enumerate(series_list):
                where = f"result[{i}].data[{j}] ({metric_id})"
                if not isinstance(series, dict):
                    raise ResponseError(f"{where} is not an object")
                stamps, values = series.get("timestamps") or [], series.get("values") or []
                if len(stamps) != len(values):
                    raise ResponseError(f"{where}: {len(stamps)} timestamps but "
                                        f"{len(values)} values")
                dims = series.get("dimensions") or []
                dim_map = series.get("dimensionMap") or {}
                key = dimension_key(dim_map, dims)
                extra = {"dim_" + k.replace(".", "_"): v for k, v in dim_map.items()} if lift else {}
                for stamp, raw in zip(stamps, values):
                    value = _value(raw, where)
                    if value is None and drop_nulls:
                        continue
                    row = {"metric_id": metric_id, "dimension_key": key, "dimensions": dims,
                           "dimension_map": dim_map, "timestamp": epoch_ms(stamp, where),
                           "value": value}
                    if resolution is not None:
                        row["resolution"] = resolution
                    row.update(extra)
                    yield row
