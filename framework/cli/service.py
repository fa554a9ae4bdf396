"""``restlake serve``: the monitoring service (JSON API and live dashboard).

Reads start no JVM; the first write (``POST``) starts the one Spark session the process
keeps. ``--schedule`` attaches the scheduler (see :func:`serve`, its ``scheduler``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any, Callable, Optional

from framework.cli.console import console
from framework.errors import ConfigError

EXAMPLES = {
    "serve": "RESTLAKE_API_KEYS=env:RESTLAKE_KEY restlake serve --port 8080\n"
             "  restlake serve --public-read        # loopback only: reads without a key",
    "receive": "restlake receive --host 0.0.0.0 --port 8090   # senders POST /hooks/<config_id>",
}

log = logging.getLogger(__name__)


def add_commands(sub: Any, add: Callable[[str, str], argparse.ArgumentParser]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    p = add("serve", "serve the JSON API (/api/v1, docs at /docs) and the live dashboard (/); "
                     "keys: RESTLAKE_API_KEYS=env:NAME[,file:PATH...], sent as X-API-Key")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--public-read", action="store_true",
                   help="answer GET requests without a key (only with a loopback --host)")
    p = add("receive", "receive the webhooks of push sources alone (POST /hooks/<config_id>): "
                       "verified, spooled durably (RESTLAKE_SPOOL), flushed to Delta in batches")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    return {"serve": cmd_serve, "receive": cmd_receive}


def _uvicorn() -> Any:
    try:
        import uvicorn
        import fastapi  # noqa: F401 - the app needs it
    except ImportError as exc:
        raise ConfigError(f"the service needs its extra: pip install 'restlake[service]' "
                          f"({exc.name} is missing)") from None
    return uvicorn


def run_server(uvicorn: Any, app: Any, host: str, port: int) -> None:
    """Serve ``app`` until SIGINT or SIGTERM; returns after uvicorn's graceful shutdown.

    uvicorn raises the signal it caught again once it has shut down; for SIGTERM that
    would end the process before the caller drains (the receiver's last flush), so while
    it serves SIGTERM's own handler does nothing and the caller finishes, then exits 0.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning",
                    access_log=bool(os.environ.get("RESTLAKE_ACCESS_LOG")))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def cmd_receive(args: argparse.Namespace) -> int:
    """Run the webhook receiver until interrupted; on exit, flush what is spooled."""
    uvicorn = _uvicorn()
    from framework.lake.tables import Warehouse
    from framework.push.receiver import Receiver
    from framework.service.hooks import receiver_app

    warehouse = Warehouse.from_env(args.warehouse)
    receiver = Receiver(warehouse, args.control_catalog).start()
    try:
        sources = ", ".join(receiver.state()) or "none yet"
        console.print(f"restlake receive on http://{args.host}:{args.port}/hooks/<config_id> "
                      f"(spool {receiver.root}; push sources: {sources})", soft_wrap=True,
                      markup=False)
        run_server(uvicorn, receiver_app(receiver), args.host, args.port)
    finally:
        receiver.stop()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(args)


def serve(args: argparse.Namespace, scheduler: Optional[Any] = None) -> int:
    """Run the service until interrupted.

    Args:
        args: the global options and ``--host``, ``--port``, ``--public-read``.
        scheduler: what ``--schedule`` attaches (see :class:`framework.service.api.Scheduler`).
    """
    uvicorn = _uvicorn()
    from framework.lake.tables import Warehouse
    from framework.push.receiver import Receiver
    from framework.service.access import ApiKeys, is_loopback
    from framework.service.api import create_app

    if args.public_read and not is_loopback(args.host):
        raise ConfigError(f"--public-read serves data without a key, so it needs a loopback "
                          f"--host (127.0.0.1, ::1 or localhost), not {args.host}")
    keys = ApiKeys.from_env()
    if not keys and not args.public_read:
        raise ConfigError("no API keys: set RESTLAKE_API_KEYS to secret references "
                          "(e.g. RESTLAKE_API_KEYS=env:RESTLAKE_KEY), or use --public-read on "
                          "loopback for a read-only local service")
    warehouse = Warehouse.from_env(args.warehouse)
    # The receiver's flushes write with the one session the service keeps warm.
    receiver = Receiver(warehouse, args.control_catalog,
                        spark_factory=lambda: app.state.service.spark())
    app = create_app(warehouse, args.control_catalog, keys, scheduler=scheduler,
                     public_read=args.public_read, receiver=receiver)
    access = ("reads without a key, POST with a key" if args.public_read else "every request needs a key")
    receiver.start()
    try:
        console.print(f"restlake serve on http://{args.host}:{args.port} ({access}; "
                      f"{len(keys)} key(s)); dashboard /, docs /docs, webhooks /hooks/<config_id>",
                      soft_wrap=True)
        run_server(uvicorn, app, args.host, args.port)
    finally:
        receiver.stop()
    return 0
