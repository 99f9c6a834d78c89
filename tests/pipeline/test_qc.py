"""QC hints: silence and static ratios, scene cuts (PySceneDetect), loudness, from one decode each."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import StageError
from pipeline.qc import QCReport, detect_cuts, frame_diffs, qc_clip, silence_ratio, static_ratio

BIKES_CUTS = [1.2, 5.48, 7.48, 9.68]  # ../shared/media/README.md


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One testsrc2 picture held for 3 s with a tone: a static image under music."""
    base = tmp_path_factory.mktemp("still")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "1", str(base / "still.png"))
    dest = base / "still.mp4"
    _ffmpeg("-loop", "1", "-i", str(base / "still.png"), "-f", "lavfi", "-i", "sine=f=440:d=3:sample_rate=44100",
            "-t", "3", "-r", "25", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
            str(dest))  # fmt: skip
    return dest


# ---------------------------------------------------------------------------------------- pure


def test_silence_ratio_of_half_silent_audio_is_half() -> None:
    sr = 16000
    t = np.arange(4 * sr) / sr
    wav = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
    wav[:, 2 * sr :] = 0.0
    assert silence_ratio(wav, sr) == pytest.approx(0.5, abs=0.03)
    assert silence_ratio(np.zeros((1, sr), np.float32), sr) == 1.0
    assert silence_ratio(wav[:, : 2 * sr], sr) == 0.0


def test_silence_threshold_is_in_dbfs_rms() -> None:
    sr = 8000
    t = np.arange(sr) / sr
    tone = (10 ** (-40 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 200 * t))[None].astype(np.float32)  # -40 dBFS RMS
    assert silence_ratio(tone, sr, threshold_db=-50.0) == 0.0
    assert silence_ratio(tone, sr, threshold_db=-30.0) == 1.0


def test_static_ratio_counts_steps_below_threshold() -> None:
    assert static_ratio(np.array([0.1, 0.2, 5.0, 9.0])) == 0.5
    assert static_ratio(np.array([])) == 1.0
    frames = np.zeros((4, 8, 8), np.uint8)
    frames[2:] = 100
    np.testing.assert_array_equal(frame_diffs(frames), [0.0, 100.0, 0.0])


def test_detect_cuts_on_synthetic_frames_finds_the_switch() -> None:
    red, blue = np.zeros((36, 64, 3), np.uint8), np.zeros((36, 64, 3), np.uint8)
    red[..., 2], blue[..., 0] = 220, 220
    frames = [red] * 30 + [blue] * 30 + [red] * 30  # BGR at 25 fps: switches at 1.2 s and 2.4 s
    assert detect_cuts(frames, 25.0) == pytest.approx([1.2, 2.4])
    assert detect_cuts([red] * 50, 25.0) == []


def test_report_validates_its_fields() -> None:
    with pytest.raises(ValueError):
        QCReport(1.5, 0.0, 0, None, None, None)
    with pytest.raises(ValueError):
        QCReport(0.0, 0.0, 2, None, None, None, cut_times_s=(1.0,))


# ------------------------------------------------------------------------------------ on clips


def test_still_image_clip_is_static(still_clip: Path) -> None:
    report = qc_clip(still_clip, vocal_energy=0.02)
    assert report.static_ratio >= 0.95 and report.scene_cuts == 0
    assert report.silence_ratio == 0.0 and report.vocal_energy == 0.02
    assert report.loudness_lufs is not None and -25 < report.loudness_lufs < -15


def test_moving_test_pattern_is_not_static(media_factory) -> None:
    report = qc_clip(media_factory("motion", duration_s=3.0, cut_every_s=None))
    assert report.static_ratio <= 0.05 and report.scene_cuts == 0


def test_scene_cuts_of_a_sample_video_match_its_cut_times(media_factory) -> None:
    report = qc_clip(media_factory("cuts", duration_s=8.0, cut_every_s=2.0))
    assert abs(report.scene_cuts - 3) <= 1  # hue flips at 2, 4, 6 s
    for expected in (2.0, 4.0, 6.0):
        assert min(abs(t - expected) for t in report.cut_times_s) < 0.1
    assert report.silence_ratio == 0.0 and report.loudness_lufs is not None
    assert report.loudness_range_lu is not None and report.loudness_range_lu < 3  # a steady chord + beat


def test_real_cuts_land_where_the_media_readme_says(shared_media: Path) -> None:
    report = qc_clip(shared_media / "bikes_cuts_10s.mp4")
    for expected in BIKES_CUTS:
        assert min(abs(t - expected) for t in report.cut_times_s) <= 0.08, report.cut_times_s
    # One more hard cut (taxi -> cyclist at frame 76, 3.04 s) is real, though the README omits it.
    assert report.scene_cuts in (4, 5)
    # The file has no audio: it scores as silent, with no loudness.
    assert report.silence_ratio == 1.0 and report.loudness_lufs is None


def test_clip_without_video_is_a_stage_error(odd_media: dict[str, Path]) -> None:
    with pytest.raises(StageError) as err:
        qc_clip(odd_media["audio_only"])
    assert err.value.stage == "qc" and "no video stream" in str(err.value)


def test_corrupt_clip_is_a_stage_error(odd_media: dict[str, Path]) -> None:
    with pytest.raises(StageError):
        qc_clip(odd_media["corrupt"])


def test_one_second_clip_has_loudness_but_no_loudness_range(media_factory) -> None:
    report = qc_clip(media_factory("one_second", duration_s=1.0, cut_every_s=None))
    assert report.loudness_lufs is not None and report.loudness_range_lu is None


def test_vocal_share_of_a_window_weighs_each_second_by_its_energy():
    from pipeline.qc import vocal_share

    per_s = np.array([[1.0, 0.0, 3.0, 0.0], [2.0, 0.0, 4.0, 10.0]])  # vocals, mix; second 1 silent
    assert vocal_share(per_s, 0.0, 3.0) == pytest.approx(4.0 / 6.0)
    assert vocal_share(per_s, 2.4, 3.6) == pytest.approx(3.0 / 14.0)  # touches seconds 2 and 3
    assert vocal_share(per_s, 1.0, 2.0) == 0.0  # silence: no vocals, not a division by zero
    assert vocal_share(per_s, 0.0, 99.0) == pytest.approx(4.0 / 16.0)  # past the end: what exists
