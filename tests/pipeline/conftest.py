"""Fixtures for the acquisition stages: a loopback HTTP server, a dead port, small odd media files."""

from __future__ import annotations

import functools
import http.server
import random
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.media import run_ffmpeg


@dataclass
class LoopbackServer:
    """Serves ``root`` on 127.0.0.1; ``hits`` counts GET/HEAD requests per path; ``/busy*`` answers 503,
    ``/limited*`` 429 with Retry-After: 120; ``headers`` keeps each request's headers, in order."""

    root: Path
    port: int
    hits: Counter = field(default_factory=Counter)
    headers: list = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[LoopbackServer]:
    root = tmp_path / "www"
    root.mkdir()
    server_state = LoopbackServer(root=root, port=0)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
            pass

        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            server_state.hits[self.path] += 1
            server_state.headers.append(dict(self.headers))
            if self.path.startswith("/busy"):
                self.send_error(503, "Service Unavailable")
                return
            if self.path.startswith("/limited"):
                self.send_response(429, "Too Many Requests")
                self.send_header("Retry-After", "120")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def do_HEAD(self) -> None:  # noqa: N802 (stdlib name)
            server_state.hits[self.path] += 1
            super().do_HEAD()

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - stdlib signature
            # yt-dlp hanging up mid-file is normal; a traceback on stderr would fail the quiet-output checks
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    httpd.daemon_threads = True
    server_state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="loopback-http", daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def dead_port() -> int:
    """A loopback port nobody listens on (bound, read, closed), so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def odd_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files a source can wrongly be: random bytes, empty, video without audio, audio without video."""
    base = tmp_path_factory.mktemp("odd")
    corrupt = base / "corrupt.mp4"
    corrupt.write_bytes(random.Random(1234).randbytes(64 * 1024))
    empty = base / "empty.mp4"
    empty.write_bytes(b"")
    silent = base / "video_only.mp4"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2", "-c:v", "libx264",
         "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(silent)],
        stage="test",
    )  # fmt: skip
    music = base / "audio_only.m4a"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "sine=frequency=440:duration=2:sample_rate=44100", "-c:a", "aac", str(music)],
        stage="test",
    )
    return {"corrupt": corrupt, "empty": empty, "video_only": silent, "audio_only": music}
