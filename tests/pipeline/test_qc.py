"""QC hints: silence, still pictures, scene cuts (PySceneDetect), loudness, waveform peaks; one probe, one decode each."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import pipeline.probe
from dvmset.peaks import STORED_PEAKS, read_peaks
from pipeline.errors import StageError
from pipeline.loudness import ClipLoudness
from pipeline.qc import (
    QCReport,
    changed_fraction,
    clip_waveform_peaks,
    detect_cuts,
    qc_clip,
    silence_ratio,
    still_mask,
)

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


def test_still_mask_covers_the_frames_of_still_stretches_only() -> None:
    n, lag = 100, 25
    steps, pairs = np.zeros(n - 1), np.zeros(n - lag)
    assert still_mask(pairs, steps, lag).all()  # one held picture
    cut = steps.copy()
    cut[49] = 1.0  # a hard cut between two held pictures: both halves are still, so all of it
    pairs_across = pairs.copy()
    pairs_across[25:50] = 1.0  # pairs (t, t+25) that straddle the cut see two different pictures
    assert still_mask(pairs_across, cut, lag).all()
    moving = steps.copy()
    moving[30:60] = 0.5  # the picture moves from frame 30 to frame 60, and is held before and after
    pairs_moving = pairs.copy()
    pairs_moving[6:60] = 0.5  # every pair (t, t+25) with a moving frame in it
    mask = still_mask(pairs_moving, moving, lag)
    assert mask[:31].all() and mask[60:].all() and not mask[31:60].any()
    assert still_mask(np.zeros(0), np.zeros(0), 1).tolist() == [True]  # one frame is a still picture


def test_still_mask_refuses_pairs_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        still_mask(np.zeros(10), np.zeros(99), 25)


def test_changed_fraction_counts_pixels_beyond_codec_noise() -> None:
    a = np.full((10, 10), 100, np.uint8)
    b = a.copy()
    b[0, :5] = 200  # 5 of 100 pixels changed a lot
    b[5] = 108  # a row changed by codec-noise levels
    assert changed_fraction(a, b) == pytest.approx(0.05)
    assert changed_fraction(a, a) == 0.0


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
    with pytest.raises(ValueError):
        QCReport(0.0, 0.0, 0, None, None, None, still_s=-1.0)
    with pytest.raises(ValueError):
        QCReport(0.0, 0.0, 0, None, None, None, limiting_db=float("nan"))


# ------------------------------------------------------------------------------------ on clips


def test_still_image_clip_is_static(still_clip: Path) -> None:
    report = qc_clip(still_clip, vocal_energy=0.02)
    assert report.static_ratio == 1.0 and report.still_s == pytest.approx(3.0, abs=0.05) and report.scene_cuts == 0
    assert report.silence_ratio == 0.0 and report.vocal_energy == 0.02
    assert report.loudness_lufs is not None and -25 < report.loudness_lufs < -15


def test_moving_test_pattern_is_not_static(media_factory) -> None:
    report = qc_clip(media_factory("motion", duration_s=3.0, cut_every_s=None))
    assert report.static_ratio <= 0.05 and report.still_s <= 0.2 and report.scene_cuts == 0


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


# ------------------------------------------------------------------------------- still pictures


def _encode(args: list[str], dest: Path) -> Path:
    _ffmpeg(*args, "-r", "25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            str(dest))
    return dest


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two different stills (testsrc2 at 0 s, SMPTE bars), 1280x720, for slideshows and pans."""
    base = tmp_path_factory.mktemp("pictures")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-frames:v", "1", str(base / "a.png"))
    _ffmpeg("-f", "lavfi", "-i", "smptehdbars=size=1280x720", "-frames:v", "1", str(base / "b.png"))
    return {"a": base / "a.png", "b": base / "b.png", "dir": base}


def test_a_slideshow_of_held_stills_is_all_still(pictures) -> None:
    """Truth: one picture held 10 s, then another held 10 s (H.264, 25 fps): 20 s of still picture."""
    show = _encode(["-loop", "1", "-t", "10", "-i", str(pictures["a"]), "-loop", "1", "-t", "10",
                    "-i", str(pictures["b"]), "-filter_complex", "[0][1]concat=n=2:v=1,fps=25,scale=640:360"],
                   pictures["dir"] / "slideshow.mp4")  # fmt: skip
    report = qc_clip(show)
    assert report.still_s == pytest.approx(20.0, abs=0.5) and report.static_ratio >= 0.97
    assert report.scene_cuts == 1 and report.cut_times_s[0] == pytest.approx(10.0, abs=0.08)


def test_a_slow_pan_is_not_still(pictures) -> None:
    """Truth: the picture moves 1 px every frame (a crop sliding over a still), so nothing is still,
    although consecutive frames differ by less than a grey level most of the time."""
    pan = _encode(["-loop", "1", "-i", str(pictures["a"]), "-vf", "crop=640:360:x='n':y=0",
                   "-frames:v", "250"], pictures["dir"] / "pan.mp4")  # fmt: skip
    report = qc_clip(pan)
    assert report.still_s <= 0.5 and report.static_ratio <= 0.05


def test_still_seconds_of_a_clip_that_moves_then_holds(pictures) -> None:
    """Truth: 4 s of moving test pattern, then one picture held for 6 s: 6 s of still picture."""
    mixed = _encode(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4", "-loop", "1", "-t", "6",
                     "-i", str(pictures["b"]), "-filter_complex",
                     "[1]scale=640:360,fps=25,setsar=1[b];[0]setsar=1[a];[a][b]concat=n=2:v=1"],
                    pictures["dir"] / "mixed.mp4")  # fmt: skip
    report = qc_clip(mixed)
    assert report.still_s == pytest.approx(6.0, abs=0.3)
    assert report.static_ratio == pytest.approx(0.6, abs=0.03)


@pytest.mark.parametrize("name", ["chaplin_fixed_camera_9.6s.mp4", "bikes_cuts_10s.mp4"])
def test_real_moving_footage_has_no_still_picture(shared_media: Path, name: str) -> None:
    """Truth (../shared/media/README.md): a fixed camera with people walking, whose consecutive frames
    differ by < 1 grey level a third of the time; and bike footage with five hard cuts. Neither holds
    a still picture."""
    report = qc_clip(shared_media / name)
    assert report.still_s <= 0.5 and report.static_ratio <= 0.05


# ------------------------------------------------------------- one probe, peaks, the clip's loudness


def test_qc_probes_once_and_stores_the_waveform_peaks(tmp_path: Path, monkeypatch) -> None:
    clip = tmp_path / "half.mp4"  # silent for 1.5 s, then a tone: the peaks show exactly that
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=3", "-f", "lavfi", "-i",
            "aevalsrc='gte(t,1.5)*0.5*sin(2*PI*440*t)':s=44100:c=stereo:d=3", "-c:v", "libx264", "-preset",
            "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(clip))  # fmt: skip
    calls: list[Path] = []
    real = pipeline.probe.ffprobe_json

    def counting(path, **kwargs):  # the real ffprobe, counted
        calls.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(pipeline.probe, "ffprobe_json", counting)
    peaks_path = tmp_path / "half.peaks.npy"
    report = qc_clip(clip, peaks_path=peaks_path)
    assert calls == [clip], "one probe per clip"
    peaks = read_peaks(peaks_path)
    assert peaks.shape == (STORED_PEAKS,) and peaks.max() == pytest.approx(1.0, abs=1e-3)
    half = STORED_PEAKS // 2
    assert peaks[: half - 80].max() < 0.01 and peaks[half + 80 : -80].min() > 0.8  # AAC smears edges
    np.testing.assert_allclose(clip_waveform_peaks(clip), peaks, atol=2e-3)  # the same for clips made before
    assert 0.0 < report.silence_ratio < 1.0


def test_qc_report_carries_the_clip_stages_loudness(still_clip: Path, tmp_path: Path) -> None:
    done = ClipLoudness(input_lufs=-30.0, gain_db=15.5, limiting_db=2.25, output_lufs=-14.0, true_peak_dbtp=-1.5)
    report = qc_clip(still_clip, loudness=done)
    assert report.clip_gain_db == 15.5 and report.limiting_db == 2.25
    assert report.true_peak_dbtp is not None and report.true_peak_dbtp < 0  # measured on the clip
    plain = qc_clip(still_clip, peaks_path=tmp_path / "p.npy")
    assert plain.clip_gain_db is None and plain.limiting_db is None


def test_a_clip_without_audio_stores_flat_peaks(shared_media: Path, tmp_path: Path) -> None:
    report = qc_clip(shared_media / "bikes_cuts_10s.mp4", peaks_path=tmp_path / "bikes.peaks.npy")
    assert report.true_peak_dbtp is None
    assert not read_peaks(tmp_path / "bikes.peaks.npy").any()
