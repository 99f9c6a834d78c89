"""The offline demo: sample sources made with ffmpeg, served on loopback, curated through yt-dlp."""

from __future__ import annotations

import contextlib
import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.synth import make_sample_video


@dataclass(frozen=True)
class DemoSource:
    name: str
    duration_s: float
    cut_every_s: float
    bpm: float
    tone_hz: float


# Three sources with different pacing: 130 s gives two clips, the others one each.
DEMO_SOURCES = (
    DemoSource("city-guide-fast-cuts", 130.0, 2.0, 128.0, 440.0),
    DemoSource("food-commercial", 75.0, 5.0, 100.0, 392.0),
    DemoSource("opening-titles-slow", 70.0, 10.0, 84.0, 330.0),
)


def demo_separator() -> str:
    """"demucs" when its weights are already in the torch-hub cache, else "none": the demo stays offline."""
    from pipeline.separate import SeparatorConfig, WeightsUnavailable, load_separator

    try:
        load_separator(SeparatorConfig(allow_download=False))
    except WeightsUnavailable:
        return "none"
    return "demucs"


def make_demo_media(dest_dir: Path, sources: tuple[DemoSource, ...] = DEMO_SOURCES) -> list[Path]:
    """Make the sample MP4s once; a re-run reuses them."""
    paths = []
    for src in sources:
        path = dest_dir / f"{src.name}.mp4"
        if not path.exists():
            make_sample_video(path, src.duration_s, cut_every_s=src.cut_every_s, bpm=src.bpm,
                              tone_hz=src.tone_hz, size="480x270", fps=30)
        paths.append(path)
    return paths


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - stdlib signature
        """A client that hangs up mid-file (yt-dlp probing a URL) is normal, not a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve_directory(directory: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``directory`` over HTTP on a free loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _QuietServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="demo-http", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
