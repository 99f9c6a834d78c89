"""A full disk, on a real small tmpfs, is an error of the whole run that names the disk, whether it
reaches us as ffmpeg's text (even with exit 0) or as libsndfile's "System error."."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import save_audio
from pipeline.errors import DiskFull, is_whole_run, item_failure
from pipeline.media import run_ffmpeg


@pytest.fixture
def full_disk(tmp_path: Path):
    where = tmp_path / "small"
    where.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True, text=True)
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_ffmpeg_writing_to_a_full_disk_stops_the_run(full_disk: Path):
    # ffmpeg exits 0 here: only its text ("Error writing trailer ...: No space left on device") tells
    with pytest.raises(DiskFull) as caught:
        run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "20", "-c:v", "libx264",
                    str(full_disk / "out.mp4")], stage="clip")
    assert is_whole_run(caught.value) and not caught.value.permanent
    assert f"no room on the disk holding {full_disk}" in str(caught.value)
    assert "No space left on device" in str(caught.value) and "out.mp4" in str(caught.value)
    with pytest.raises(DiskFull):
        item_failure(caught.value)  # the per-item policy re-raises it: no clip row is failed for it


def test_an_audio_write_to_a_full_disk_names_the_disk(full_disk: Path):
    with pytest.raises(DiskFull) as caught:
        save_audio(full_disk / "music.wav", np.zeros((2, 200_000), np.float32), 32_000)
    assert is_whole_run(caught.value)
    assert f"no room on the disk holding {full_disk}" in str(caught.value) and "music.wav" in str(caught.value)
    assert list(full_disk.iterdir()) == []  # no partial file left
