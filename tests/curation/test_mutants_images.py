"""Images' fetch safeguards: what the fair draw of 2026-12-05 (tests/mutation/draw.py) left
alive, written after that draw (its result stays in tests/mutation/report.md as it was)."""

from __future__ import annotations

import dataclasses
import socket
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from curation.errors import UserError
from curation.images import FetchSettings, fetch_one
from tests.conftest import serving
from tests.curation.test_images import SETTINGS


def test_a_backoff_of_zero_is_allowed_and_negative_values_get_the_whole_message():
    FetchSettings(backoff=0.0, retries=0, resize=0, max_redirects=0).check()  # retry at once
    for field in ("retries", "backoff", "resize", "max_redirects"):
        with pytest.raises(UserError) as caught:
            FetchSettings(**{field: -1}).check()
        assert str(caught.value) == ("--retries, --backoff, --resize and --max-redirects "
                                     "must be >= 0")


def test_a_redirect_without_a_location_is_its_own_empty_answer_not_a_loop(tmp_path: Path):
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            self.send_response(302)  # no Location header: nowhere to follow
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

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
