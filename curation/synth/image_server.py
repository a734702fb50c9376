"""A real HTTP server on 127.0.0.1 for a folder of images, with planted faults.

``curate images serve DIR`` serves a synthetic corpus's images (``curate synth
--image-base-url http://127.0.0.1:PORT/``) so that ``curate images fetch`` can be tried
without the internet; the tests and ``bench/images.py`` use it with faults planted at chosen
paths, each the way a real server misbehaves:

- ``status:404`` / ``status:500`` / ``status:429``: that status, always;
- ``flaky:N`` / ``flaky:N:CODE``: 500 (or CODE, e.g. 429) for the first N requests, then the
  file;
- ``reset`` / ``reset:N``: the connection reset (TCP RST, no response) on every request, or
  on the first N, then the file;
- ``slow:S``: wait S seconds before answering;
- ``stall:S``: the headers and half the body, then S seconds of silence;
- ``truncate``: a Content-Length larger than the body, then close;
- ``nolength``: the file without a Content-Length (the body ends when the connection does);
- ``endless``: a body that never ends, without a Content-Length (the server stops at
  ``ENDLESS_BYTES``, a safety net for a client that reads it all);
- ``huge``: a Content-Length of a terabyte, then nothing until the client hangs up;
- ``html``: an HTML page with ``Content-Type: image/jpeg``;
- ``trickle:S``: the headers, then the file one byte every S seconds (each byte well within a
  read timeout, the whole far beyond any deadline);
- ``trickle-head:S``: the status line and headers themselves one byte every S seconds;
- ``redirect:URL``: a 302 to URL, a path or any URL (a path redirecting to itself is a loop).

Every request is counted per path (``server.requests``), so a test can tell what was
fetched again, with its time (``server.times``); ``server.sent`` counts the body bytes
written per path and ``server.max_in_flight`` the most requests handled at once.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ENDLESS_BYTES = 64 * 1024 * 1024  # far more than a client's and the kernel's buffers hold


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        """A client that hung up (a timeout on its side) is expected here, not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ImageServer:
    def __init__(self, root: Path | str, faults: dict[str, str] | None = None,
                 delay: float = 0.0, port: int = 0, host: str = "127.0.0.1") -> None:
        self.root = Path(root).resolve()
        self.faults = dict(faults or {})
        self.delay = delay  # seconds added to every response (for benchmarks)
        self.requests: Counter[str] = Counter()
        self.times: defaultdict[str, list[float]] = defaultdict(list)  # time.monotonic()
        self.sent: Counter[str] = Counter()  # body bytes written
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        handler = self._handler()
        self.httpd = _QuietServer((host, port), handler)  # any 127.x.y.z is this machine
        # shutdown() waits for the serve loop's next poll: a short one keeps tests quick
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with server._lock:
                    server.requests[path] = count = server.requests[path] + 1
                    server.times[path].append(time.monotonic())
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                self._in_flight = True
                try:
                    self._answer(path, count)
                finally:
                    self._finished()

            def _finished(self) -> None:
                """The request no longer counts as in flight (once): called before a response's
                last bytes go out, since the client may send its next request as soon as it
                has them, before this thread gets back here."""
                if getattr(self, "_in_flight", False):
                    self._in_flight = False
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, path: str, count: int) -> None:
                if server.delay:
                    time.sleep(server.delay)
                fault = server.faults.get(path, "")
                kind, _, arg = fault.partition(":")
                if kind == "status":
                    return self._send(int(arg), b"error", "text/plain")
                if kind == "flaky":
                    times, _, code = arg.partition(":")
                    if count <= int(times):
                        return self._send(int(code or 500), b"try again", "text/plain")
                if kind == "reset" and (not arg or count <= int(arg)):
                    # SO_LINGER with a zero timeout: close() sends RST, not FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return None
                if kind == "slow":
                    time.sleep(float(arg))
                if kind == "endless":
                    return self._endless(path)
                if kind == "huge":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(10**12))
                    self.end_headers()
                    self.connection.settimeout(10)
                    with contextlib.suppress(OSError):  # returns once the client hangs up
                        self.rfile.read(1)
                    self.close_connection = True
                    return None
                if kind == "html":
                    return self._send(200, b"<!doctype html><html><body>Sign in</body></html>",
                                      "image/jpeg")
                if kind in ("trickle", "trickle-head"):
                    return self._trickle(path, kind, float(arg))
                if kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", arg)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                file = (server.root / path.lstrip("/")).resolve()
                if server.root not in file.parents or not file.is_file():
                    return self._send(404, b"not found", "text/plain")
                body = file.read_bytes()
                if kind in ("truncate", "stall"):
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if kind == "stall":
                        time.sleep(float(arg))
                    self.close_connection = True
                    return None
                if kind == "nolength":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self._write(path, body)
                    self.close_connection = True
                    return None
                return self._send(200, body, "image/jpeg")

            def _endless(self, path: str) -> None:
                """JPEG magic, then zeros for as long as the client reads (and the net holds)."""
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                chunk = b"\0" * 65536
                if self._write(path, b"\xff\xd8\xff\xe0" + chunk[4:]):
                    while server.sent[path] < ENDLESS_BYTES and self._write(path, chunk):
                        pass

            def _trickle(self, path: str, kind: str, every: float) -> None:
                file = (server.root / path.lstrip("/")).resolve()
                body = file.read_bytes() if file.is_file() else b"\xff\xd8\xff" + b"\0" * 4096
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                self.close_connection = True
                if kind == "trickle":
                    self.wfile.write(head)
                    head = b""
                for i in range(len(head) + len(body)):
                    time.sleep(every)
                    byte = head[i:i + 1] if i < len(head) else body[i - len(head):][:1]
                    if not self._write(path, byte):
                        return

            def _write(self, path: str, data: bytes) -> bool:
                """Write body bytes and count them; False once the client has hung up."""
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return False
                with server._lock:
                    server.sent[path] += len(data)
                return True

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    return
                self._finished()
                self._write(self.path.split("?")[0], body)

        return Handler
