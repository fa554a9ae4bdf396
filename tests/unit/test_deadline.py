"""The body deadline's watchdog (framework.http.deadline) on real sockets."""

import socket
import threading

from framework.http.deadline import Watchdog


def test_a_read_still_blocked_at_its_deadline_is_cut_and_marked():
    dog = Watchdog()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"x")  # a byte now and then: no read ever waits long
        armed = dog.arm(0.3, ours)
        got = [ours.recv(1)]
        got.append(ours.recv(1))  # blocks until the watchdog cuts the connection
        dog.disarm(armed)
        assert got == [b"x", b""] and armed.fired


def test_a_read_that_ended_is_never_cut():
    dog = Watchdog()
    ours, theirs = socket.socketpair()
    spare = socket.socket()
    with ours, theirs, spare:
        armed = dog.arm(0.1, ours)
        dog.disarm(armed)
        later = dog.arm(0.3, spare)  # its cut shows the watchdog went past the first deadline
        for _ in range(500):  # (bounds a hang)
            if later.fired:
                break
            threading.Event().wait(0.01)
        assert later.fired
        theirs.sendall(b"still open")
        assert ours.recv(32) == b"still open" and not armed.fired


def test_ended_reads_do_not_pile_up():
    dog = Watchdog()
    sock = socket.socket()
    with sock:
        keep = dog.arm(600, sock)
        for _ in range(5000):
            dog.disarm(dog.arm(600, sock))
        assert len(dog._heap) <= 1025
        dog.disarm(keep)
