"""One decode of the window feeds the encoder and QC (``cut_clip(analyse=True)``): the same clip, the same QC
hints as cutting first and decoding the clip again, and no ffprobe per clip."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from pipeline import qc
from pipeline.clip import ClipSpan, cut_clip
from pipeline.errors import StageError
from pipeline.media import ffprobe_json, read_frames, run_ffmpeg
from pipeline.probe import probe

FRAME_S = 1 / 25


def _two_ways(video: Path, music: Path | None, span: ClipSpan, work: Path) -> tuple[qc.QCReport, qc.QCReport]:
    """(old: cut, then QC decodes the clip file; new: QC from the cut's own pass), on the same window."""
    old = cut_clip(video, music, span, work / "old.mp4")
    new = cut_clip(video, music, span, work / "new.mp4", analyse=True, source_info=probe(video),
                   music_info=probe(music) if music is not None else None)
    assert old.decoded is None and new.decoded is not None
    return qc.qc_clip(old.path), qc.qc_clip(new.path, decoded=new.decoded)


def _same_hints(old: qc.QCReport, new: qc.QCReport) -> None:
    """The tolerance: cut count equal and each cut within one frame; still seconds within 0.2 s (the encoder's
    noise is what QC saw before, the encoder's input now); the audio hints exactly equal (the same decode)."""
    assert new.scene_cuts == old.scene_cuts
    np.testing.assert_allclose(new.cut_times_s, old.cut_times_s, atol=FRAME_S + 1e-6)
    assert new.still_s == pytest.approx(old.still_s, abs=0.2)
    assert new.static_ratio == pytest.approx(old.static_ratio, abs=0.2 / 60)
    for name in ("silence_ratio", "loudness_lufs", "loudness_range_lu", "true_peak_dbtp", "clip_gain_db"):
        assert getattr(new, name) == getattr(old, name), name


def test_real_footage_gives_the_same_hints_in_one_pass(shared_media: Path, tmp_path: Path) -> None:
    """Bike footage with five hard cuts, real piano as its music; and a fixed camera with its own audio."""
    old, new = _two_ways(shared_media / "bikes_cuts_10s.mp4", shared_media / "piano_-31.1LUFS.wav",
                         ClipSpan(0.0, 9.6), tmp_path)
    _same_hints(old, new)
    assert new.scene_cuts == 4 and new.loudness_lufs == pytest.approx(-14.0, abs=0.5)
    old, new = _two_ways(shared_media / "chaplin_fixed_camera_9.6s.mp4", None, ClipSpan(0.0, 9.0), tmp_path)
    _same_hints(old, new)
    assert new.still_s <= 0.5


def test_synthetic_cuts_and_stills_give_the_same_hints_in_one_pass(media_factory, tmp_path: Path) -> None:
    """Hue flips every 3 s (30 fps source), then a held still picture: cuts and still seconds agree."""
    moving = media_factory("onepass", duration_s=12.0, size="320x240", fps=30, cut_every_s=3.0)
    still = tmp_path / "still.mp4"
    run_ffmpeg(["-i", str(moving), "-f", "lavfi", "-i", "smptehdbars=size=320x240:rate=30:duration=8",
                "-filter_complex", "[0:v]setsar=1[a];[1:v]setsar=1[b];[a][b]concat=n=2:v=1[v]",
                "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(still)],
               stage="test")  # fmt: skip
    music = tmp_path / "music.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100:duration=20", "-ac", "2", str(music)],
               stage="test")
    old, new = _two_ways(still, music, ClipSpan(1.0, 18.0), tmp_path)
    _same_hints(old, new)
    assert new.scene_cuts >= 4 and new.still_s == pytest.approx(7.0, abs=0.5)


def test_the_one_pass_clip_is_the_two_pass_clip(media_factory, tmp_path: Path) -> None:
    """The split leaves the encoder's input as it was: the same frame count, the same decoded pictures."""
    src = media_factory("onepass-same", duration_s=8.0, size="160x120", fps=30, cut_every_s=2.0)
    old = cut_clip(src, None, ClipSpan(1.0, 6.0), tmp_path / "old.mp4")
    new = cut_clip(src, None, ClipSpan(1.0, 6.0), tmp_path / "new.mp4", analyse=True)
    a = read_frames(old.path, size=(160, 120), stage="test")
    b = read_frames(new.path, size=(160, 120), stage="test")
    assert a.shape == b.shape == (150, 120, 160, 3)
    assert np.array_equal(a, b)
    video = next(s for s in ffprobe_json(new.path)["streams"] if s["codec_type"] == "video")
    assert int(video["nb_frames"]) == 150 and new.decoded.video.still.shape == (150,)
    assert new.decoded.info.width == 160 and new.decoded.info.duration_s == 6.0


def test_a_window_past_the_source_end_is_refused_in_one_pass(media_factory, tmp_path: Path) -> None:
    src = media_factory("onepass-short", duration_s=5.0, size="160x120", fps=25, cut_every_s=None)
    with pytest.raises(StageError, match="exceeds"):
        cut_clip(src, None, ClipSpan(2.0, 6.0), tmp_path / "late.mp4", analyse=True)
    assert not (tmp_path / "late.mp4").exists()


@pytest.fixture
def ffprobe_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH shim that logs each real ffprobe run (one line per call) and runs it."""
    real = shutil.which("ffprobe")
    assert real is not None
    shim_dir, log = tmp_path / "shim", tmp_path / "ffprobe.log"
    shim_dir.mkdir()
    shim = shim_dir / "ffprobe"
    shim.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{shim_dir}{os.pathsep}{os.environ['PATH']}")
    log.touch()
    return log


def _calls(log: Path) -> int:
    return len(log.read_text().splitlines())


def test_a_clip_cut_and_scored_in_one_pass_runs_no_ffprobe(media_factory, tmp_path: Path, ffprobe_calls: Path) -> None:
    src = media_factory("onepass-probes", duration_s=9.0, size="160x120", fps=25, cut_every_s=2.0)
    music = tmp_path / "music.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=9", "-ac", "2", str(music)],
               stage="test")
    source_info, music_info = probe(src), probe(music)  # once per source
    assert _calls(ffprobe_calls) == 2, "the shim counts real ffprobe runs"
    for start in (0.0, 4.0):
        cut = cut_clip(src, music, ClipSpan(start, 4.0), tmp_path / f"c{start:g}.mp4", analyse=True,
                       source_info=source_info, music_info=music_info)
        qc.qc_clip(cut.path, decoded=cut.decoded, peaks_path=tmp_path / f"c{start:g}.peaks.npy")
    assert _calls(ffprobe_calls) == 2, "no ffprobe per clip"
    cut = cut_clip(src, music, ClipSpan(0.0, 4.0), tmp_path / "old.mp4")
    qc.qc_clip(cut.path)
    assert _calls(ffprobe_calls) == 2 + 4, "the two-pass path (the benchmark's baseline) probed four times a clip"
