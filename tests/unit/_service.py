"""A real restlake service (uvicorn) on 127.0.0.1 in a thread, for the service tests."""

from __future__ import annotations

from html.parser import HTMLParser
import socket
import threading
import time
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceThread:
    """Serve ``app`` on 127.0.0.1 until the ``with`` block ends.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
    """

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServiceThread":
        self._thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the service did not start")

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self._thread.join(10)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=120, **kwargs)


class DashboardDom(HTMLParser):
    """A dumped dashboard page: section ids with their data-rows, the body's state, the
    headline cards, the footer's refresh seconds, the images and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, int] = {}
        self.body_state = None
        self.cards: dict[str, str] = {}
        self.refresh_s = None
        self.text: list[str] = []
        self.images = 0
        self._in: list[str] = []
        self._value = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "data-rows" in a:
            self.rows[a["id"]] = int(a["data-rows"])
        if tag == "body":
            self.body_state = a.get("data-state")
        if tag == "img":
            self.images += 1
        self._in.append(a.get("class") or a.get("id") or "")

    def handle_endtag(self, tag):
        if self._in:
            self._in.pop()

    def handle_data(self, data):
        self.text.append(data)
        where = self._in[-1] if self._in else ""
        if where == "value":
            self._value = data
        elif where == "label" and self._value is not None:
            self.cards[data] = self._value
        elif where == "refresh-s":
            self.refresh_s = data
