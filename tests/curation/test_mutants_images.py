"""Images' fetch safeguards and address refusal: what the fair draws of 2026-12-05
(tests/mutation/draw.py, seeds 1205 and 1206) left alive, written after each draw (their results
stay in tests/mutation/report.md as they were); and what the whole run of the status table and
its journal left alive (2026-12-07)."""

from __future__ import annotations

import dataclasses
import os
import socket
import struct
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from curation.errors import UserError
from curation.images import FetchSettings, _Failure, _guarded_socket, fetch_one
from tests.conftest import serving
from tests.curation.test_images import SETTINGS

ROOT = Path(__file__).resolve().parents[2]


class _Quiet(BaseHTTPRequestHandler):
    """The test servers' handlers: no log line per request on stderr."""

    def log_message(self, *args):
        pass

    def answer_empty(self, status: int, location: str | None = None) -> None:
        """An answer without a body: its status, and where a redirect points."""
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _fetch_once(handler: type[BaseHTTPRequestHandler], tmp_path: Path):
    """One image fetched, without retries, from a local server answering with ``handler``."""
    with serving(handler) as base:
        return fetch_one(f"{base}/img.jpg", tmp_path / "images",
                         dataclasses.replace(SETTINGS, retries=0))


def test_a_backoff_of_zero_is_allowed_and_negative_values_get_the_whole_message():
    FetchSettings(backoff=0.0, retries=0, resize=0, max_redirects=0).check()  # retry at once
    for field in ("retries", "backoff", "resize", "max_redirects"):
        with pytest.raises(UserError) as caught:
            FetchSettings(**{field: -1}).check()
        assert str(caught.value) == ("--retries, --backoff, --resize and --max-redirects "
                                     "must be >= 0")


def test_a_redirect_without_a_location_is_its_own_empty_answer_not_a_loop(tmp_path: Path):
    requested: list[str] = []

    class Handler(_Quiet):
        def do_GET(self):
            requested.append(self.path)
            self.answer_empty(302)  # no Location header: nowhere to follow

    with serving(Handler) as base:
        outcome = fetch_one(f"{base}/img.jpg", tmp_path / "images", SETTINGS)
    assert outcome.status == "not_an_image"  # not "redirect_loop": it redirects nowhere
    assert outcome.error == "not an image (0 bytes): not an image format"
    assert requested == ["/img.jpg"]


def test_a_server_that_never_answers_is_a_timeout_that_says_so(tmp_path: Path):
    settings = dataclasses.replace(SETTINGS, retries=0, read_timeout=0.3)
    # listening but never accepting: the kernel completes the connection and the request is
    # sent, but no response comes
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/img.jpg"
        outcome = fetch_one(url, tmp_path / "images", settings)
    assert outcome.status == "timeout"
    assert outcome.error is not None and outcome.error.startswith("no response in time")


# --- what the fair draw of seed 1206 left alive (tests/mutation/draw.py --seed 1206), written
# after it ran; its raw result stays in tests/mutation/report.md as it was -----------------------

def test_a_block_size_of_zero_is_named_in_its_one_line():
    with pytest.raises(UserError) as caught:
        FetchSettings(block_urls=0).check()
    assert str(caught.value) == "--block-urls must be positive, got 0"


def test_a_file_url_with_a_nul_byte_is_a_bad_url_that_says_so(tmp_path: Path):
    outcome = fetch_one("file:///tmp/a%00b.jpg", tmp_path / "images", SETTINGS)
    assert (outcome.status, outcome.attempts) == ("bad_url", 1)
    assert outcome.error == "a file URL with a NUL byte"


def test_a_429_row_says_it_was_rate_limited(tmp_path: Path):
    class Handler(_Quiet):
        def do_GET(self):
            self.answer_empty(429)

    outcome = _fetch_once(Handler, tmp_path)
    assert (outcome.status, outcome.http_status) == ("http_429", 429)
    assert outcome.error == "HTTP 429 (rate limited)"


def test_a_connection_asked_for_past_the_urls_deadline_is_a_deadline_failure():
    """The URL's deadline is checked before each connection (a redirect or a retry may come
    after it has passed): the status and the line say which deadline."""
    settings = dataclasses.replace(SETTINGS, url_deadline=7.0)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]
        with pytest.raises(_Failure) as caught:
            _guarded_socket("127.0.0.1", port, settings, time.monotonic() - 0.001)
    assert caught.value.status == "deadline"
    assert str(caught.value) == "over the 7 s deadline for one URL"


def test_a_redirect_chain_past_the_cap_says_how_many_were_allowed(tmp_path: Path):
    class Handler(_Quiet):
        def do_GET(self):  # every answer a redirect to a new path: a chain, not a loop
            self.answer_empty(302, self.path + "x")

    settings = dataclasses.replace(SETTINGS, retries=0, max_redirects=2)
    with serving(Handler) as base:
        outcome = fetch_one(f"{base}/img.jpg", tmp_path / "images", settings)
    assert outcome.status == "too_many_redirects"
    assert outcome.error == "more than 2 redirects"


def test_a_name_lookup_that_hangs_is_given_up_after_the_connect_timeout(monkeypatch):
    """The system resolver can hang (a dead DNS server): the lookup runs beside the fetch and
    is given up after --connect-timeout. The resolver is replaced by one that answers only
    after 5 s, the one stand-in here: a real hanging DNS server cannot be set up locally."""
    import threading

    released = threading.Event()

    def hanging_lookup(*args, **kwargs):
        released.wait(5.0)
        raise socket.gaierror("the stand-in resolver gave up")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    settings = dataclasses.replace(SETTINGS, connect_timeout=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(_Failure) as caught:
            _guarded_socket("images.example", 80, settings, time.monotonic() + 30)
        # still hanging, and a daemon: it cannot hold the process open at exit
        hanging = [t for t in threading.enumerate() if t.name.endswith("(lookup)")]
        assert hanging and all(t.daemon for t in hanging)
    finally:
        released.set()
    assert caught.value.status == "timeout"
    assert str(caught.value) == "resolving images.example took more than 0.2 s"
    assert time.monotonic() - started < 2.0


# --- what the fair draw of seed 1216 left alive (tests/mutation/draw.py --seed 1216), written
# after it ran; its raw result stays in tests/mutation/report.md as it was -----------------------

def test_a_body_cut_short_keeps_its_http_status_and_says_how_much_came(tmp_path: Path):
    class Handler(_Quiet):
        def do_GET(self):  # 1,000 bytes promised, 10 sent, then the connection closes
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"\xff\xd8" + b"x" * 8)
            self.close_connection = True

    outcome = _fetch_once(Handler, tmp_path)
    assert (outcome.status, outcome.http_status) == ("truncated", 200)
    assert outcome.error == "body ended after 10 of 1000 bytes"


def test_a_redirect_loop_names_the_url_it_came_back_to_in_at_most_200_characters(
        tmp_path: Path):
    long_path = "/" + "a" * 300 + ".jpg"

    class Handler(_Quiet):
        def do_GET(self):  # /ping.jpg -> /pong.jpg -> /ping.jpg; the long path to itself
            following = {"/ping.jpg": "/pong.jpg", "/pong.jpg": "/ping.jpg"}.get(self.path,
                                                                                self.path)
            self.answer_empty(302, following)

    settings = dataclasses.replace(SETTINGS, retries=0)
    with serving(Handler) as base:
        short = fetch_one(f"{base}/ping.jpg", tmp_path / "images", settings)
        long = fetch_one(base + long_path, tmp_path / "images", settings)
    assert (short.status, short.http_status) == ("redirect_loop", 302)
    assert short.error == f"{base}/ping.jpg redirects back"
    assert long.status == "redirect_loop"
    assert long.error == f"{(base + long_path)[:200]} redirects back"


def test_a_connection_that_lands_on_another_address_than_asked_is_refused_and_says_where(
        tmp_path: Path):
    """Connecting to 0.0.0.0 reaches this host's loopback (Linux): the peer, 127.0.0.1, is
    not the address connected to, which the peer check refuses even with private networks
    open, since the address judged is not the one reached."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]
        with pytest.raises(_Failure) as caught:
            _guarded_socket("0.0.0.0", port, SETTINGS, time.monotonic() + 30)
    assert caught.value.status == "refused"
    assert str(caught.value) == "0.0.0.0 connected to 127.0.0.1 (unexpected)"


def test_a_connection_that_lands_on_a_refused_address_says_why_it_is_refused():
    """Draw 1222 (2026-12-07): the peer itself was no longer judged, so a connection that
    landed on a refused address said only "unexpected". Here 0.0.0.0 is opened on its own
    and the peer it reaches, this host's loopback, is not."""
    settings = dataclasses.replace(SETTINGS, allow_private_network=False,
                                   allow_networks=("0.0.0.0/32",))
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]
        with pytest.raises(_Failure) as caught:
            _guarded_socket("0.0.0.0", port, settings, time.monotonic() + 30)
    assert caught.value.status == "refused"
    assert str(caught.value) == "0.0.0.0 connected to 127.0.0.1 (loopback)"


def test_a_refused_address_of_a_name_is_passed_over_for_the_next_one_allowed(monkeypatch):
    """A name may resolve to several addresses: a refused one is skipped and the next is
    tried. The resolver's answer is the stand-in here (offline, no name resolves to two
    addresses); the sockets and the connection are real."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]
        answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                  for address in ("127.0.0.2", "127.0.0.1")]
        monkeypatch.setattr(socket, "getaddrinfo", _resolver({"images.example": answer}))
        settings = dataclasses.replace(SETTINGS, allow_private_network=False,
                                       allow_networks=("127.0.0.1/32",))
        with _guarded_socket("images.example", port, settings, time.monotonic() + 30) as sock:
            assert sock.getpeername() == ("127.0.0.1", port)
        settings = dataclasses.replace(settings, allow_networks=())
        with pytest.raises(_Failure) as caught:
            _guarded_socket("images.example", port, settings, time.monotonic() + 30)
    assert str(caught.value) == (
        "images.example resolves to 127.0.0.2 (loopback), 127.0.0.1 (loopback): not a public "
        "address (--allow-private-network or --allow-network opens it)")


# --- what the fair draw of seed 1217 left alive (tests/mutation/draw.py --seed 1217), written
# after it ran; its raw result stays in tests/mutation/report.md as it was -----------------------

def test_a_folder_or_a_fifo_named_by_a_file_url_is_not_a_regular_file(tmp_path: Path):
    """Until 2026-12-07 a folder reached os.fdopen before the check and came back as an
    unforeseen error ("IsADirectoryError: [Errno 21] Is a directory: 3")."""
    corpus = tmp_path / "corpus"
    (corpus / "folder.jpg").mkdir(parents=True)
    os.mkfifo(corpus / "pipe.jpg")  # opened without blocking, then refused
    settings = dataclasses.replace(SETTINGS, allow_file_roots=(str(corpus),))
    for name in ("folder.jpg", "pipe.jpg"):
        outcome = fetch_one((corpus / name).as_uri(), tmp_path / "images", settings)
        assert (outcome.status, outcome.attempts) == ("file_not_found", 1)
        assert outcome.error == f"{corpus / name} is not a regular file"


def test_an_unforeseen_error_is_the_urls_row_with_its_class_and_a_capped_message(
        tmp_path: Path, monkeypatch):
    """Every known failure is a _Failure with its own status; anything else (a bug) must still
    end as this URL's row, not stop the fetch. The bug is planted: a decoder that raises."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jpg").write_bytes(b"\xff\xd8 some bytes")

    def broken_decoder(*args, **kwargs):
        raise RuntimeError("x" * 500)

    monkeypatch.setattr("curation.images.process_image", broken_decoder)
    settings = dataclasses.replace(SETTINGS, allow_file_roots=(str(corpus),))
    outcome = fetch_one((corpus / "a.jpg").as_uri(), tmp_path / "images", settings)
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("error", None, 1)
    assert outcome.error == ("RuntimeError: " + "x" * 500)[:200]


def test_a_body_past_the_byte_cap_keeps_its_http_status(tmp_path: Path):
    class Handler(_Quiet):
        def do_GET(self):  # no Content-Length: only the streamed count can see the size
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\xff\xd8" + b"x" * (SETTINGS.max_bytes + 10_000))

    outcome = _fetch_once(Handler, tmp_path)
    assert (outcome.status, outcome.http_status) == ("too_large", 200)
    assert outcome.error == f"more than {SETTINGS.max_bytes:,} bytes"


def test_a_connection_reset_in_the_body_keeps_its_http_status(tmp_path: Path):
    class Handler(_Quiet):
        def do_GET(self):  # headers and part of the body, then a reset (RST), not a close
            self.send_response(200)
            self.send_header("Content-Length", "50000")
            self.end_headers()
            self.wfile.write(b"\xff\xd8" + b"x" * 1000)
            self.wfile.flush()
            time.sleep(0.1)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()

    outcome = _fetch_once(Handler, tmp_path)
    assert (outcome.status, outcome.http_status) == ("connection_error", 200)
    assert outcome.error == "ConnectionResetError"


def test_a_hanging_name_lookup_does_not_keep_the_process_from_ending():
    """The lookup runs in a daemon thread: once given up, it must not hold the process open at
    exit (as `curate images fetch` would be, against a dead DNS server). The resolver is the
    stand-in, in a child process: it answers only after 30 s."""
    script = (
        "import socket, time\n"
        "from curation.images import FetchSettings, _Failure, _guarded_socket\n"
        "socket.getaddrinfo = lambda *args, **kwargs: time.sleep(30)\n"
        "try:\n"
        "    _guarded_socket('images.example', 80, FetchSettings(connect_timeout=0.2),\n"
        "                    time.monotonic() + 30)\n"
        "except _Failure as failure:\n"
        "    print(failure.status)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=20)
    assert (done.returncode, done.stdout.strip()) == (0, "timeout"), done.stderr
    assert time.monotonic() - started < 15


# --- what the fair draw of seed 1218 left alive (tests/mutation/draw.py --seed 1218), written
# after it ran; its raw result stays in tests/mutation/report.md as it was -----------------------

def _resolver(names: dict[str, list[tuple]]):
    """The stand-in for DNS (offline, no name here resolves but localhost): each name its
    answer, any other name unknown, as getaddrinfo says it."""
    def getaddrinfo(host, port, *args, **kwargs):
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return names[host]
    return getaddrinfo


def test_a_name_that_cannot_be_resolved_is_a_connection_error_that_names_it(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({}))
    with pytest.raises(_Failure) as caught:
        _guarded_socket("images.example", 80, SETTINGS, time.monotonic() + 30)
    assert caught.value.status == "connection_error"
    assert str(caught.value) == ("cannot resolve images.example: [Errno -2] Name or service "
                                 "not known")


def test_a_closed_port_behind_a_name_is_a_refused_connection_not_another_kind_of_socket():
    """localhost is resolved for real (the hosts file): its answers are asked for TCP only, so
    a closed port is the connection refused, not a UDP socket that connects to anything."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        _guarded_socket("localhost", closed, SETTINGS, time.monotonic() + 30).close()


# --- what the fair draw of seed 1223 left alive, written after it ran ------------------------

def test_a_body_that_is_not_an_image_keeps_its_http_status(tmp_path: Path):
    """A 200 answering with a web page, and a 302 without a Location (whose empty body is
    the answer): each row says not_an_image with the HTTP status the body came with. Draw
    1223 (2026-12-07) found the redirect's status could be dropped unseen, since no row of a
    body that is not an image carried its status then."""

    class Page(_Quiet):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>no image here</html>")

    class NowhereToGo(_Quiet):
        def do_GET(self):
            self.answer_empty(302)

    page, nowhere = _fetch_once(Page, tmp_path), _fetch_once(NowhereToGo, tmp_path)
    assert (page.status, page.http_status) == ("not_an_image", 200)
    assert (nowhere.status, nowhere.http_status) == ("not_an_image", 302)
    assert nowhere.error == "not an image (0 bytes): not an image format"


def test_the_journal_writes_a_part_per_256_results_or_when_it_is_stale(tmp_path):
    """The whole run of the status table and its journal (2026-12-07, twelfth session) left
    these alive: a part written for every result (a fetch of 48M images would leave as many
    files), a part only after 257 results, every part after the second written over the
    second (a kill then lost what those parts held), the pending results or the time of the
    last part cleared to None (the next result after a part then raised), and the status
    table keeping every row of a URL fetched again instead of its latest."""
    from curation.images import Outcome, _Journal, read_status
    from curation.paths import CatalogLayout

    layout = CatalogLayout(tmp_path / "catalog")
    layout.images.mkdir(parents=True)

    def parts() -> list[str]:
        return sorted(p.name for p in layout.image_journal.glob("part-*.parquet"))

    journal = _Journal(layout)  # every 256 results or 2 s
    for i in range(255):
        journal.add(Outcome(f"http://h/{i}.jpg", "ok"))
    assert parts() == []
    journal.add(Outcome("http://h/255.jpg", "ok"))
    assert parts() == ["part-000000.parquet"]
    for i in range(256, 300):
        journal.add(Outcome(f"http://h/{i}.jpg", "ok"))
    journal.flush()
    journal.add(Outcome("http://h/300.jpg", "ok"))
    journal.flush()
    assert parts() == [f"part-{i:06d}.parquet" for i in range(3)]
    resumed = _Journal(layout, every_seconds=1.0)  # a fetch resumed after a kill
    resumed.add(Outcome("http://h/0.jpg", "http_404", http_status=404))
    assert len(parts()) == 3
    time.sleep(1.1)
    resumed.add(Outcome("http://h/301.jpg", "ok"))  # stale: the two are written
    assert parts() == [f"part-{i:06d}.parquet" for i in range(4)]
    status = read_status(layout)
    assert status.height == 302
    assert dict(status.select("url", "status").iter_rows())["http://h/0.jpg"] == "http_404"


def test_image_stats_gives_the_same_examples_on_every_run(tmp_path):
    """The whole run of the status table (2026-12-07): read_status without maintain_order gave
    its rows in another order on each run, so `curate images stats` showed another example URL
    and error each time; the examples are each status's first URL in the table's order (by
    URL once folded)."""
    from curation.images import Outcome, _fold_journal, _Journal, image_stats
    from curation.paths import CatalogLayout

    layout = CatalogLayout(tmp_path / "catalog")
    layout.images.mkdir(parents=True)
    journal = _Journal(layout)
    for i in reversed(range(200)):
        journal.add(Outcome(f"http://h/{i:03d}.jpg", "http_404", http_status=404,
                            error=f"HTTP 404 for {i:03d}"))
    journal.flush()
    _fold_journal(layout)
    for _ in range(3):
        (only,) = image_stats(layout)["by_status"]
        assert (only["urls"], only["example_url"], only["example_error"]) == (
            200, "http://h/000.jpg", "HTTP 404 for 000")
