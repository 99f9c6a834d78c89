"""Faults during `vidmusician curate`, through the real CLI: a full disk (a real, small tmpfs) stops the run
and says so, and nothing it touched is lost once space is freed; a source with a failed clip is never
`done`, `--retry-failed` cuts the failed clips again, and a plain re-run points at it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, update

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.records import ClipStatus, SourceStatus
from dvmset.tables import Clip, Source
from flows.demos.small import serve_directory
from pipeline.synth import make_sample_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("served-faults")
    make_sample_video(d / "good-a.mp4", 45, size="160x120", fps=30, cut_every_s=3)
    make_sample_video(d / "good-b.mp4", 45, size="160x120", fps=24, cut_every_s=5, bpm=90)
    (d / "corrupt.mp4").write_bytes(os.urandom(200_000))
    with serve_directory(d) as base:
        yield base


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str):
    """A real tmpfs of ``size`` mounted at ``where``; skips where mounting is not permitted."""
    where.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def cli_env() -> dict:
    """The CLI runs talk to the session's Prefect server and import this checkout first."""
    from prefect.settings import PREFECT_API_URL

    here = os.pathsep.join(p for p in (str(Path.cwd()), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": here}


def _curate(root: Path, urls: list[str], *extra: str) -> subprocess.CompletedProcess:
    env = cli_env()
    args = [sys.executable, "-m", "flows.cli", "curate", "--root", str(root), "--separator", "none",
            "--workers", "1", "--clip-seconds", "20", "--max-clips", "2", *extra]
    for u in urls:
        args += ["--url", u]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)


def _state(cat: Catalog) -> tuple[dict, dict]:
    with cat.session() as s:
        return ({r.id: r.status for r in s.scalars(select(Source))},
                {c.id: c.status for c in s.scalars(select(Clip))})


def test_a_full_disk_stops_the_run_and_a_rerun_after_freeing_space_cuts_every_clip(served, tmp_path: Path,
                                                                                  prefect_harness):
    root = DataRoot(tmp_path / "root").ensure()
    urls = [f"{served}/good-a.mp4", f"{served}/good-b.mp4"]
    with small_tmpfs(root.clips_dir, "4m") as clips:
        filler = clips / "filler.bin"
        free = os.statvfs(clips)
        filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 24_000))  # ~24 kB left: no clip fits

        out = _curate(root.path, urls)
        text = out.stdout + out.stderr
        assert out.returncode == 3, text
        assert "curate stopped" in text and "No space left on device" in text, text
        assert f"no room on the disk holding {clips}" in text, text
        assert "Traceback" not in text, text
        cat = Catalog(root.catalog_url)
        srcs, clip_rows = _state(cat)
        assert SourceStatus.DONE not in srcs.values(), srcs  # nothing is called done
        assert ClipStatus.FAILED not in clip_rows.values(), clip_rows  # and no clip is given up for it
        assert not [p for p in clips.iterdir() if p != filler], "a partial clip was left on the full disk"

        filler.unlink()  # space freed: a plain re-run finishes everything
        again = _curate(root.path, urls)
        assert again.returncode == 0, again.stdout + again.stderr
        srcs, clip_rows = _state(cat)
        assert sorted(srcs.values()) == [SourceStatus.DONE] * 2, (srcs, again.stdout)
        assert sorted(clip_rows.values()) == [ClipStatus.PENDING_REVIEW] * 4, clip_rows
        assert all(root.clip_path(c).stat().st_size > 24_000 for c in clip_rows)
        cat.dispose()


def test_failed_sources_exit_nonzero_and_retry_failed_recuts_failed_clips(served, tmp_path: Path, prefect_harness):
    root = DataRoot(tmp_path / "root").ensure()
    urls = [f"{served}/good-a.mp4", f"{served}/corrupt.mp4"]
    first = _curate(root.path, urls)
    assert first.returncode == 1, first.stdout + first.stderr  # a source failed: not a clean exit
    assert "1 done, 1 failed" in first.stdout and "--retry-failed" in first.stdout, first.stdout

    # A catalog the old code left: a source `done` although one of its clips failed (its file gone).
    cat = Catalog(root.catalog_url)
    srcs, clip_rows = _state(cat)
    lost = sorted(clip_rows)[1]
    with cat.session() as s:
        s.execute(update(Clip).where(Clip.id == lost).values(status=ClipStatus.FAILED, path=None,
                                                             error="clip: ffmpeg failed: No space left on device"))
    root.clip_path(lost).unlink()
    kept = sorted(clip_rows)[0]
    kept_mtime = root.clip_path(kept).stat().st_mtime_ns

    plain = _curate(root.path, urls)
    assert plain.returncode == 0, plain.stdout + plain.stderr  # nothing ran, nothing failed this time
    assert "0 skipped (done before)" in plain.stdout, plain.stdout
    assert "2 sources failed in an earlier run, left out" in plain.stdout, plain.stdout
    assert "--retry-failed tries them again" in plain.stdout, plain.stdout
    assert not root.clip_path(lost).exists()

    retry = _curate(root.path, urls, "--retry-failed")
    assert retry.returncode == 1, retry.stdout + retry.stderr  # corrupt.mp4 fails again
    srcs, clip_rows = _state(cat)
    good = next(k for k in srcs if k != next(iter(k for k, v in srcs.items() if v == SourceStatus.FAILED)))
    assert srcs[good] == SourceStatus.DONE, srcs
    assert clip_rows == {kept: ClipStatus.PENDING_REVIEW, lost: ClipStatus.PENDING_REVIEW}, clip_rows
    assert root.clip_path(lost).is_file()
    assert root.clip_path(kept).stat().st_mtime_ns == kept_mtime  # the finished clip was not cut again
    cat.dispose()
