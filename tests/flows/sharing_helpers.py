"""Helpers of the sharing tests (release, rebuild, takedown, shared music): short curations on loopback."""

from __future__ import annotations

import contextlib
import functools
import http.server
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from dvmset.catalog import Catalog
from dvmset.records import ClipStatus
from dvmset.tables import Clip

CLIP_S = 20.0  # short clips keep these tests quick; what they prove does not depend on the length


def curate_cfg(**kw):
    from flows.config import CurateConfig

    return CurateConfig(**{"separator": "none", "workers": 2, "download_retries": 0, "clip_seconds": CLIP_S, **kw})


def accept_all(cat: Catalog) -> list[str]:
    """Every pending clip accepted (what the review would do), in id order."""
    with cat.session() as s:
        clips = list(s.query(Clip).filter(Clip.status == ClipStatus.PENDING_REVIEW).order_by(Clip.id))
        for c in clips:
            c.status = ClipStatus.ACCEPTED
        return [c.id for c in clips]


def cli_main(argv: list[str]) -> int:
    """flows.cli.main with the sharing commands registered (until flows/cli.py lists flows.commands.share)."""
    from flows import cli

    if "flows.commands.share" not in cli.COMMAND_MODULES:
        cli.COMMAND_MODULES = (*cli.COMMAND_MODULES, "flows.commands.share")
    return cli.main(argv)


CLI_SCRIPT = "import sys; sys.path.insert(0, {tests!r}); from sharing_helpers import cli_main; sys.exit(cli_main(sys.argv[1:]))"


def cli_command(tests_dir: str, *args: str) -> list[str]:
    return [sys.executable, "-c", CLI_SCRIPT.format(tests=tests_dir), *args]


@contextlib.contextmanager
def counting_server(directory: Path, pause_s: float = 0.002) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """A loopback file server that sends in 16 KiB pieces (a pause between them, as a network would) and
    records (path, bytes sent) per GET: a transfer its client abandons shows as a short count."""
    sent: list[tuple[str, int]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
            pass

        def copyfile(self, source, outputfile) -> None:  # noqa: ANN001 - stdlib signature
            n = 0
            try:
                while chunk := source.read(16384):
                    outputfile.write(chunk)
                    n += len(chunk)
                    time.sleep(pause_s)
            except ConnectionError:
                pass
            finally:
                sent.append((self.path, n))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", sent
    finally:
        server.shutdown()
        server.server_close()
