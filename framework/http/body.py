"""Reading one response body, bounded in size and in time: the one reader of the API's
responses and of the token endpoint's.

``timeout_s`` of the request bounds each read; ``deadline_s`` the whole body (see
:mod:`framework.http.deadline`); ``limit`` its size, refused from ``Content-Length`` before
a byte is read, or while reading.
"""

from __future__ import annotations

from typing import Optional

import requests
from urllib3.exceptions import ReadTimeoutError

from framework.http.deadline import WATCHDOG, response_socket

_CHUNK_BYTES = 64 * 1024

TOO_LARGE, TOO_SLOW, TIMED_OUT, INCOMPLETE = "too_large", "too_slow", "timed_out", "incomplete"


class BodyFault(Exception):
    """The body could not be read whole: ``kind`` says why, ``size`` the bytes read,
    ``cause`` the transport error (reset, incomplete, read timeout) when there was one."""

    def __init__(self, kind: str, size: int, declared: Optional[int] = None,
                 cause: Optional[BaseException] = None) -> None:
        super().__init__(kind)
        self.kind, self.size, self.declared, self.cause = kind, size, declared, cause


def read_body(resp: requests.Response, limit: Optional[int],
              deadline_s: Optional[float]) -> bytes:
    """The whole (decoded) body of a streamed response.

    Raises:
        BodyFault: larger than ``limit`` (``TOO_LARGE``; ``declared`` when its
            ``Content-Length`` said so), not whole within ``deadline_s`` (``TOO_SLOW``),
            a read timed out (``TIMED_OUT``) or the connection broke (``INCOMPLETE``).
    """
    declared = resp.headers.get("Content-Length", "")
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise BodyFault(TOO_LARGE, 0, int(declared))
    chunks: list[bytes] = []
    size = 0
    sock = response_socket(resp) if deadline_s else None
    armed = WATCHDOG.arm(deadline_s, sock) if sock is not None else None
    try:
        for chunk in resp.iter_content(_CHUNK_BYTES):
            size += len(chunk)
            if limit is not None and size > limit:
                raise BodyFault(TOO_LARGE, size)
            chunks.append(chunk)
    except requests.RequestException as exc:
        if armed is not None and armed.fired:
            raise BodyFault(TOO_SLOW, size) from None
        # Reset, incomplete read (Content-Length not met) or read timeout mid-body.
        timed_out = bool(exc.args) and isinstance(exc.args[0], ReadTimeoutError)
        raise BodyFault(TIMED_OUT if timed_out else INCOMPLETE, size, cause=exc) from None
    finally:
        if armed is not None:
            WATCHDOG.disarm(armed)
    if armed is not None and armed.fired:  # a body without a length ends where it was cut
        raise BodyFault(TOO_SLOW, size)
    return b"".join(chunks)

