"""The producer's health check (common/probe.py) against a real HTTP server on this machine."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from common.probe import url_healthy

ROOT = Path(__file__).resolve().parents[2]


class Answers(BaseHTTPRequestHandler):
    """/ready answers 200, /busy 503; the Host header each request carried is kept."""

    hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Answers.hosts.append(self.headers.get("Host", ""))
        self.send_response(200 if self.path == "/ready" else 503)
        self.end_headers()
        self.wfile.write(b'{"status": "ready"}')

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_200_is_healthy_and_anything_else_is_not(server: str) -> None:
    assert url_healthy(f"{server}/ready")
    assert not url_healthy(f"{server}/busy")
    # The producer answers only to the hosts it knows: the check names the one it asked.
    assert Answers.hosts[-1] == server.removeprefix("http://")


def test_nothing_listening_is_not_healthy() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert not url_healthy(f"http://127.0.0.1:{port}/ready", timeout=1)


def test_the_docker_check_runs_it_without_site_packages(server: str) -> None:
    """As the image's HEALTHCHECK runs it: `python -S -m common.probe <url>`, exit 0 or 1."""
    for path, code in (("/ready", 0), ("/busy", 1)):
        done = subprocess.run([sys.executable, "-S", "-m", "common.probe", f"{server}{path}"], cwd=ROOT,
                              timeout=30)
        assert done.returncode == code, path
