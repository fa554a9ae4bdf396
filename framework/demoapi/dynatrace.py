"""A Dynatrace-like monitoring API (API v2 shapes) plus a generic REST health API.

:class:`MonitoringApi` is a :class:`~framework.demoapi.DemoApi` (same lifecycle, request
log and faults) that also serves two monitoring sources for the cache tables:

Dynatrace API v2 (``Authorization: Api-Token <token>``):

* ``GET /api/v2/problems?from=&to=&pageSize=&problemSelector=status("OPEN")`` →
  ``{"totalCount", "pageSize", "nextPageKey", "problems": [...]}``
* ``GET /api/v2/entities?entitySelector=type("HOST")&pageSize=`` →
  ``{"totalCount", "pageSize", "nextPageKey", "entities": [...]}`` (``HOST`` and
  ``PROCESS_GROUP_INSTANCE``)
* ``GET /api/v2/metrics/query?metricSelector=a,b&resolution=1h&from=&to=&pageSize=`` →
  ``{"totalCount", "nextPageKey", "resolution", "result": [{"metricId", "data": [{
  "dimensions", "dimensionMap", "timestamps", "values"}]}]}`` (``pageSize`` counts series)

As in Dynatrace, a request carrying ``nextPageKey`` must carry no other query
parameter (400 otherwise), and ``totalCount`` is the size of the whole result.

A generic health API (``X-API-Key: <key>``, any of ``health_keys``):

* ``GET /health-api/v1/instances?offset=&limit=`` → ``{"items": [...], "total": N}``
* ``GET /health-api/v1/alerts?since=&until=&offset=&limit=`` → ``{"items": [...], "total": N}``

Knobs for tests: ``throttle_key(key)`` answers 429 to requests made with that key,
``total_skew`` is added to every reported total (an API that miscounts), and the
``schema_drift`` fault adds ``"priority": "high"`` to the health API's items.
"""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from framework.demoapi.data import DEFAULT_START, decode_token, encode_token, parse_time, to_iso
from framework.demoapi.endpoints import NEXT_KEY_RULE, Call, Reply, error
from framework.demoapi.server import DemoApi, same_secret

UTC = timezone.utc
METRICS = ("builtin:host.cpu.usage", "builtin:host.mem.usage", "builtin:host.disk.avail")
ENTITY_TYPES = ("HOST", "PROCESS_GROUP_INSTANCE")
RESOLUTIONS = {"1m": 60, "5m": 300, "10m": 600, "15m": 900, "30m": 1800, "1h": 3600, "6h": 21600,
               "1d": 86400}
_TYPE = re.compile(r'type\(\s*"?([A-Z_]+)"?\s*\)')
_STATUS = re.compile(r'status\(\s*"?(open|closed)"?\s*\)', re.IGNORECASE)


class _Bad(Exception):
    pass


def _h(*parts: Any) -> int:
    """A deterministic pseudo-random integer from ``parts`` (stable across runs)."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _time_param(query: dict[str, Any], name: str) -> datetime | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    text = str(raw)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        return parse_time(text, field=name)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _int(query: dict[str, Any], name: str, default: int, low: int = 0) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise _Bad(f"{name} must be an integer, got {raw!r}") from None
    if value < low:
        raise _Bad(f"{name} must be >= {low}, got {value}")
    return value


class MonitoringApi(DemoApi):
    """The Dynatrace-like and health APIs on one local server (see the module docstring).

    Args:
        start: earliest problem start and the default metrics range start.
        end: problems start before this.
        hosts: number of HOST entities (each with one process group instance).
        problems: number of problems spread over ``[start, end)``.
        dt_token: the Dynatrace API token accepted (``Api-Token <dt_token>``).
        health_keys: the keys the health API accepts in ``X-API-Key``.
        **kwargs: passed to :class:`DemoApi` (``latency_ms``, ``port``, ...).
    """

    def __init__(self, start: datetime = DEFAULT_START, end: datetime | None = None,
                 hosts: int = 6, problems: int = 40, dt_token: str = "dt0c01.demo-token",
                 health_keys: Iterable[str] = ("health-key-1",), **kwargs: Any) -> None:
        super().__init__(records_per_resource=0, start=start, end=end, **kwargs)
        self.start_at, self.end_at = self.dataset.start, self.dataset.end
        self.dt_token = dt_token
        self.health_keys = list(health_keys)
        self.total_skew = 0
        self._throttled: dict[str, float] = {}
        self._lock = threading.Lock()
        self.hosts = [self._host(i) for i in range(hosts)]
        self.instances = [self._instance(i, h) for i, h in enumerate(self.hosts)]
        self.problems = [self._problem(i) for i in range(problems)]
        self.problems.sort(key=lambda p: (p["startTime"], p["problemId"]))

    def __repr__(self) -> str:
        where = self.base_url if self._server else "stopped"
        return f"MonitoringApi({where}, hosts={len(self.hosts)}, problems={len(self.problems)})"

    # -- knobs ----------------------------------------------------------------------

    def throttle_key(self, key: str, retry_after: float = 30) -> None:
        """Answer 429 (``Retry-After: retry_after``) to health API requests made with ``key``."""
        with self._lock:
            self._throttled[key] = retry_after

    def unthrottle(self) -> None:
        with self._lock:
            self._throttled.clear()

    # -- data -----------------------------------------------------------------------

    def _host(self, i: int) -> dict[str, Any]:
        eid = f"HOST-{_h('host', i) & 0xFFFFFFFFFFFF:016X}"
        return {
            "entityId": eid, "type": "HOST", "displayName": f"app-{i + 1:02d}.example.com",
            "firstSeenTms": _ms(self.start_at - timedelta(days=30 + i)),
            "lastSeenTms": _ms(self.end_at),
            "properties": {"state": "OFFLINE" if i % 5 == 4 else "RUNNING", "osType": "LINUX",
                           "monitoringMode": "FULL_STACK", "cpuCores": 4 * (1 + i % 3)},
            "tags": [{"context": "CONTEXTLESS", "key": "env", "value": "prod" if i % 2 == 0 else "test",
                      "stringRepresentation": "env:" + ("prod" if i % 2 == 0 else "test")}],
            "managementZones": [{"id": "4242", "name": "Production"}],
        }

    def _instance(self, i: int, host: dict[str, Any]) -> dict[str, Any]:
        eid = f"PROCESS_GROUP_INSTANCE-{_h('pgi', i) & 0xFFFFFFFFFFFF:016X}"
        return {
            "entityId": eid, "type": "PROCESS_GROUP_INSTANCE",
            "displayName": f"postgres {host['displayName']}",
            "firstSeenTms": host["firstSeenTms"], "lastSeenTms": host["lastSeenTms"],
            "properties": {"state": "RUNNING" if i % 4 else "DEGRADED",
                           "softwareTechnologies": [{"type": "POSTGRESQL", "version": "15.4"}],
                           "listenPorts": [5432]},
            "fromRelationships": {"isProcessOf": [{"id": host["entityId"], "type": "HOST"}]},
        }

    def _problem(self, i: int) -> dict[str, Any]:
        span = int((self.end_at - self.start_at).total_seconds())
        started = self.start_at + timedelta(seconds=_h("problem", i) % span)
        host = self.hosts[i % len(self.hosts)] if self.hosts else {"entityId": "HOST-0",
                                                                    "displayName": "none"}
        is_open = i % 3 == 0
        severity = ("AVAILABILITY", "ERROR", "PERFORMANCE", "RESOURCE_CONTENTION")[i % 4]
        return {
            "problemId": f"{-(_h('pid', i) % 10 ** 18)}_{_ms(started)}V2",
            "displayId": f"P-{started:%y%m}{i:04d}",
            "title": ("Host unavailable", "High error rate", "Response time degradation",
                      "CPU saturation")[i % 4],
            "impactLevel": ("INFRASTRUCTURE", "SERVICES", "APPLICATION")[i % 3],
            "severityLevel": severity,
            "status": "OPEN" if is_open else "CLOSED",
            "startTime": _ms(started),
            "endTime": -1 if is_open else _ms(started + timedelta(minutes=5 + i % 50)),
            "affectedEntities": [{"entityId": {"id": host["entityId"], "type": "HOST"},
                                  "name": host["displayName"]}],
            "rootCauseEntity": ({"entityId": {"id": host["entityId"], "type": "HOST"},
                                 "name": host["displayName"]} if i % 2 == 0 else None),
            "managementZones": [{"id": "4242", "name": "Production"}],
            "evidenceDetails": {"totalCount": 1 + i % 3},
        }

    def problems_in(self, since: datetime | None, until: datetime | None,
                    status: str | None = None) -> list[dict[str, Any]]:
        """Problems whose ``startTime`` is in ``[since, until)`` (the ground truth of a window)."""
        lo = _ms(since) if since else None
        hi = _ms(until) if until else None
        return [p for p in self.problems
                if (lo is None or p["startTime"] >= lo) and (hi is None or p["startTime"] < hi)
                and (status is None or p["status"] == status.upper())]

    def series(self, metric: str, since: datetime, until: datetime, resolution: str
               ) -> list[dict[str, Any]]:
        """The series of ``metric`` (one per host) over ``[since, until)`` at ``resolution``."""
        step = RESOLUTIONS[resolution]
        first = int(since.timestamp()) // step * step
        if first < int(since.timestamp()):
            first += step
        stamps = list(range(first, int(until.timestamp()), step))
        out = []
        for host in self.hosts:
            values: list[float | None] = []
            for s in stamps:
                n = _h(metric, host["entityId"], s)
                values.append(None if n % 11 == 0 else round((n % 10_000) / 100, 2))
            out.append({"dimensions": [host["entityId"]],
                        "dimensionMap": {"dt.entity.host": host["entityId"]},
                        "timestamps": [s * 1000 for s in stamps], "values": values})
        return out

    # -- routing --------------------------------------------------------------------

    def dispatch(self, call: Call) -> Reply:
        route = self._routes().get(call.path)
        if route is None:
            return super().dispatch(call)
        if call.method != "GET":
            return error(405, f"{call.path} accepts GET only")
        denied = self._check_monitoring_auth(call)
        if denied is not None:
            return denied
        try:
            return route(call)
        except _Bad as exc:
            return error(400, str(exc))
        except _BadReply as exc:
            return exc.reply

    def _routes(self) -> dict[str, Callable[[Call], Reply]]:
        return {"/api/v2/problems": self._problems, "/api/v2/entities": self._entities,
                "/api/v2/metrics/query": self._metrics,
                "/health-api/v1/instances": self._health_instances,
                "/health-api/v1/alerts": self._health_alerts}

    def _check_monitoring_auth(self, call: Call) -> Reply | None:
        if call.path.startswith("/api/v2/"):
            given = call.headers.get("Authorization", "")
            if not given:
                return error(401, "Missing authorization parameter.")
            if not same_secret(given, f"Api-Token {self.dt_token}"):
                return error(401, "Token Authentication failed")
            return None
        key = call.headers.get("X-API-Key", "")
        if not any(same_secret(key, k) for k in self.health_keys):
            return error(401, "missing or invalid API key")
        with self._lock:
            retry = self._throttled.get(key)
        if retry is not None:
            reply = error(429, "rate limit exceeded for this key")
            reply.headers.update({"Retry-After": str(int(retry)), "X-RateLimit-Remaining": "0"})
            return reply
        return None

    # -- Dynatrace endpoints ----------------------------------------------------------

    def _paging(self, call: Call, build: Callable[[dict[str, Any]], list[Any]]
                ) -> tuple[list[Any], dict[str, Any], int, str | None]:
        """(page items, query state, total, next key) under Dynatrace's nextPageKey rules."""
        if "nextPageKey" in call.query:
            if len(call.query) > 1:
                raise _BadReply(error(400, NEXT_KEY_RULE))
            try:
                state = decode_token(str(call.query["nextPageKey"]))
            except ValueError:
                raise _Bad("nextPageKey is invalid") from None
        else:
            state = {k: v for k, v in call.query.items()}
            state["_offset"] = 0
        items = build(state)
        size = _int(state, "pageSize", 50, low=1)
        offset = int(state["_offset"])
        page = items[offset:offset + size]
        nxt = encode_token(dict(state, _offset=offset + size)) if offset + size < len(items) else None
        return page, state, len(items) + self.total_skew, nxt

    def _problems(self, call: Call) -> Reply:
        def build(q: dict[str, Any]) -> list[Any]:
            match = _STATUS.search(str(q.get("problemSelector", "")))
            return self.problems_in(_time_param(q, "from"), _time_param(q, "to"),
                                    match.group(1) if match else None)

        page, state, total, nxt = self._paging(call, build)
        return Reply(200, {"totalCount": total, "pageSize": _int(state, "pageSize", 50, 1),
                           "nextPageKey": nxt, "problems": page})

    def _entities(self, call: Call) -> Reply:
        def build(q: dict[str, Any]) -> list[Any]:
            match = _TYPE.search(str(q.get("entitySelector", "")))
            if not match:
                raise _Bad('entitySelector must specify exactly one entity type, e.g. type("HOST")')
            kind = match.group(1)
            if kind not in ENTITY_TYPES:
                raise _Bad(f"unknown entity type {kind}")
            return self.hosts if kind == "HOST" else self.instances

        page, state, total, nxt = self._paging(call, build)
        return Reply(200, {"totalCount": total, "pageSize": _int(state, "pageSize", 50, 1),
                           "nextPageKey": nxt, "entities": page})

    def _metrics(self, call: Call) -> Reply:
        resolution = "1h"

        def build(q: dict[str, Any]) -> list[Any]:
            nonlocal resolution
            selector = str(q.get("metricSelector", "")).strip()
            if not selector:
                raise _Bad("metricSelector is required")
            resolution = str(q.get("resolution", "1h"))
            if resolution not in RESOLUTIONS:
                raise _Bad(f"resolution {resolution!r} is not one of {', '.join(RESOLUTIONS)}")
            since = _time_param(q, "from") or self.start_at
            until = _time_param(q, "to") or self.end_at
            if until <= since:
                raise _Bad("to must be after from")
            pairs = []
            for metric in (m.strip() for m in selector.split(",")):
                if metric not in METRICS:
                    raise _Bad(f"Metric selector '{metric}' is not a known metric")
                pairs += [(metric, s) for s in self.series(metric, since, until, resolution)]
            return pairs

        page, state, total, nxt = self._paging(call, build)
        result: list[dict[str, Any]] = []
        for metric, series in page:
            if not result or result[-1]["metricId"] != metric:
                result.append({"metricId": metric, "dataPointCountRatio": 0.0001,
                               "dimensionCountRatio": 0.001, "data": []})
            result[-1]["data"].append(series)
        return Reply(200, {"totalCount": total, "nextPageKey": nxt, "resolution": resolution,
                           "result": result})

    # -- health API -------------------------------------------------------------------

    def health_instances(self) -> list[dict[str, Any]]:
        """The health API's instances (its ground truth)."""
        out = []
        for i, host in enumerate(self.hosts):
            n = _h("health", i)
            out.append({"instance_id": f"db-{i + 1:02d}", "host": host["displayName"],
                        "engine": "postgresql", "status": ("healthy", "healthy", "degraded",
                                                           "down")[n % 4],
                        "cpu_pct": round((n % 1000) / 10, 1), "connections": n % 300,
                        "checked_at": to_iso(self.end_at)})
        return out

    def health_alerts(self, since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
        """Alerts of the health API raised in ``[since, until)``."""
        span = int((self.end_at - self.start_at).total_seconds())
        out = []
        for i in range(max(len(self.hosts) * 2, 1)):
            raised = self.start_at + timedelta(seconds=_h("halert", i) % span)
            if (since and raised < since) or (until and raised >= until):
                continue
            out.append({"alert_id": f"HA-{1000 + i}", "instance_id": f"db-{i % max(len(self.hosts), 1) + 1:02d}",
                        "severity": "critical" if i % 3 == 0 else "warning",
                        "message": ("replication lag", "connections near limit", "disk 90% full")[i % 3],
                        "state": "open" if i % 2 == 0 else "resolved", "raised_at": to_iso(raised)})
        return sorted(out, key=lambda a: (a["raised_at"], a["alert_id"]))

    def _offset_page(self, call: Call, items: list[dict[str, Any]]) -> Reply:
        offset = _int(call.query, "offset", 0)
        limit = min(_int(call.query, "limit", 20, low=1), self.max_page_size)
        if call.drift:  # the "schema_drift" fault: a field the contract does not know
            items = [dict(item, priority="high") for item in items]
        return Reply(200, {"items": items[offset:offset + limit], "total": len(items) + self.total_skew,
                           "offset": offset, "limit": limit})

    def _health_instances(self, call: Call) -> Reply:
        return self._offset_page(call, self.health_instances())

    def _health_alerts(self, call: Call) -> Reply:
        return self._offset_page(call, self.health_alerts(_time_param(call.query, "since"),
                                                          _time_param(call.query, "until")))


class _BadReply(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        super().__init__(reply.status)
