"""A real HTTP server on 127.0.0.1 for a folder of images, with planted faults.

``curate images serve DIR`` serves a synthetic corpus's images (``curate synth
--image-base-url http://127.0.0.1:PORT/``) so that ``curate images fetch`` can be tried
without the internet; the tests and ``bench/images.py`` use it with faults planted at chosen
paths, each the way a real server misbehaves:

- ``status:404`` / ``status:500``: that status, always;
- ``flaky:N``: 500 for the first N requests, then the file;
- ``slow:S``: wait S seconds before answering;
- ``truncate``: a Content-Length larger than the body, then close;
- ``html``: an HTML page with ``Content-Type: image/jpeg``;
- ``redirect:PATH``: a 302 to PATH (a path redirecting to itself is a loop).

Every request is counted per path (``server.requests``), so a test can tell what was
fetched again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        """A client that hung up (a timeout on its side) is expected here, not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ImageServer:
    def __init__(self, root: Path | str, faults: dict[str, str] | None = None,
                 delay: float = 0.0, port: int = 0) -> None:
        self.root = Path(root).resolve()
        self.faults = dict(faults or {})
        self.delay = delay  # seconds added to every response (for benchmarks)
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        handler = self._handler()
        self.httpd = _QuietServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

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
                if server.delay:
                    time.sleep(server.delay)
                fault = server.faults.get(path, "")
                kind, _, arg = fault.partition(":")
                if kind == "status":
                    return self._send(int(arg), b"error", "text/plain")
                if kind == "flaky" and count <= int(arg):
                    return self._send(500, b"try again", "text/plain")
                if kind == "slow":
                    time.sleep(float(arg))
                if kind == "html":
                    return self._send(200, b"<!doctype html><html><body>Sign in</body></html>",
                                      "image/jpeg")
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
                if kind == "truncate":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                return self._send(200, body, "image/jpeg")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        return Handler
