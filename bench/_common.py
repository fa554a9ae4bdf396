"""Shared pieces of the benchmarks: the demo API in its own process, configs, the seed loop.

The demo API runs in a child process so that its JSON encoding does not compete with
the client for the GIL (a real API is on another machine).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from framework.config import SourceConfig, parse_source  # noqa: E402
from framework.windows import Window, split  # noqa: E402

UTC = dt.timezone.utc
START = dt.datetime(2024, 1, 1, tzinfo=UTC)


def _serve(conn: Any, kwargs: dict[str, Any]) -> None:
    from framework.demoapi import DemoApi

    api = DemoApi(**kwargs).start()
    conn.send(api.base_url)
    conn.recv()  # block until the parent says stop
    api.stop()


class DemoServer:
    """The bundled demo API (``framework.demoapi.DemoApi``) in a child process."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.base_url = ""

    def __enter__(self) -> "DemoServer":
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.kwargs), daemon=True)
        self._proc.start()
        self.base_url = self._conn.recv()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._conn.send("stop")
        self._proc.join(10)


def config(base_url: str, config_id: str, *, days: int, window: str = "daily", page_size: int = 100,
           concurrency: int = 8, rps: Optional[float] = None, **extra: Any) -> SourceConfig:
    """A cursor-paginated source over ``days`` days of the demo dataset."""
    return parse_source({
        "config_id": config_id, "api_name": "Demo", "source_system": "demo",
        "endpoint": base_url + "/api/cursor/issues",
        "params": {"since": "{window_start}", "until": "{window_end}", "limit": page_size},
        "pagination": {"style": "cursor"}, "data_path": "data", "primary_key": ["id"],
        "cursor_field": "updated_at", "load_start": START.isoformat(),
        "load_end": (START + dt.timedelta(days=days)).isoformat(), "window": window,
        "target": {"catalog": "bench", "schema": "demo", "table": config_id},
        "limits": {"timeout_s": 60, "concurrency": concurrency,
                   **({"requests_per_second": rps} if rps else {})},
        **extra,
    })


def windows_of(cfg: SourceConfig) -> list[Window]:
    return split(cfg.load_start, cfg.load_end, cfg.window)


def seed_loop(base_url: str, windows: list[Window], page_size: int) -> list[dict[str, Any]]:
    """The seed's fetch: ``requests.get`` in a while loop, every record kept in a list."""
    all_records: list[dict[str, Any]] = []
    url = base_url + "/api/cursor/issues"
    for w in windows:
        params = {"since": w.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "until": w.end.strftime("%Y-%m-%dT%H:%M:%SZ"), "limit": page_size}
        next_cursor = None
        while True:
            query = dict(params, cursor=next_cursor) if next_cursor else params
            response = requests.get(url, params=query, timeout=60)
            response.raise_for_status()
            data = response.json()
            all_records.extend(data["data"])
            next_cursor = data.get("next_cursor")
            if not next_cursor:
                break
    return all_records


def bare_threads(base_url: str, windows: list[Window], page_size: int, threads: int) -> int:
    """The floor of a threaded client: ``threads`` threads, each walking whole windows with
    a ``requests`` session and ``response.json()``, keeping nothing but the count."""
    url = base_url + "/api/cursor/issues"

    def walk(w: Window) -> int:
        params = {"since": w.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "until": w.end.strftime("%Y-%m-%dT%H:%M:%SZ"), "limit": page_size}
        count, next_cursor = 0, None
        with requests.Session() as session:
            while True:
                query = dict(params, cursor=next_cursor) if next_cursor else params
                response = session.get(url, params=query, timeout=60)
                response.raise_for_status()
                data = response.json()
                count += len(data["data"])
                next_cursor = data.get("next_cursor")
                if not next_cursor:
                    return count

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(walk, windows))


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, every thread; not the API's process,
    not Spark's JVM)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def restlake_fetch(cfg: SourceConfig, staging_root: Path, *, discard: bool = True) -> tuple[int, list]:
    """restlake's fetch+stage path as the runtime runs it: ``limits.concurrency`` threads,
    one rate budget per host, every window streamed to JSON-lines staging files."""
    from framework.load.fetch import WindowFetcher
    from framework.http.ratelimit import limiter_for
    from framework.load.staging import RunStaging

    limiter = limiter_for(cfg.endpoint, cfg.limits.requests_per_second)
    staging = RunStaging(staging_root, cfg.config_id, "bench")
    records, results = 0, []
    with WindowFetcher(cfg, "bench", staging, None, limiter) as fetch, \
            ThreadPoolExecutor(cfg.limits.concurrency) as pool:
        for result in pool.map(lambda iw: fetch(*iw), enumerate(windows_of(cfg))):
            records += result.records
            if discard:  # as the runtime does once a window is committed
                result.stage.discard()
            else:
                results.append(result)
    return records, results


def figure(name: str, value: float, target: str, unit: str = "x", note: str = "") -> None:
    """One line per figure: ``name value (target ...)``."""
    if unit == "x":
        text = f"{value:.2f}x"
    else:
        text = f"{value} {unit}" if isinstance(value, int) else f"{value:.1f} {unit}"
    print(f"{name} {text} (target {target})" + (f"  {note}" if note else ""), flush=True)


def info(name: str, value: Any) -> None:
    print(f"  {name}: {value}", flush=True)


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("RESTLAKE_BENCH_TMP")))


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out
