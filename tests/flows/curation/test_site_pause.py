"""A site that pushes back, through the real CLI: a loopback site answering 429 pauses (the source stays
pending, the other site's source is done), the run ends cleanly saying how to resume, `status` shows the
pause, a second run leaves the paused site alone, and once the pause is over the source is curated.
And a source another run holds is left to it before anything is downloaded (claimed by the URL's key)."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, update

from dvmset import leases, sources
from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.records import SourceStatus
from dvmset.tables import SiteBlock, Source
from pipeline.download import url_key
from pipeline.synth import make_sample_video

pytestmark = pytest.mark.slow


class Site:
    """A loopback site serving ``root``; while ``blocking`` every GET answers 429. ``hits`` counts GETs."""

    def __init__(self, root: Path) -> None:
        self.blocking, self.hits = True, Counter()
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                site.hits[self.path] += 1
                if site.blocking:
                    self.send_response(429, "Too Many Requests")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.name = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("site-media")
    make_sample_video(d / "a.mp4", 25, size="160x120", fps=25, cut_every_s=3)
    return d


@pytest.fixture
def sites(media):
    good, limited = Site(media), Site(media)
    good.blocking = False
    yield good, limited
    good.close()
    limited.close()


def _env() -> dict:
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path.cwd())}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=_env(), capture_output=True, text=True,
                          timeout=400)


def _curate(root: Path, *urls: str) -> subprocess.CompletedProcess:
    args = ["curate", "--root", str(root), "--separator", "none", "--workers", "2", "--clip-seconds", "20",
            "--max-clips", "1", "--site-pause", "600"]
    for u in urls:
        args += ["--url", u]
    return _cli(*args)


def _statuses(cat: Catalog) -> dict[str, str]:
    with cat.session() as s:
        return {r.url: r.status for r in s.scalars(select(Source))}


def test_a_site_answering_429_pauses_and_the_run_ends_cleanly_then_resumes(sites, tmp_path, prefect_harness):
    good, limited = sites
    root = DataRoot(tmp_path / "root").ensure()
    ok_url, blocked_url = f"{good.base}/a.mp4", f"{limited.base}/a.mp4"

    started = dt.datetime.now(dt.UTC)
    first = _curate(root.path, ok_url, blocked_url)
    text = first.stdout + first.stderr
    assert first.returncode == 4, text  # nothing failed, something waits
    assert "Traceback" not in text, text
    assert "sources: 1 done, 0 failed" in first.stdout, text
    assert "1 source (still pending) wait for a paused site; nothing was given up" in first.stdout, text
    line = re.search(rf"{re.escape(limited.name)} paused until (\d\d:\d\d) UTC \(HTTP 429, 1st time\)", first.stdout)
    assert line, text
    assert "resume: run the same command again after that time" in first.stdout, text
    cat = Catalog(root.catalog_url)
    assert _statuses(cat) == {ok_url: SourceStatus.DONE, blocked_url: SourceStatus.PENDING}
    with cat.session() as s:
        row = s.get(SiteBlock, limited.name)
        until = row.paused_until.replace(tzinfo=dt.UTC)
        assert row.times == 1 and row.kind == "HTTP 429"
    assert started + dt.timedelta(seconds=600) <= until <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=600)
    assert until.strftime("%H:%M") == line.group(1)
    hits = sum(limited.hits.values())
    assert hits == 1, limited.hits  # no retry hammering the site: one request, then the pause

    status = _cli("status", "--root", str(root.path))
    assert line.group(0) in status.stdout, status.stdout

    second = _curate(root.path, blocked_url)  # another run (another worker) while the pause lasts
    assert second.returncode == 4 and line.group(0) in second.stdout, second.stdout + second.stderr
    assert sum(limited.hits.values()) == hits  # it did not touch the paused site
    assert _statuses(cat)[blocked_url] == SourceStatus.PENDING

    with cat.session() as s:  # the pause is over, and the site lets us through again
        s.execute(update(SiteBlock).values(paused_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    limited.blocking = False
    third = _curate(root.path, blocked_url)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "paused" not in third.stdout, third.stdout
    assert set(_statuses(cat).values()) == {SourceStatus.DONE}
    with cat.session() as s:
        assert s.get(SiteBlock, limited.name) is None  # the download got through: the streak is over
    cat.dispose()


def test_a_source_another_run_holds_by_its_url_is_not_downloaded(sites, tmp_path, prefect_harness):
    """The id of a plain URL is known only after the download: the run claims the URL's key first, so a
    second run finds it held before fetching anything."""
    good, _ = sites
    root = DataRoot(tmp_path / "root").ensure()
    url = f"{good.base}/a.mp4"
    cat = Catalog(root.catalog_url)
    sources.upsert_source(cat, url_key(url), url=url)  # the row the first run planned
    holder = leases.new_owner()  # this test process: alive, on this host
    assert leases.claim(cat, leases.SOURCES, [url_key(url)], holder).claimed == [url_key(url)]

    out = _curate(root.path, url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 source held by another run" in out.stdout, out.stdout
    assert good.hits == Counter(), good.hits  # nothing fetched
    assert not any(root.sources_dir.glob("*/info.json"))

    leases.finish(cat, leases.SOURCES, url_key(url), holder)  # that run ends without doing it
    again = _curate(root.path, url)
    assert again.returncode == 0 and "sources: 1 done" in again.stdout, again.stdout + again.stderr
    assert set(_statuses(cat).values()) == {SourceStatus.DONE}
    with cat.session() as s:
        assert s.get(Source, url_key(url)) is None  # the placeholder moved to the video's id
    cat.dispose()
