"""The curate flow end to end on loopback: real yt-dlp, ffmpeg, Prefect, SQLite.

Good sources end as clips in `pending_review`; every kind of bad input ends as a failed row with a
readable reason while the rest is done; a re-run redoes nothing; a run killed mid-way finishes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.peaks import hints_path, read_hints, read_spectrogram, spectrogram_path
from dvmset.records import ClipStatus, SourceStatus
from dvmset.tables import Clip, Run, Source
from flows.demos.small import serve_directory
from pipeline.errors import DiskFull, StageError
from pipeline.synth import make_sample_video

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A loopback server with good and bad sources; yields (base_url, names)."""
    d = tmp_path_factory.mktemp("served")
    make_sample_video(d / "good-a.mp4", 65, size="160x120", fps=30, cut_every_s=3)
    make_sample_video(d / "good-b.mp4", 125, size="160x120", fps=24, cut_every_s=5, bpm=90)
    make_sample_video(d / "short.mp4", 20, size="160x120")
    make_sample_video(d / "silent-video.mp4", 65, size="160x120", audio=False)
    make_sample_video(d / "audio-only.mp4", 65, video=False)
    (d / "corrupt.mp4").write_bytes(os.urandom(200_000))
    (d / "empty.mp4").write_bytes(b"")
    with serve_directory(d) as base:
        yield base


def _cfg(**kw):
    from flows.curation.curate import CurateConfig

    return CurateConfig(**{"separator": "none", "workers": 2, "download_retries": 1, "download_backoff_s": 0.1,
                           **kw})


def _sources(cat: Catalog) -> dict[str, Source]:
    with cat.session() as s:
        return {row.url.rsplit("/", 1)[-1]: row for row in s.scalars(select(Source))}


def test_flow_curates_good_sources_and_records_each_bad_one(served, data_root: DataRoot, catalog: Catalog,
                                                             prefect_harness):
    from flows.curation.curate import run_curate

    names = ["good-a.mp4", "good-b.mp4", "short.mp4", "silent-video.mp4", "audio-only.mp4", "corrupt.mp4",
             "empty.mp4", "missing.mp4"]
    urls = [f"{served}/{n}" for n in names] + [f"http://127.0.0.1:{_free_port()}/gone.mp4"]
    events: list[tuple[str, str, str]] = []
    result = run_curate(data_root, catalog.url, urls=urls, cfg=_cfg(),
                        on_event=lambda *e: events.append(e))

    assert result["done"] == 2 and result["failed"] == len(urls) - 2
    rows = _sources(catalog)
    assert len(rows) == len(urls)  # every URL has exactly one row, failed ones included
    assert rows["good-a.mp4"].status == rows["good-b.mp4"].status == SourceStatus.DONE
    assert rows["good-a.mp4"].separator == "none"  # skipped on purpose, and recorded
    assert rows["good-a.mp4"].loudness_out_lufs == pytest.approx(-14.0, abs=0.1)  # what the gain reached
    assert rows["good-a.mp4"].gain_db is not None and rows["good-a.mp4"].gain_limited is False
    reasons = {name: (rows[name].error or "").lower() for name in rows}
    assert "shorter than" in reasons["short.mp4"]
    assert "no audio" in reasons["silent-video.mp4"]
    assert "no video" in reasons["audio-only.mp4"]
    assert "404" in reasons["missing.mp4"]
    for bad in ("corrupt.mp4", "empty.mp4", "gone.mp4"):
        assert rows[bad].status == SourceStatus.FAILED and len(reasons[bad]) > 10, (bad, reasons[bad])
    assert not any("traceback" in r for r in reasons.values())

    with catalog.session() as s:
        clips = list(s.scalars(select(Clip).order_by(Clip.id)))
    # 65 s → one clip, 125 s → two; ids are {video_id}-{start_s:05d}; files exist; QC filled in
    assert [c.status for c in clips] == [ClipStatus.PENDING_REVIEW] * 3
    by_source = {}
    for c in clips:
        by_source.setdefault(c.source_id, []).append(c)
        assert c.id == f"{c.source_id}-{int(c.start_s):05d}"
        assert data_root.clip_path(c.id).stat().st_size > 10_000
        assert c.scene_cuts is not None and c.scene_cuts >= 5 and c.silence_ratio < 0.5
        assert c.loudness_lufs == pytest.approx(-14.0, abs=1.0) and c.loudness_range_lu is not None
        # the QC report's newer fields reach their columns, and the review tool's peaks are stored
        assert c.still_s is not None and c.true_peak_dbtp is not None and c.true_peak_dbtp <= -1.0
        assert c.clip_gain_db is not None and c.limiting_db is not None
        assert data_root.peaks_path(c.id).is_file()
        # and the review timeline's spectrogram (10 frames a second) and per-second hints beside them
        spec = read_spectrogram(spectrogram_path(data_root.peaks_path(c.id)))
        assert abs(spec.shape[1] - c.duration_s * 10) <= 2 and spec.max() > 200
        hints = read_hints(hints_path(data_root.peaks_path(c.id)))
        assert len(hints["cuts"]) == c.scene_cuts and hints["vocals"] is None  # no separator: no vocals per second
    assert sorted(len(v) for v in by_source.values()) == [1, 2]
    assert sum(1 for e in events if e[0] == "source") == len(urls)


def test_curate_on_a_postgres_catalog(served, data_root: DataRoot, postgres_catalog: Catalog, prefect_harness):
    """VIDMUSICIAN_DB may point at Postgres: the same flow, rows and skip-on-re-run there."""
    from flows.curation.curate import run_curate

    urls = [f"{served}/good-a.mp4", f"{served}/short.mp4"]
    first = run_curate(data_root, postgres_catalog.url, urls=urls, cfg=_cfg())
    again = run_curate(data_root, postgres_catalog.url, urls=urls, cfg=_cfg())
    counts = postgres_catalog.counts()
    assert (first["done"], first["failed"]) == (1, 1)
    assert again["skipped"] == 2 and again["planned"] == 0
    assert counts["clips"] == {"pending_review": 1} and counts["sources"] == {"done": 1, "failed": 1}


def test_rerun_redoes_nothing(served, data_root: DataRoot, catalog: Catalog, prefect_harness):
    from flows.curation.curate import run_curate

    # failures before (404) and after the download (no audio, corrupt) are all remembered by URL
    urls = [f"{served}/good-a.mp4", f"{served}/missing.mp4", f"{served}/silent-video.mp4",
            f"{served}/corrupt.mp4"]
    run_curate(data_root, catalog.url, urls=urls, cfg=_cfg())
    mtimes = {p: p.stat().st_mtime_ns for p in data_root.clips_dir.glob("*.mp4")}
    with catalog.session() as s:
        runs_before = s.scalar(select(func.count()).select_from(Run))

    again = run_curate(data_root, catalog.url, urls=urls, cfg=_cfg())

    assert again["skipped"] == 4 and again["planned"] == 0  # done and failed are skipped
    assert {p: p.stat().st_mtime_ns for p in data_root.clips_dir.glob("*.mp4")} == mtimes
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Run)) == runs_before


def test_a_clip_whose_run_row_a_kill_cut_off_is_made_again(served, data_root: DataRoot, catalog: Catalog,
                                                            prefect_harness):
    """What a kill between a clip's row and its run row leaves (the row and the file, no lineage, no run row,
    the source not done): the re-run makes that clip again, with its lineage and run row, and only that one."""
    from flows.curation.curate import run_curate

    url = f"{served}/good-b.mp4"  # 125 s: two clips
    assert run_curate(data_root, catalog.url, urls=[url], cfg=_cfg())["done"] == 1
    with catalog.session() as s:
        clips = sorted(s.scalars(select(Clip)), key=lambda c: c.id)
        assert len(clips) >= 2 and all(c.music_fingerprint for c in clips)
        cut_off = clips[-1]
        cut_off.lineage = cut_off.music_sha256 = cut_off.music_fingerprint = None
        s.delete(s.scalars(select(Run).where(Run.stage == "clip", Run.key == cut_off.id)).one())
        s.get(Source, cut_off.source_id).status = SourceStatus.PENDING
        cut_off_id = cut_off.id
    mtimes = {p.name: p.stat().st_mtime_ns for p in data_root.clips_dir.glob("*.mp4")}

    assert run_curate(data_root, catalog.url, urls=[url], cfg=_cfg())["done"] == 1

    now = {p.name: p.stat().st_mtime_ns for p in data_root.clips_dir.glob("*.mp4")}
    assert {name for name in now if now[name] != mtimes[name]} == {f"{cut_off_id}.mp4"}
    with catalog.session() as s:
        clip = s.get(Clip, cut_off_id)
        assert clip.status == ClipStatus.PENDING_REVIEW and clip.music_fingerprint and clip.lineage
        runs = s.scalars(select(Run).where(Run.stage == "clip")).all()
    assert sorted(r.key for r in runs) == [c.id for c in clips] and all(r.status == "done" for r in runs)


def test_a_clip_whose_fingerprint_fails_fails_with_its_run_and_source_and_is_retried(served, data_root: DataRoot,
                                                                                   catalog: Catalog, prefect_harness,
                                                                                   monkeypatch):
    """The lineage step (the music's checksum and fingerprint) fails for one clip: that clip's row and run row
    say failed, the source is failed (not done with a failed clip), its other clip is kept, and
    ``--retry-failed`` makes only that clip again."""
    from flows.curation import lineage
    from flows.curation.curate import run_curate

    real = lineage.window_music

    def broken(music, start_s, duration_s):
        if start_s > 30:  # the second window
            raise RuntimeError("fingerprint: no frames decoded")
        return real(music, start_s, duration_s)

    monkeypatch.setattr(lineage, "window_music", broken)
    url = f"{served}/good-b.mp4"  # 125 s: two clips
    assert run_curate(data_root, catalog.url, urls=[url], cfg=_cfg())["failed"] == 1
    with catalog.session() as s:
        clips = sorted(s.scalars(select(Clip)), key=lambda c: c.start_s)
        runs = {r.key: r.status for r in s.scalars(select(Run).where(Run.stage == "clip"))}
        (source,) = s.scalars(select(Source)).all()
    first, second = clips
    assert first.status == ClipStatus.PENDING_REVIEW and first.music_fingerprint
    assert second.status == ClipStatus.FAILED and "no frames decoded" in second.error
    assert runs == {first.id: "done", second.id: "failed"}
    assert source.status == SourceStatus.FAILED and "1 of 2 clips failed" in source.error
    kept = data_root.clip_path(first.id).stat().st_mtime_ns

    monkeypatch.setattr(lineage, "window_music", real)
    assert run_curate(data_root, catalog.url, urls=[url], cfg=_cfg(), retry_failed=True)["done"] == 1
    with catalog.session() as s:
        assert s.get(Clip, second.id).status == ClipStatus.PENDING_REVIEW and s.get(Clip, second.id).music_fingerprint
        assert {r.key: r.status for r in s.scalars(select(Run).where(Run.stage == "clip"))} == \
            {first.id: "done", second.id: "done"}
    assert data_root.clip_path(first.id).stat().st_mtime_ns == kept


def test_a_sources_ffprobes_do_not_grow_with_its_clips(served, tmp_path: Path, catalog: Catalog, data_root: DataRoot,
                                                       prefect_harness, monkeypatch):
    """Each clip is cut and scored in one decode and probes nothing: a 1-clip and a 2-clip source run the same
    number of real ffprobes (a PATH shim counts them), and none of them reads a clip."""
    import shutil
    import stat

    from flows.curation.curate import run_curate

    real, shim_dir, log = shutil.which("ffprobe"), tmp_path / "shim", tmp_path / "ffprobe.log"
    shim_dir.mkdir()
    (shim_dir / "ffprobe").write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    (shim_dir / "ffprobe").chmod(0o755 | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{shim_dir}{os.pathsep}{os.environ['PATH']}")
    counts = []
    for name in ("good-a.mp4", "good-b.mp4"):  # 65 s: one clip; 125 s: two
        log.write_text("")
        assert run_curate(data_root, catalog.url, urls=[f"{served}/{name}"], cfg=_cfg(workers=1))["done"] == 1
        calls = log.read_text().splitlines()
        assert not [c for c in calls if str(data_root.clips_dir) in c], "no clip is probed"
        counts.append(len(calls))
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Clip)) == 3
    assert counts[0] == counts[1] and counts[0] > 0, counts


def _curate_args(root: Path, urls: list[str]) -> list[str]:
    # Short clips keep the test quick; what it proves does not depend on the clip length.
    args = [sys.executable, "-m", "flows.cli", "curate", "--root", str(root), "--separator", "none",
            "--workers", "1", "--clip-seconds", "20", "--max-clips", "2"]
    for u in urls:
        args += ["--url", u]
    return args


def _curate_cli(root: Path, urls: list[str], env: dict) -> subprocess.Popen:
    """A curate run started in the background (the caller waits for it)."""
    return subprocess.Popen(_curate_args(root, urls), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _finished_clips(cat: Catalog) -> list[str]:
    """Clips whose clip-stage run row says done: written after the clip's row and lineage, it is what a re-run
    skips a clip by (a clip with a row but no run row yet is made again)."""
    with cat.session() as s:
        return list(s.scalars(select(Run.key).where(Run.stage == "clip", Run.status == "done")))


def test_a_video_found_by_a_query_and_given_as_a_url_is_curated_once_under_its_query(
        served, data_root: DataRoot, catalog: Catalog, prefect_harness, monkeypatch):
    """A search hit and a plain URL of the same video in one run: one source row that keeps the
    query (the split is stratified by it), its clips made once."""
    from flows.curation.curate import run_curate
    from pipeline import download as dl

    url = f"{served}/good-a.mp4"
    vid = dl.download(url, data_root.sources_dir, dl.DownloadOptions()).id
    # yt-dlp's YouTube search cannot run offline; the hit it would return is all that is replaced
    monkeypatch.setattr(dl, "search", lambda q, n, opts: [dl.Entry(id=vid, url=url, title="a", duration_s=65.0)])
    result = run_curate(data_root, catalog.url, queries=["city promo"], urls=[url], cfg=_cfg(workers=1))
    assert result["planned"] == 2 and result["done"] == 2 and result["failed"] == 0
    with catalog.session() as s:
        sources = list(s.scalars(select(Source)))
        clips = s.scalars(select(Clip.id)).all()
        clip_runs = s.scalars(select(Run.key).where(Run.stage == "clip")).all()
    assert [(r.id, r.query, r.status) for r in sources] == [(vid, "city promo", SourceStatus.DONE)]
    assert len(clips) == 1 and clip_runs == clips


def test_killed_run_rerun_finishes_without_redoing(served, tmp_path: Path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    root = DataRoot(tmp_path / "root").ensure()
    urls = [f"{served}/good-b.mp4", f"{served}/good-a.mp4"]
    # The CLI runs talk to the session's Prefect server instead of each starting their own.
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path.cwd())}

    proc = _curate_cli(root.path, urls, env)
    cat = Catalog(root.catalog_url)
    deadline = time.monotonic() + 240
    while not _finished_clips(cat):  # wait for the first clip the catalog calls finished, then kill
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no clip was finished"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {f"{cid}.mp4": root.clip_path(cid).stat().st_mtime_ns for cid in _finished_clips(cat)}
    music = {p: p.stat().st_mtime_ns for p in root.sources_dir.glob("*/music.wav")}
    assert music, "the killed run had separated and normalised at least one source"
    assert len(first) < 4, "the run finished before it was killed; the test proves nothing"
    # A kill inside ffmpeg leaves a temp file beside the clip; plant one so the sweep is always tested.
    killed_mid_write = root.clips_dir / f".{next(iter(first)).rsplit('-', 1)[0]}-00099.k1ll3d.part.mp4"
    killed_mid_write.write_bytes(b"half a clip")

    # The one re-run: nothing else runs on the root now (a second run would hold a source's lease).
    out = subprocess.run(_curate_args(root.path, urls), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr

    with cat.session() as s:
        statuses = {r.id: r.status for r in s.scalars(select(Source))}
        clips = list(s.scalars(select(Clip)))
        clip_runs = s.scalars(select(Run).where(Run.stage == "clip")).all()
    assert sorted(statuses.values()) == [SourceStatus.DONE] * 2, (statuses, out.stdout)
    assert "held" not in out.stdout, out.stdout
    assert len(clips) == 4 and all(c.status == ClipStatus.PENDING_REVIEW for c in clips)
    assert sorted(p.name for p in root.clips_dir.glob("*.mp4")) == sorted(f"{c.id}.mp4" for c in clips)
    assert not list(root.clips_dir.glob(".*part*")), "a partial file was left behind"
    assert not killed_mid_write.exists()
    for name, mtime in first.items():  # what was finished before the kill was not redone
        assert (root.clips_dir / name).stat().st_mtime_ns == mtime
    for path, mtime in music.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was processed again"
    assert len(clip_runs) == 4 and all(r.status == "done" for r in clip_runs)

    status = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--root", str(root.path), "--json"],
                            env=env, capture_output=True, text=True, check=True)
    assert json.loads(status.stdout)["clips"] == {"pending_review": 4}


def test_two_runs_on_one_root_at_once_do_each_source_once(served, tmp_path: Path, prefect_harness):
    """Two curate processes started together on the same URLs both end cleanly, and the catalog and
    clips/ look exactly like one run's. (That they really overlap is likely, not certain; the lock
    itself is pinned by the next test.)"""
    from prefect.settings import PREFECT_API_URL

    root = DataRoot(tmp_path / "root").ensure()
    urls = [f"{served}/good-a.mp4", f"{served}/good-b.mp4"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path.cwd())}
    procs = [_curate_cli(root.path, urls, env) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs

    cat = Catalog(root.catalog_url)
    with cat.session() as s:
        sources = list(s.scalars(select(Source)))
        clips = list(s.scalars(select(Clip)))
        runs = s.execute(select(Run.stage, Run.key, Run.status)).all()
    assert [(r.status, r.error) for r in sources] == [(SourceStatus.DONE, None)] * 2, outs
    assert len(clips) == 4 and all(c.status == ClipStatus.PENDING_REVIEW for c in clips)
    assert sorted(p.name for p in root.clips_dir.iterdir()) == sorted(  # each clip, its peaks, spectrogram, hints, once
        name for c in clips for peaks in [root.peaks_path(c.id)]
        for name in (f"{c.id}.mp4", peaks.name, spectrogram_path(peaks).name, hints_path(peaks).name))
    clip_runs = [(key, st) for stage, key, st in runs if stage == "clip"]
    assert sorted(clip_runs) == sorted((c.id, "done") for c in clips)


def test_a_source_another_run_holds_waits_for_it(served, tmp_path: Path, prefect_harness):
    """While one run works on a source (holds its lock), another run neither cuts its clips nor
    sweeps its temp files; once the lock is free it finishes the source."""
    from prefect.settings import PREFECT_API_URL

    from pipeline.download import DownloadOptions, download, source_lock

    root = DataRoot(tmp_path / "root").ensure()
    url = f"{served}/good-a.mp4"
    vid = download(url, root.sources_dir, DownloadOptions()).id  # the run will find it downloaded
    in_flight = root.clips_dir / f".{vid}-00012.h0ld3r.part.mp4"  # the other run's clip being written
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path.cwd())}
    cat = Catalog(root.catalog_url)

    with source_lock(root.sources_dir, vid):
        in_flight.parent.mkdir(parents=True, exist_ok=True)
        in_flight.write_bytes(b"being written")
        proc = _curate_cli(root.path, [url], env)
        deadline = time.monotonic() + 120
        while True:  # the run has its source row with the media: it is at the lock now
            with cat.session() as s:
                row = s.get(Source, vid)
            if row is not None and row.media_path:
                break
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the run never reached the source"
            time.sleep(0.2)
        time.sleep(3)
        with cat.session() as s:
            assert s.scalar(select(func.count()).select_from(Clip)) == 0
        assert in_flight.exists() and proc.poll() is None
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 0, out
    with cat.session() as s:
        assert s.get(Source, vid).status == SourceStatus.DONE
        assert [c.status for c in s.scalars(select(Clip))] == [ClipStatus.PENDING_REVIEW] * 2
    assert not in_flight.exists(), "left by a dead writer once the lock was free: swept"


def test_a_source_leased_by_a_live_run_is_left_to_it_and_the_summary_says_so(served, tmp_path: Path,
                                                                             prefect_harness):
    """A live lease of another run (this test process: alive, on this host) is not taken over: the run
    cuts nothing of that source, and its summary counts it held instead of silently not done. Once the
    holder finishes without marking it done, the next run takes it."""
    from prefect.settings import PREFECT_API_URL

    from dvmset import leases, sources
    from pipeline.download import DownloadOptions, download

    root = DataRoot(tmp_path / "root").ensure()
    url = f"{served}/good-a.mp4"
    vid = download(url, root.sources_dir, DownloadOptions()).id
    cat = Catalog(root.catalog_url)
    sources.upsert_source(cat, vid, url=url)
    holder = leases.new_owner()
    assert leases.claim(cat, leases.SOURCES, [vid], holder).claimed == [vid]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path.cwd())}

    out = subprocess.run(_curate_args(root.path, [url]), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sources: 0 done, 0 failed" in out.stdout and "1 source held by another run" in out.stdout, out.stdout
    with cat.session() as s:
        assert s.get(Source, vid).status == SourceStatus.PENDING
        assert s.scalar(select(func.count()).select_from(Clip)) == 0
    assert leases.holder(cat, leases.SOURCES, vid)[0] == holder
    status = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--root", str(root.path)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert f"being worked on (a live lease): 1: {vid}" in status.stdout, status.stdout

    leases.finish(cat, leases.SOURCES, vid, holder)  # the holder stops without finishing the source
    out = subprocess.run(_curate_args(root.path, [url]), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "sources: 1 done" in out.stdout and "held" not in out.stdout, out.stdout
    with cat.session() as s:
        assert s.get(Source, vid).status == SourceStatus.DONE


def test_demucs_path_through_the_flow_from_a_local_repo(served, data_root: DataRoot, catalog: Catalog,
                                                        tmp_path: Path, prefect_harness):
    """The real Demucs code (a random tiny HTDemucs saved as a local repo dir) runs inside the flow."""
    from flows.curation.curate import run_curate
    from pipeline.qc import vocal_share
    from pipeline.separate import save_separator_repo, tiny_htdemucs

    repo = save_separator_repo(tiny_htdemucs(), tmp_path / "demucs-repo", "tiny")
    cfg = _cfg(separator="demucs", demucs_name="tiny", demucs_repo=str(repo), demucs_segment_s=2.0)
    result = run_curate(data_root, catalog.url, urls=[f"{served}/good-a.mp4"], cfg=cfg)

    assert result["done"] == 1
    with catalog.session() as s:
        src = s.scalars(select(Source)).one()
        clip = s.scalars(select(Clip)).one()
    assert src.separator == "tiny" and src.vocal_energy is not None and src.vocal_energy >= 0
    assert clip.status == ClipStatus.PENDING_REVIEW
    # the clip's residual-vocal hint is its own window's share, from the separator's per-second energies
    per_s = np.load(data_root.source_dir(src.id) / "vocal_energy.npz")["energy_per_s"]
    assert per_s.shape[0] == 2 and abs(per_s.shape[1] - src.duration_s) <= 1.1  # a bin per second of audio
    assert per_s[0].sum() / per_s[1].sum() == pytest.approx(src.vocal_energy, rel=1e-6)
    assert clip.vocal_energy == pytest.approx(vocal_share(per_s, clip.start_s, clip.start_s + clip.duration_s))
    assert clip.vocal_energy != src.vocal_energy  # 60 s of a 65 s source: not the whole source's number
    vocals = read_hints(hints_path(data_root.peaks_path(clip.id)))["vocals"]  # drawn per second on the timeline
    assert len(vocals) == 60 and vocals[7] == pytest.approx(vocal_share(per_s, clip.start_s + 7, clip.start_s + 8), abs=1e-3)

    # a run killed before the source was done, re-run without a separator: the audio is redone and the
    # old separation's energies go with it (they no longer describe music.wav)
    with catalog.session() as s:
        s.get(Source, src.id).status = SourceStatus.PENDING
    assert run_curate(data_root, catalog.url, urls=[f"{served}/good-a.mp4"], cfg=_cfg())["done"] == 1
    assert not (data_root.source_dir(src.id) / "vocal_energy.npz").exists()


def test_missing_demucs_weights_fail_fast_with_how_to(served, tmp_path: Path, capsys, monkeypatch):
    from flows.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    code = main(["curate", "--root", str(tmp_path / "root"), "--url", f"{served}/good-a.mp4"])

    err = capsys.readouterr().err
    assert code == 2
    assert "--demucs-repo" in err and "--separator none" in err
    assert not list((tmp_path / "root" / "clips").glob("*.mp4"))


@pytest.mark.parametrize(("error", "retried"), [
    (StageError("download", "HTTP Error 404: Not Found", permanent=True), False),
    (StageError("download", "cannot reach host (connection refused)", permanent=False), True),
    (OSError("disk full"), True),
    (OSError(28, "No space left on device"), False),  # a full disk stops the run: no download retried
    (DiskFull("download", "no room on the disk holding /data"), False),
])
def test_download_retries_only_what_a_retry_can_fix(error, retried):
    from prefect.states import Failed

    from flows.curation.curate import _retry_transient

    assert _retry_transient(None, None, Failed(data=error)) is retried
