"""Atomic writes: a file is absent or complete; what a killed writer leaves can be found and removed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dvmset.io import atomic_path, atomic_write_text, matching, partial_paths, remove_partials


def test_failed_block_leaves_neither_dest_nor_temp(tmp_path: Path):
    dest = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert list(tmp_path.iterdir()) == []


def test_successful_block_replaces_dest_whole(tmp_path: Path):
    dest = tmp_path / "a.txt"
    atomic_write_text(dest, "old")
    atomic_write_text(dest, "new")
    assert dest.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_killed_writer_leaves_a_partial_that_remove_partials_clears(tmp_path: Path):
    code = (
        "import sys, time; from dvmset.io import atomic_path\n"
        f"with atomic_path({str(tmp_path / 'vid-00012.mp4')!r}) as tmp:\n"
        "    tmp.write_bytes(b'x' * 100); print('in', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout.readline().strip() == "in"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.05)

    # neighbours that must survive: finished files, another source's partial, a yt-dlp resume file
    (tmp_path / "vid-00032.mp4").write_bytes(b"done")
    (tmp_path / "vidx-00012.mp4.part").write_bytes(b"yt-dlp resume")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "other-00012.mp4") as tmp:
        (tmp_path / "keep").write_text(tmp.name)
        raise RuntimeError
    other = tmp_path / (tmp_path / "keep").read_text()
    other.write_bytes(b"another source's partial")

    left = partial_paths(tmp_path, "vid-[0-9][0-9][0-9][0-9][0-9]")
    assert len(left) == 1 and left[0].name.startswith(".vid-00012.") and left[0].suffixes[-2:] == [".part", ".mp4"]
    assert not (tmp_path / "vid-00012.mp4").exists()

    assert remove_partials(tmp_path, "vid-[0-9][0-9][0-9][0-9][0-9]") == left
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["vid-00032.mp4", "vidx-00012.mp4.part", "keep", other.name])
    assert remove_partials(tmp_path / "missing") == []


def test_finished_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path):
    """A clip, checkpoint or report written atomically must be readable by the web server / other users."""
    old = os.umask(0o022)
    try:
        dest = tmp_path / "clip.mp4"
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"x")
        shared = tmp_path / "shared.txt"
        os.umask(0o002)
        atomic_write_text(shared, "y")
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664


def test_matching_reads_one_level_as_glob_does(tmp_path):
    for name in ("info.zip", "info-0001-of-0002.zip", ".manifest.x1.part.parquet", "a.json", "b.mp4"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "info.zip").write_text("x")
    for pattern in ("info*.zip", ".*.*.part*", "*.json", "*"):
        assert matching(tmp_path, pattern) == sorted(tmp_path.glob(pattern))
    assert matching(tmp_path / "absent", "*") == []
