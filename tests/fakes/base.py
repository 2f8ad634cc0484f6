"""What every loopback fake shares: a socket server on 127.0.0.1 (a free port) served from a
daemon thread, started and stopped by the fake (or used as a context manager), and for the
HTTP fakes a handler that reads the body and answers JSON.

A fake subclasses `LoopbackServer` and sets `handler` (a request-handler class); the handler
reaches its fake as `self.fake`. Nothing here imports pytest: benchmarks use the fakes too.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HTTPServer(ThreadingHTTPServer):
    """One thread per connection; a deep backlog for bursts."""

    request_queue_size = 512  # the default backlog (5) drops bursts of connections: 1 s SYN retries
    daemon_threads = True


class TCPServer(socketserver.ThreadingTCPServer):
    """The same for plain TCP protocols (SMTP)."""

    request_queue_size = 512
    daemon_threads = True
    allow_reuse_address = True


class LoopbackServer:
    """A fake's server: `start()` binds 127.0.0.1 on a free port and serves from a thread."""

    host: ClassVar[str] = "127.0.0.1"
    handler: ClassVar[type[socketserver.BaseRequestHandler]]
    server_class: ClassVar[type[socketserver.TCPServer]] = HTTPServer

    _server: socketserver.TCPServer | None = None
    _thread: threading.Thread | None = None

    def start(self):
        server = self.server_class((self.host, 0), self.handler)
        server.fake = self  # type: ignore[attr-defined] - how handlers find their fake
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return self._server.server_address[1]


class JSONHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, quiet, JSON answers; `self.fake` is the LoopbackServer."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    @property
    def fake(self):
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass
