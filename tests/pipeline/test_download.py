"""Download through yt-dlp's generic extractor against a loopback HTTP server; pure search helpers."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from dvmset.layout import check_id
from pipeline.download import (
    Downloaded,
    DownloadOptions,
    Entry,
    download,
    duration_problem,
    entries_from_search,
    find_downloaded,
    safe_id,
    search_query,
    sweep_stale_workdirs,
    url_key,
)
from pipeline.errors import StageError

SHORT_OK = DownloadOptions(min_duration_s=1.0, max_duration_s=600.0, retries=0, socket_timeout_s=5.0)


@pytest.fixture
def served(http_server, media_factory):
    """A 3 s sample served as /sample.mp4."""
    src = media_factory("dl", duration_s=3.0, size="160x120", fps=25, cut_every_s=1.0)
    shutil.copy(src, http_server.root / "sample.mp4")
    return http_server


def _leftovers(sources: Path) -> list[Path]:
    return [p for p in sources.iterdir() if p.name.startswith(".dl-")] if sources.exists() else []


def test_download_keeps_info_json_and_fills_title_and_duration(served, tmp_path, capfd):
    sources = tmp_path / "sources"
    url = served.url("sample.mp4")
    got = download(url, sources, SHORT_OK)

    assert isinstance(got, Downloaded)
    assert got.id.startswith("sample-") and check_id(got.id) == got.id
    assert got.media_path == sources / got.id / "source.mp4"
    assert got.media_path.read_bytes() == (served.root / "sample.mp4").read_bytes()
    assert got.title == "sample"
    assert got.duration_s == pytest.approx(3.0, abs=0.1)
    assert got.webpage_url == url
    info = json.loads(got.info_json_path.read_text())
    assert got.info_json_path == sources / got.id / "info.json"
    assert info["id"] == "sample" and info["title"] == "sample"
    assert info["duration"] == pytest.approx(3.0, abs=0.1)
    assert info["vidmusician"]["media"] == "source.mp4"
    assert not _leftovers(sources), "the temporary work folder must be removed"
    assert capfd.readouterr() == ("", ""), "yt-dlp and ffmpeg print nothing; messages go to logging"


def test_second_call_does_not_download_again(served, tmp_path):
    sources = tmp_path / "sources"
    url = served.url("sample.mp4")
    first = download(url, sources, SHORT_OK)
    mtime = first.media_path.stat().st_mtime_ns
    hits = sum(served.hits.values())

    again = download(url, sources, SHORT_OK)
    assert again == first
    assert again.media_path.stat().st_mtime_ns == mtime
    assert sum(served.hits.values()) == hits, "a finished URL is answered from disk, with no request"
    assert find_downloaded(url, sources) == first
    assert find_downloaded(served.url("other.mp4"), sources) is None


def test_complete_folder_found_by_id_after_url_index_is_lost(served, tmp_path):
    """A run killed between info.json and the URL index: the next call extracts but does not re-download."""
    sources = tmp_path / "sources"
    url = served.url("sample.mp4")
    first = download(url, sources, SHORT_OK)
    mtime = first.media_path.stat().st_mtime_ns
    shutil.rmtree(sources / ".by-url")
    hits = served.hits["/sample.mp4"]

    again = download(url, sources, SHORT_OK)
    assert again.media_path == first.media_path
    assert again.media_path.stat().st_mtime_ns == mtime
    assert served.hits["/sample.mp4"] == hits + 1, "one request to learn the id, none to download"


def test_half_written_folder_is_downloaded_again(served, tmp_path):
    sources = tmp_path / "sources"
    url = served.url("sample.mp4")
    vid = download(url, tmp_path / "elsewhere", SHORT_OK).id
    (sources / vid).mkdir(parents=True)
    (sources / vid / "source.mp4").write_bytes(b"partial")  # no info.json: not complete
    got = download(url, sources, SHORT_OK)
    assert got.id == vid
    assert got.media_path.read_bytes() == (served.root / "sample.mp4").read_bytes()


def test_same_file_name_on_two_paths_gets_two_folders(served, tmp_path):
    for sub in ("a", "b"):
        (served.root / sub).mkdir()
        shutil.copy(served.root / "sample.mp4", served.root / sub / "video.mp4")
    a = download(served.url("a/video.mp4"), tmp_path / "sources", SHORT_OK)
    b = download(served.url("b/video.mp4"), tmp_path / "sources", SHORT_OK)
    assert a.id != b.id and a.id.startswith("video-") and b.id.startswith("video-")
    assert a.media_path.is_file() and b.media_path.is_file()
    assert b.webpage_url == served.url("b/video.mp4")


def test_work_folders_of_killed_downloads_are_swept(served, tmp_path):
    sources = tmp_path / "sources"
    dead = sources / ".dl-url-0000000000000000-dead"
    dead.mkdir(parents=True)
    (dead / ".lock").touch()
    (dead / "source.mp4.part").write_bytes(b"x" * 1000)
    alive = sources / ".dl-url-0000000000000000-alive"
    alive.mkdir()
    fd = os.open(alive / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a download running in another process would
        download(served.url("sample.mp4"), sources, SHORT_OK)
        assert not dead.exists(), "nobody holds its lock: the download that made it was killed"
        assert alive.is_dir(), "a folder whose lock is held belongs to a live download"
        assert sweep_stale_workdirs(sources) == []
    finally:
        os.close(fd)
    assert sweep_stale_workdirs(sources) == [alive] and not alive.exists()


def test_http_404_is_permanent_and_says_404(http_server, tmp_path):
    url = http_server.url("missing.mp4")
    with pytest.raises(StageError) as err:
        download(url, tmp_path / "sources", SHORT_OK)
    assert err.value.stage == "download"
    assert err.value.permanent is True
    assert "HTTP Error 404" in str(err.value) and url in str(err.value)
    assert not _leftovers(tmp_path / "sources")


def test_http_503_is_not_permanent(http_server, tmp_path):
    with pytest.raises(StageError) as err:
        download(http_server.url("busy.mp4"), tmp_path / "sources", SHORT_OK)
    assert err.value.permanent is False
    assert "503" in str(err.value)


def test_dead_host_is_retryable_with_readable_text(dead_port, tmp_path):
    url = f"http://127.0.0.1:{dead_port}/video.mp4"
    with pytest.raises(StageError) as err:
        download(url, tmp_path / "sources", SHORT_OK)
    assert err.value.permanent is False
    assert f"cannot reach host 127.0.0.1:{dead_port}" in str(err.value)
    assert "connection refused" in str(err.value)


def test_host_that_never_answers_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/video.mp4"
        opts = DownloadOptions(min_duration_s=1.0, retries=0, socket_timeout_s=0.5)
        with pytest.raises(StageError) as err:
            download(url, tmp_path / "sources", opts)
    assert err.value.permanent is False
    assert "cannot reach host" in str(err.value) and "timed out" in str(err.value)


def test_too_short_source_is_refused_and_not_kept(served, tmp_path):
    sources = tmp_path / "sources"
    with pytest.raises(StageError) as err:
        download(served.url("sample.mp4"), sources, DownloadOptions(min_duration_s=60.0))
    assert err.value.permanent is True
    assert "shorter than" in str(err.value) and "60 s" in str(err.value)
    assert [p.name for p in sources.iterdir() if p.name != ".locks"] == [], "no folder, no work folder, no URL index"


def test_too_long_source_is_refused(served, tmp_path):
    with pytest.raises(StageError) as err:
        download(
            served.url("sample.mp4"), tmp_path / "s", DownloadOptions(min_duration_s=0, max_duration_s=2.0)
        )
    assert err.value.permanent is True and "longer than" in str(err.value)


def test_page_without_video_is_an_unsupported_url(http_server, tmp_path):
    (http_server.root / "page.html").write_text("<html><body><p>no video here</p></body></html>")
    with pytest.raises(StageError) as err:
        download(http_server.url("page.html"), tmp_path / "sources", SHORT_OK)
    assert err.value.permanent is True
    assert "unsupported URL" in str(err.value)


def test_unsafe_names_become_safe_folder_ids(served, tmp_path):
    shutil.copy(served.root / "sample.mp4", served.root / "my clip (1).mp4")
    got = download(served.url("my%20clip%20%281%29.mp4"), tmp_path / "sources", SHORT_OK)
    assert check_id(got.id) == got.id
    assert got.media_path.parent == tmp_path / "sources" / got.id


# ------------------------------------------------------------------------------------- pure parts


def test_search_query_builds_ytsearch_url():
    assert search_query("food  commercial ", 5) == "ytsearch5:food commercial"
    with pytest.raises(ValueError):
        search_query("   ", 5)
    with pytest.raises(ValueError):
        search_query("city video guide", 0)


def test_search_filters_flat_entries_by_known_duration():
    opts = DownloadOptions(min_duration_s=60.0, max_duration_s=600.0)
    flat = {
        "_type": "playlist",
        "entries": [
            {
                "id": "aaaaaaaaaaa",
                "url": "https://www.youtube.com/watch?v=aaaaaaaaaaa",
                "title": "ok",
                "duration": 125.0,
            },
            {
                "id": "bbbbbbbbbbb",
                "url": "https://www.youtube.com/watch?v=bbbbbbbbbbb",
                "title": "short",
                "duration": 42,
            },
            {
                "id": "ccccccccccc",
                "url": "https://www.youtube.com/watch?v=ccccccccccc",
                "title": "long",
                "duration": 3600,
            },
            {
                "id": "ddddddddddd",
                "url": "https://www.youtube.com/watch?v=ddddddddddd",
                "title": "live",
                "duration": None,
            },
            {"id": "eeeeeeeeeee", "title": "edge", "duration": 60},
            None,
            {"title": "no id"},
        ],
    }
    got = entries_from_search(flat, opts)
    assert [e.id for e in got] == ["aaaaaaaaaaa", "ddddddddddd", "eeeeeeeeeee"]
    assert got[0] == Entry("aaaaaaaaaaa", "https://www.youtube.com/watch?v=aaaaaaaaaaa", "ok", 125.0)
    assert got[1].duration_s is None  # unknown duration passes; download() checks it later
    assert entries_from_search({}, opts) == []


def test_duration_problem_messages():
    opts = DownloadOptions(min_duration_s=60.0, max_duration_s=1800.0)
    assert duration_problem(42.0, opts) == "source is 42.0 s, shorter than the 60 s minimum"
    assert "longer than the 1800 s maximum" in duration_problem(1800.5, opts)
    assert duration_problem(60.0, opts) is None and duration_problem(None, opts) is None
    assert duration_problem(1e6, DownloadOptions(max_duration_s=None)) is None


def test_options_are_validated():
    for bad in (
        {"min_duration_s": -1},
        {"max_duration_s": 10.0},
        {"retries": -1},
        {"retries": 1.5},
        {"socket_timeout_s": 0},
        {"format": " "},
        {"js_runtimes": ("rhino",)},
    ):
        with pytest.raises(ValueError):
            DownloadOptions(**bad)


def test_url_key_is_stable_safe_and_distinct():
    a = url_key("https://example.org/v.mp4")
    assert a == url_key(" https://example.org/v.mp4 ") and a.startswith("url-") and len(a) == 20
    assert check_id(a) == a
    assert a != url_key("https://example.org/w.mp4")


def test_safe_id_keeps_good_ids_and_hashes_bad_ones():
    assert safe_id("dQw4w9WgXcQ") == "dQw4w9WgXcQ"
    bad = [safe_id(x) for x in ("a b", "a/b", "..", "é", "x" * 300)]
    assert all(check_id(x) == x for x in bad)
    assert len(set(bad)) == len(bad)
    assert safe_id("a b") != safe_id("a_b")


def test_a_video_someone_else_holds_is_waited_for_not_downloaded_twice(served, tmp_path):
    """While another worker holds the video's folder, a download of it waits; once that worker has
    finished the download, the waiting one uses it instead of fetching the file again."""
    import threading
    import time

    from pipeline.download import source_lock

    url = served.url("sample.mp4")
    vid = download(url, tmp_path / "probe", SHORT_OK).id  # ids depend only on the URL
    sources = tmp_path / "sources"
    results: list = []
    with source_lock(sources, vid):
        waiter = threading.Thread(target=lambda: results.append(download(url, sources, SHORT_OK)))
        waiter.start()
        time.sleep(2.0)
        assert waiter.is_alive() and not (sources / vid / "info.json").exists()
        # the holder finishes the download itself (here: the same call, from this thread's work dir)
        shutil.copytree(tmp_path / "probe" / vid, sources / vid, dirs_exist_ok=True)
        finished = {p.name: p.stat().st_mtime_ns for p in (sources / vid).iterdir()}
    waiter.join(timeout=30)
    assert results and results[0].id == vid
    assert {p.name: p.stat().st_mtime_ns for p in (sources / vid).iterdir()} == finished  # not fetched again
    assert not _leftovers(sources)


def test_public_only_refuses_loopback_before_any_request(served, tmp_path):
    from pipeline.urls import PrivateUrlRefused

    opts = DownloadOptions(min_duration_s=1.0, max_duration_s=600.0, retries=0, public_only=True)
    with pytest.raises(PrivateUrlRefused, match="127.0.0.1 is a loopback address"):
        download(served.url("sample.mp4"), tmp_path / "sources", opts)
    assert sum(served.hits.values()) == 0


def test_public_only_checks_where_a_redirect_ends_before_its_body_is_read(http_server, tmp_path, monkeypatch):
    """A rule that lets the first URL pass but not where its redirect ends (loopback stands in for both)."""
    import pipeline.download as dl
    from pipeline.urls import PrivateUrlRefused

    (http_server.root / "movie").mkdir()
    (http_server.root / "movie" / "index.html").write_text("<html>" + "x" * 100_000 + "</html>")
    monkeypatch.setattr(dl, "private_url_problem", lambda url: "a private host" if url.endswith("/movie/") else None)
    opts = DownloadOptions(min_duration_s=1.0, max_duration_s=600.0, retries=0, public_only=True)
    with pytest.raises(PrivateUrlRefused, match="redirected to a private host"):
        download(http_server.url("movie"), tmp_path / "sources", opts)  # 301 to /movie/
    assert http_server.hits["/movie"] == 1 and _leftovers(tmp_path / "sources") == []


def test_a_url_that_gives_another_video_is_refused_before_its_media_is_fetched(served, tmp_path):
    sources = tmp_path / "sources"
    with pytest.raises(StageError, match=r"the URL now gives video sample-\w+, not promised \(its media not fetched\)"):
        download(served.url("sample.mp4"), sources, SHORT_OK, expect_id="promised")
    assert served.hits["/sample.mp4"] == 1  # the extractor's look, not a download
    assert [p for p in sources.iterdir() if not p.name.startswith(".")] == []
