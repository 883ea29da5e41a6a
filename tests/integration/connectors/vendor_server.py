"""A real HTTP server on loopback that replays scripted vendor responses and records requests.

Used through the `vendor_server` fixture (see this folder's conftest.py); this
module holds the pieces tests import: `VendorServer`, `Reply`, `RecordedRequest`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["RecordedRequest", "Reply", "Script", "VendorServer"]


@dataclass(frozen=True)
class Reply:
    """One scripted response: status, headers, a JSON (or raw) body, and a delay."""

    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering: slow vendors, timeouts

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.body is not None:
            data = self.body.encode() if isinstance(self.body, str) else self.body
        elif self.json is not None:
            data = json.dumps(self.json).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            data = b""
        return data, headers


@dataclass(frozen=True)
class RecordedRequest:
    """What the server received: method, path, query, headers (lower-cased names), body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


Script = Reply | Callable[[RecordedRequest], Reply]


class VendorServer:
    """Scripted responses per (method, path); replies in a sequence are served in order
    and the last one repeats. Unscripted requests get a 404 (and are still recorded)."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], list[Script]] = {}
        self._served: dict[tuple[str, str], int] = {}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234 (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def route(self, method: str, path: str, *replies: Script) -> None:
        """Script `method path` (path without query): replies in order, the last repeats.

        A reply may be a callable taking the RecordedRequest, for answers that
        depend on the request (auth headers, pagination cursors).
        """
        if not replies:
            raise ValueError("route() needs at least one reply")
        with self._lock:
            self._routes[(method.upper(), path)] = list(replies)
            self._served[(method.upper(), path)] = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally only those for `method` and/or `path`."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or r.path == path)
        ]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # --- called from the handler threads ---

    def _answer(self, recorded: RecordedRequest) -> Reply:
        key = (recorded.method, recorded.path)
        with self._lock:
            self._requests.append(recorded)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            script = self._routes.get(key)
            if script is None:
                return Reply(
                    404,
                    {
                        "error": {
                            "code": "NotFoundError",
                            "message": f"unscripted {key[0]} {key[1]}",
                        }
                    },
                )
            index = min(self._served[key], len(script) - 1)
            self._served[key] += 1
        step = script[index]
        return step if isinstance(step, Reply) else step(recorded)

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _handler_for(server: VendorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so the client's pool is exercised

        def _handle(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            recorded = RecordedRequest(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
                at=time.monotonic(),
            )
            try:
                reply = server._answer(recorded)
                if reply.delay:
                    time.sleep(reply.delay)
                data, headers = reply.encode()
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timeout): fine
            finally:
                server._done()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests assert on recorded requests instead

    return Handler
