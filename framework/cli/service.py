"""``restlake serve`` (the monitoring service: JSON API and live dashboard), ``restlake
receive`` (webhooks alone) and ``restlake scheduler`` (the scheduler alone, no HTTP).

Reads start no JVM; the first write (``POST``) starts the one Spark session the process
keeps. ``serve --schedule`` attaches the scheduler (:mod:`framework.service.scheduler`),
which starts that session in the background as it starts (the service answers and the
first loads fetch meanwhile) and keeps it warm; a session that cannot start stops the
process (exit 1) the way SIGTERM does, its loads back to PENDING. SIGTERM or SIGINT drains the
scheduler: no new claim, loads in flight reach a commit, leases released, health log
flushed; exit 0 within ``--grace`` seconds (1 when the grace period ran out).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any, Callable, Iterator, Optional

from framework.cli.options import PORT, number
from framework.cli.console import console
from framework.errors import ConfigError

EXAMPLES = {
    "serve": "RESTLAKE_API_KEYS=env:RESTLAKE_KEY restlake serve --port 8080\n"
             "  restlake serve --public-read        # loopback only: reads without a key\n"
             "  restlake serve --schedule --service-config conf/service.yaml --grace 60",
    "scheduler": "restlake scheduler\n"
                 "  restlake scheduler --service-config conf/service.yaml --log-format json "
                 "--log-file ./logs/scheduler.log",
    "receive": "restlake receive --host 0.0.0.0 --port 8090   # senders POST /hooks/<config_id>",
}

log = logging.getLogger(__name__)


def add_commands(sub: Any, add: Callable[[str, str], argparse.ArgumentParser]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    p = add("serve", "serve the JSON API (/api/v1, docs at /docs) and the live dashboard (/); "
                     "keys: RESTLAKE_API_KEYS=env:NAME[,file:PATH...], sent as X-API-Key")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=PORT, default=8080, help="port (default 8080)")
    p.add_argument("--public-read", action="store_true",
                   help="answer GET requests without a key (only with a loopback --host)")
    p.add_argument("--schedule", action="store_true",
                   help="also run the scheduler: due loads, health probes, notifications, report")
    _scheduler_options(p)
    p = add("scheduler", "run the scheduler alone (no HTTP): due loads on each source's cadence, "
                         "health probes on each source's interval, notifications, daily report")
    _scheduler_options(p)
    p = add("receive", "receive the webhooks of push sources alone (POST /hooks/<config_id>): "
                       "verified, spooled durably (RESTLAKE_SPOOL), flushed to Delta in batches")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=PORT, default=8090, help="port (default 8090)")
    return {"serve": cmd_serve, "receive": cmd_receive, "scheduler": cmd_scheduler}


def _scheduler_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service-config", metavar="FILE",
                   help="YAML with scheduler:, report: and notifications: blocks (README: Scheduler)")
    p.add_argument("--grace", type=number(float, minimum=0), default=30.0, metavar="S",
                   help="on SIGTERM/SIGINT, seconds to drain before exiting (default 30)")
    p.set_defaults(default_log_level="INFO")


def _uvicorn() -> Any:
    try:
        import uvicorn
        import fastapi  # noqa: F401 - the app needs it
    except ImportError as exc:
        raise ConfigError(f"the service needs its extra: pip install 'restlake[service]' "
                          f"({exc.name} is missing)") from None
    return uvicorn


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, before anything else of the server starts; a
    :class:`ConfigError` naming the address when it cannot be (in use, not this host's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "the address is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise ConfigError(f"cannot listen on {host}:{port}: {why}") from None
    return sock


def run_server(uvicorn: Any, app: Any, sock: socket.socket, *,
               on_signal: Optional[Callable[[], None]] = None, grace: float = 30.0,
               banner: str = "") -> None:
    """Serve ``app`` on ``sock`` (:func:`listen`) until SIGINT or SIGTERM; returns after
    uvicorn's graceful shutdown. ``banner`` is printed once a SIGTERM would stop the
    server gracefully.

    uvicorn raises the signal it caught again once it has shut down; for SIGTERM that
    would end the process before the caller drains (the receiver's last flush), so while
    it serves SIGTERM's own handler only asks the server to stop (a SIGTERM before
    uvicorn's handlers are in place stops it as it starts) and the caller finishes, then
    exits 0.

    Args:
        on_signal: called at once when the signal comes (the scheduler starts draining
            while uvicorn closes the HTTP side).
        grace: how long uvicorn waits for requests in flight.
    """
    from framework.service.hooks import asgi

    access_log = bool(os.environ.get("RESTLAKE_ACCESS_LOG"))
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        asgi(app), host=host, port=port, log_level="warning",
        # uvicorn's records go through restlake's handlers (JSON, --log-file, redaction)
        log_config=None, access_log=access_log,
        timeout_graceful_shutdown=max(1, int(grace)))
    if access_log:  # one INFO line per request (log_level quiets uvicorn's own chatter only)
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    server = uvicorn.Server(config)
    if on_signal is not None:
        handle_exit = server.handle_exit

        def on_exit(sig: int, frame: Any) -> None:
            on_signal()
            handle_exit(sig, frame)

        server.handle_exit = on_exit  # type: ignore[method-assign]
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Until uvicorn handles signals (and again when it raises the one it caught on its
        # way out) a SIGTERM asks the server to stop: one that comes while it starts is
        # not lost, and none ends the process before the caller drains.
        previous = signal.signal(signal.SIGTERM, lambda sig, frame: server.handle_exit(sig, frame))
    try:
        if banner:
            console.print(banner, soft_wrap=True, markup=False)
        server.run(sockets=[sock])
    finally:
        sock.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def cmd_receive(args: argparse.Namespace) -> int:
    """Run the webhook receiver until interrupted; on exit, flush what is spooled."""
    uvicorn = _uvicorn()
    from framework.lake.tables import Warehouse
    from framework.push.receiver import Receiver
    from framework.service.access import ApiKeys
    from framework.service.hooks import receiver_app

    keys = ApiKeys.from_env()  # optional here: they only unlock /health's per-source detail
    warehouse = Warehouse.from_env(args.warehouse)
    sock = listen(args.host, args.port)
    receiver = Receiver(warehouse, args.control_catalog).start()
    try:
        sources = ", ".join(receiver.state()) or "none yet"
        run_server(uvicorn, receiver_app(receiver, keys), sock,
                   banner=f"restlake receive on http://{args.host}:{args.port}/hooks/<config_id> "
                          f"(spool {receiver.root}; push sources: {sources})")
    finally:
        receiver.stop()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # the address and the access options before the scheduler claims a row or Spark starts
    keys = access_keys(args)
    sock = listen(args.host, args.port)
    if not args.schedule:
        return serve(args, sock=sock, keys=keys)
    scheduler = build_scheduler(args)
    with _stop_on_signals(scheduler):
        scheduler.start()
        _begin_spark(scheduler)
        try:
            serve(args, scheduler, sock=sock, keys=keys)
        except BaseException:  # the service could not start: stop the scheduler too
            scheduler.stop(args.grace)
            raise
    return _drained(scheduler, args.grace)


def cmd_scheduler(args: argparse.Namespace) -> int:
    scheduler = build_scheduler(args)
    with _stop_on_signals(scheduler):
        scheduler.start()
        _begin_spark(scheduler)
        console.print(f"restlake scheduler running ({len(scheduler.agenda.sources)} sources); "
                      "SIGTERM or Ctrl-C drains and stops", soft_wrap=True)
        while not scheduler.wait(1.0):
            pass
    return _drained(scheduler, args.grace)


def build_scheduler(args: argparse.Namespace) -> Any:
    """The scheduler of the global options and ``--service-config``, its Spark session started."""
    try:
        from framework.service.scheduler import Scheduler
    except ImportError as exc:
        raise ConfigError(f"the scheduler needs the service extra: pip install 'restlake[service]' "
                          f"({exc.name} is missing)") from None
    from framework.cli.console import open_store
    from framework.service.settings import load_settings

    settings = load_settings(args.service_config)
    # Spark is begun once the scheduler runs (_begin_spark); the store starts it here only
    # when it needs it first (tables to create, a metastore warehouse)
    spark, _, store = open_store(args, starting=True)
    store.init()
    return Scheduler(spark, store, settings)


def _begin_spark(scheduler: Any) -> None:
    """Start the scheduler's Spark session in the background. A start that fails stops the
    process as SIGTERM does (the drain: loads waiting for Spark go back to PENDING), and
    :func:`_drained` exits 1 saying why."""
    def failed(exc: BaseException) -> None:
        from framework.load.runtime import sanitize_error

        log.error("Spark did not start: %s; the scheduler stops", sanitize_error(exc))
        os.kill(os.getpid(), signal.SIGTERM)

    scheduler.spark.begin(on_failure=failed)


@contextlib.contextmanager
def _stop_on_signals(scheduler: Any) -> Iterator[None]:
    """SIGTERM and SIGINT ask the scheduler to stop (while uvicorn serves, it calls it too)."""
    def handler(signum: int, frame: Any) -> None:
        log.info("%s received: draining", signal.Signals(signum).name)
        scheduler.request_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _drained(scheduler: Any, grace: float) -> int:
    if scheduler.stop(grace):
        console.print("scheduler stopped: every job finished")
        failure = getattr(scheduler.spark, "failure", None)
        if failure is not None:
            from framework.cli.console import error
            from framework.load.runtime import sanitize_error

            error(f"Spark did not start: {sanitize_error(failure)}; the loads it stopped are "
                  "PENDING again (start the scheduler again once Spark can start)")
            return 1
        return 0
    # A job is still running: its rows stay RUNNING until their lease expires and another
    # runner takes them over. Leave now (the job's threads would hold the interpreter).
    console.print(f"scheduler stopped: the grace period ({grace:g} s) ran out")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def access_keys(args: argparse.Namespace) -> Any:
    """The service's API keys (:class:`framework.service.access.ApiKeys`), or a
    :class:`ConfigError` when its access options cannot serve: no key without
    ``--public-read``, or ``--public-read`` on a host other than loopback."""
    from framework.service.access import ApiKeys, is_loopback

    if args.public_read and not is_loopback(args.host):
        raise ConfigError(f"--public-read serves data without a key, so it needs a loopback "
                          f"--host (127.0.0.1, ::1 or localhost), not {args.host}")
    keys = ApiKeys.from_env()
    if not keys and not args.public_read:
        raise ConfigError("no API keys: set RESTLAKE_API_KEYS to secret references "
                          "(e.g. RESTLAKE_API_KEYS=env:RESTLAKE_KEY), or use --public-read on "
                          "loopback for a read-only local service")
    return keys


def serve(args: argparse.Namespace, scheduler: Optional[Any] = None,
          sock: Optional[socket.socket] = None, keys: Optional[Any] = None) -> int:
    """Run the service until interrupted.

    Args:
        args: the global options and ``--host``, ``--port``, ``--public-read``.
        scheduler: what ``--schedule`` attaches (see :class:`framework.service.api.Scheduler`).
        sock: the bound socket (default: :func:`listen` on ``--host`` and ``--port``).
        keys: the API keys (default: :func:`access_keys`).
    """
    uvicorn = _uvicorn()
    from framework.lake.tables import Warehouse
    from framework.push.receiver import Receiver
    from framework.service.api import create_app

    keys = keys if keys is not None else access_keys(args)
    warehouse = Warehouse.from_env(args.warehouse)
    sock = sock or listen(args.host, args.port)
    # The receiver's flushes write with the one session the service keeps warm.
    receiver = Receiver(warehouse, args.control_catalog,
                        spark_factory=lambda: app.state.service.spark())
    app = create_app(warehouse, args.control_catalog, keys, scheduler=scheduler,
                     public_read=args.public_read, receiver=receiver)
    access = ("reads without a key, POST with a key" if args.public_read else "every request needs a key")
    receiver.start()
    try:
        run_server(uvicorn, app, sock, grace=args.grace,
                   on_signal=scheduler.request_stop if scheduler is not None else None,
                   banner=f"restlake serve on http://{args.host}:{args.port} ({access}; "
                          f"{len(keys)} key(s)); dashboard /, docs /docs, webhooks "
                          "/hooks/<config_id>")
    finally:
        receiver.stop()
    return 0
