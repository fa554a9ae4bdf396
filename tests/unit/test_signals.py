"""``restlake run``'s signal handling: the first SIGTERM/SIGINT drains, a second one exits now;
without ``--lease-minutes`` the run passes no lease (each row's ``limits.lease_s`` applies)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from framework.load.signals import drain_on_signals


class _Ctx:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def request_stop(self, reason: str) -> None:
        self.reasons.append(reason)


def test_the_first_signal_requests_a_drain_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    ctx = _Ctx()
    with drain_on_signals(ctx) as drain:
        os.kill(os.getpid(), signal.SIGTERM)
        assert ctx.reasons == ["SIGTERM received"]
        assert drain.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_no_signal_no_exit_code() -> None:
    with drain_on_signals(_Ctx()) as drain:
        pass
    assert drain.exit_code is None


def test_a_second_signal_exits_at_once_with_that_signal() -> None:
    code = textwrap.dedent("""
        import os, signal, sys
        from framework.load.signals import drain_on_signals

        class Ctx:
            def request_stop(self, reason):
                print("drain:", reason, flush=True)

        with drain_on_signals(Ctx()):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            print("still running", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert done.stdout == "drain: SIGINT received\n"
    assert done.returncode == -signal.SIGINT


def test_run_passes_no_lease_unless_lease_minutes_is_given() -> None:
    from framework.cli.app import build_parser

    parser, _ = build_parser()
    assert parser.parse_args(["run", "--all"]).lease_minutes is None
    assert parser.parse_args(["run", "--all", "--lease-minutes", "2.5"]).lease_minutes == 2.5


def test_a_sigterm_before_the_server_handles_signals_still_stops_it() -> None:
    # `serve` printed its banner, then ignored a SIGTERM that came before uvicorn had put
    # its own handler in place (a supervisor stopping a service as it starts): the server
    # then ran until SIGKILL.
    import socket
    import types

    import uvicorn
    from fastapi import FastAPI

    from framework.cli.service import run_server

    servers = []

    class StoppedAtStart(uvicorn.Server):
        def run(self, sockets=None):
            servers.append(self)
            signal.raise_signal(signal.SIGTERM)  # before uvicorn captures signals

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    before = signal.getsignal(signal.SIGTERM)
    run_server(types.SimpleNamespace(Config=uvicorn.Config, Server=StoppedAtStart), FastAPI(), sock)
    assert servers and servers[0].should_exit
    assert signal.getsignal(signal.SIGTERM) is before
