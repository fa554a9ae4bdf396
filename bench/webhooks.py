"""Webhook receiver: sustained events/s acknowledged durably, and the ack latency (p50/p99).

The receiver (``restlake receive``'s app: FastAPI on uvicorn, GitHub signatures, the
spool) runs in its own process; a client of ``--connections`` keep-alive connections
sends ``--events`` signed 1 KB events as fast as the answers come back and times each
one from the request's first byte to the answer's last. Three spool modes are measured
in the same run, one after the other on a fresh spool each:

* ``group`` — restlake: an event is answered after the fsync that covers it, and
  concurrent events share one fsync (group commit);
* ``per_event`` — the baseline: one fsync per event, one at a time (what a receiver that
  fsyncs each request itself does);
* ``none`` — no fsync at all (not durable; the ceiling of the HTTP path).

The flusher stays idle during the measurement (batches are larger than the run), so the
figures are those of the acknowledgement path; a flush's Spark work is a separate cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECRET = b"bench-webhook-secret"


def _serve(conn: Any, mode: str, spool: str) -> None:
    import uvicorn

    import framework.push.receiver as receiver_module
    from framework.config import parse_source
    from framework.lake.tables import Warehouse
    from framework.push.receiver import Receiver
    from framework.push.spool import Spool
    from framework.service.hooks import asgi, receiver_app

    os.environ["RL_BENCH_SECRET"] = SECRET.decode()
    if mode != "group":
        class BaselineSpool(Spool):
            """Per-event fsync under one lock (``per_event``), or no fsync (``none``)."""

            _one = threading.Lock()

            def durable(self, end: int):  # type: ignore[override]
                from concurrent.futures import Future

                if mode == "per_event":
                    with self._one:
                        self.write_through(fsync=True)
                else:
                    self.write_through(fsync=False)
                fut: Future = Future()
                fut.set_result(end)
                return fut

        receiver_module.Spool = BaselineSpool  # the bench's baselines only
    cfg = parse_source({
        "config_id": "bench_hook", "api_name": "Bench",
        "webhook": {"signature": "github", "secret": "env:RL_BENCH_SECRET",
                    "event_id_path": "id", "batch_events": 1_000_000, "batch_seconds": 3600,
                    "queue_events": 10_000_000},
        "primary_key": ["id"], "target": {"catalog": "bench", "schema": "hooks", "table": "ev"},
    })
    receiver = Receiver(Warehouse(spool), spool=Path(spool), configs=[cfg]).start()
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    conn.send(sock.getsockname()[1])
    config = uvicorn.Config(asgi(receiver_app(receiver)), log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    def control() -> None:  # "cpu": this process's CPU seconds so far; "stop": exit
        while True:
            message = conn.recv()
            if message == "cpu":
                times = os.times()
                conn.send(times.user + times.system)
            else:
                server.should_exit = True
                return

    threading.Thread(target=control, daemon=True).start()
    server.run(sockets=[sock])
    receiver.stop(drain=False)


def _bodies(n: int, size: int) -> list[tuple[bytes, str]]:
    from framework.push.signatures import sign

    out = []
    for i in range(n):
        doc = {"id": f"evt_{i}", "action": "opened", "pad": ""}
        raw = json.dumps(doc)
        doc["pad"] = "x" * max(0, size - len(raw))
        body = json.dumps(doc).encode()
        out.append((body, sign("github", SECRET, body)))
    return out


async def _client(port: int, bodies: list[tuple[bytes, str]], connections: int
                  ) -> tuple[float, list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(reversed(bodies))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            body, signature = queue.pop()
            head = (f"POST /hooks/bench_hook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: application/json\r\nX-Hub-Signature-256: {signature}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            t0 = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            status = int(status_line.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - t0, latencies, statuses


def run_mode(mode: str, bodies: list[tuple[bytes, str]], connections: int, warmup: int
             ) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="restlake-bench-hooks-", dir=os.environ.get(
            "RESTLAKE_BENCH_DIR")) as spool:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, mode, spool), daemon=True)
        proc.start()
        port = parent.recv()
        for _ in range(200):  # wait for the server to listen
            try:
                asyncio.run(_client(port, bodies[:1], 1))
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(_client(port, bodies[1:warmup], connections))
        parent.send("cpu")
        cpu0 = parent.recv()
        seconds, latencies, statuses = asyncio.run(_client(port, bodies[warmup:], connections))
        parent.send("cpu")
        cpu = parent.recv() - cpu0
        parent.send("stop")
        proc.join(30)
    latencies.sort()
    n = len(latencies)
    return {"mode": mode, "events": n, "seconds": seconds, "events_per_s": n / seconds,
            "p50_ms": 1000 * latencies[n // 2], "p99_ms": 1000 * latencies[int(n * 0.99) - 1],
            "statuses": statuses, "server_cpu_us": 1e6 * cpu / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per mode (20000)")
    parser.add_argument("--size", type=int, default=1024, help="event body bytes (1024)")
    parser.add_argument("--connections", type=int, default=32, help="client connections (32)")
    parser.add_argument("--modes", default="group,per_event,none")
    args = parser.parse_args()
    warmup = min(1000, args.events // 10)
    bodies = _bodies(args.events + warmup, args.size)
    results = {}
    for mode in args.modes.split(","):
        r = results[mode] = run_mode(mode, bodies, args.connections, warmup)
        print(f"{mode:>9}: {r['events_per_s']:8,.0f} events/s  p50 {r['p50_ms']:6.1f} ms  "
              f"p99 {r['p99_ms']:6.1f} ms  server CPU {r['server_cpu_us']:5.0f} us/event  "
              f"({r['events']} events in {r['seconds']:.1f} s, "
              f"statuses {r['statuses']})", flush=True)
    if "group" in results:
        g = results["group"]
        print(f"receiver_events_per_s {g['events_per_s']:,.0f} (target >= 2,000)")
        print(f"receiver_p99_ack_ms {g['p99_ms']:.1f} (target < 50)")
        print(f"receiver_cpu_bound_events_per_s {1e6 / g['server_cpu_us']:,.0f} (one core's "
              "worth of the server's CPU per event)")
        for other in ("per_event", "none"):
            if other in results:
                print(f"group_vs_{other} {g['events_per_s'] / results[other]['events_per_s']:.2f}x")
    try:
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    except OSError:
        pass


if __name__ == "__main__":
    main()
