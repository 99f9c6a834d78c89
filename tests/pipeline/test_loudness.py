"""Loudness: BS.1770 measurement, gain to target, the true-peak limiter, and every clip file on target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from loudness_helpers import ebur128

from pipeline.audio import load_audio
from pipeline.clip import ClipSpan, Cut, cut_clip, plan_clips
from pipeline.errors import StageError
from pipeline.loudness import (
    LIMIT_CEILING_DBTP,
    LOOKAHEAD_S,
    RELEASE_S,
    GainPlan,
    apply_gain,
    integrated_loudness,
    limit_true_peak,
    limiter_reduction_db,
    normalize_clip,
    normalize_file,
    plan_gain,
    sample_peak_dbfs,
    true_peak_dbtp,
)
from pipeline.media import run_ffmpeg


def _tone(sr: int = 44100, seconds: float = 3.0, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([amp * np.sin(2 * np.pi * 1000 * t)] * 2).astype(np.float32)  # [2, N]


def test_piano_normalises_from_its_known_loudness_to_target(shared_media: Path, tmp_path: Path) -> None:
    src = shared_media / "piano_-31.1LUFS.wav"
    wav, sr = load_audio(src)
    assert integrated_loudness(wav, sr) == pytest.approx(-31.1, abs=0.1)
    plan = normalize_file(src, tmp_path / "piano.wav", target_lufs=-14.0)
    assert plan.input_lufs == pytest.approx(-31.1, abs=0.1) and not plan.limited
    out, out_sr = load_audio(tmp_path / "piano.wav")
    assert out_sr == sr and out.shape == wav.shape
    assert integrated_loudness(out, out_sr) == pytest.approx(-14.0, abs=0.1)
    assert sample_peak_dbfs(out) == pytest.approx(plan.peak_dbfs_after, abs=0.01)


def test_gain_shifts_loudness_by_exactly_the_planned_decibels() -> None:
    wav = _tone(amp=0.05)
    plan = plan_gain(wav, 44100, target_lufs=-20.0)
    assert plan.output_lufs == pytest.approx(-20.0) and not plan.limited
    assert integrated_loudness(apply_gain(wav, plan), 44100) == pytest.approx(-20.0, abs=0.01)


def test_gain_that_would_clip_is_lowered_to_the_ceiling() -> None:
    # A quiet bed with rare full-scale spikes: -14 LUFS would push the spikes far above 0 dBFS.
    wav = _tone(amp=0.01)
    wav[:, ::11025] = 0.9
    plan = plan_gain(wav, 44100, target_lufs=-14.0, peak_ceiling_dbfs=-1.0)
    assert plan.limited and plan.output_lufs < -14.0
    out = apply_gain(wav, plan)
    assert sample_peak_dbfs(out) <= -1.0
    assert sample_peak_dbfs(out) == pytest.approx(-1.0, abs=0.01)  # lowered just enough, not more
    np.testing.assert_allclose(out / plan.factor, wav, rtol=1e-6)  # a pure gain: the waveform keeps its shape


@pytest.mark.parametrize("amp", [0.0, 1e-5])  # digital silence, and a tone below the -70 LUFS gate
def test_silent_input_is_a_stage_error(amp: float) -> None:
    with pytest.raises(StageError) as err:
        plan_gain(_tone(amp=amp), 44100)
    assert err.value.stage == "loudness" and "silent" in str(err.value)


def test_too_short_to_measure_is_a_stage_error() -> None:
    with pytest.raises(StageError, match="shorter than one 0.4 s"):
        plan_gain(_tone(seconds=0.2), 44100)


def test_bad_targets_and_plans_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_gain(_tone(), 44100, target_lufs=3.0)
    with pytest.raises(ValueError):
        plan_gain(_tone(), 44100, peak_ceiling_dbfs=0.5)
    with pytest.raises(ValueError):
        GainPlan(input_lufs=float("-inf"), target_lufs=-14.0, gain_db=1.0, limited=False, peak_dbfs_after=-3.0)


def test_normalize_file_of_a_silent_source_writes_nothing(tmp_path: Path) -> None:
    import subprocess

    src = tmp_path / "silence.flac"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "anullsrc=r=44100:cl=stereo", "-t", "2", str(src)], check=True)  # fmt: skip
    with pytest.raises(StageError, match="silent"):
        normalize_file(src, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


# ----------------------------------------------------------------- true peak, the limiter, per clip


def _spiky(sr: int = 48000, seconds: float = 12.0, every_s: float = 2.0) -> np.ndarray:
    """A quiet chord with a full-scale snap every ``every_s``: a peak-to-loudness ratio near 30 dB."""
    t = np.arange(int(sr * seconds)) / sr
    bed = 0.02 * np.sin(2 * np.pi * 220 * t) + 0.02 * np.sin(2 * np.pi * 277 * t)
    phase = np.mod(t, every_s)
    snap = 0.98 * np.exp(-300 * phase) * np.sin(2 * np.pi * 2000 * phase)
    return np.stack([bed + snap, bed - snap]).astype(np.float32)  # [2, N]


def _independent_true_peak_db(wav: np.ndarray, factor: int = 16) -> float:
    """True peak by FFT interpolation (not the polyphase filter under test), 16× oversampled."""
    from scipy.signal import resample

    up = resample(np.asarray(wav, np.float64), wav.shape[1] * factor, axis=1)
    return 20 * np.log10(np.abs(up[:, factor * 8 : -factor * 8]).max())  # edges: FFT wrap-around


def test_true_peak_sees_the_peaks_between_samples() -> None:
    sr = 48000
    n = np.arange(sr)
    fade = np.clip(np.minimum(n, sr - 1 - n) / 480, 0, 1)  # 10 ms fades: an abrupt start overshoots for real
    wav = np.stack([fade * np.sin(2 * np.pi * n / 4 + np.pi / 4)] * 2).astype(np.float32)  # fs/4: samples ±0.707
    assert sample_peak_dbfs(wav) == pytest.approx(-3.01, abs=0.01)
    assert true_peak_dbtp(wav, sr) == pytest.approx(0.0, abs=0.1)


def test_true_peak_of_the_real_piano_agrees_with_ffmpeg(shared_media: Path) -> None:
    src = shared_media / "piano_-31.1LUFS.wav"
    wav, sr = load_audio(src)
    _, ffmpeg_peak = ebur128(src)
    assert true_peak_dbtp(wav, sr) == pytest.approx(ffmpeg_peak, abs=0.15)


def test_limiter_reduces_at_least_what_each_sample_needs_and_lets_go_after() -> None:
    sr = 48000
    rng = np.random.default_rng(7)
    need = np.zeros(sr * 4)
    spots = rng.choice(sr, size=40, replace=False)
    need[spots] = rng.uniform(0.1, 20.0, size=40)
    reduction = limiter_reduction_db(need, sr)
    assert (reduction >= need - 1e-9).all(), "a peak left above the ceiling"
    assert reduction[: spots.min() - round(LOOKAHEAD_S * sr) - 1].max() == 0.0, "nothing before the look-ahead"
    assert reduction[sr + round(20 * RELEASE_S * sr):].max() < 1e-6, "released a second after the last peak"
    assert limiter_reduction_db(np.zeros(100), sr).max() == 0.0


def test_limit_true_peak_holds_the_ceiling_measured_independently() -> None:
    wav = _spiky(seconds=4.0) * 3.0  # snaps at +8.7 dBFS
    out, deepest = limit_true_peak(wav, 48000, ceiling_dbtp=-1.5)
    assert _independent_true_peak_db(out) <= -1.5 + 0.02
    assert deepest == pytest.approx(10.2, abs=0.5)  # +8.7 dB brought to -1.5 dBTP
    quiet = slice(48000, 2 * 48000 - 4800)  # 1.0-1.9 s: long after the snap at 0 s, before the next at 2 s
    np.testing.assert_allclose(out[:, quiet], wav[:, quiet], atol=1e-6)  # the bed is left alone


def test_normalize_clip_reaches_the_target_by_limiting_and_records_it() -> None:
    sr = 48000
    wav = _spiky(sr)
    before = integrated_loudness(wav, sr)
    plain = plan_gain(wav, sr)  # the linear gain alone cannot get there without clipping
    assert plain.limited and plain.output_lufs < -17
    out, loud = normalize_clip(wav, sr, -14.0)
    assert integrated_loudness(out, sr) == pytest.approx(-14.0, abs=0.06)
    assert loud.output_lufs == pytest.approx(-14.0, abs=0.06) and loud.input_lufs == pytest.approx(before)
    assert _independent_true_peak_db(out) <= LIMIT_CEILING_DBTP + 0.02
    assert loud.true_peak_dbtp <= LIMIT_CEILING_DBTP + 1e-3
    assert loud.gain_db > -14.0 - before and loud.limiting_db > 10.0  # more gain than linear, taken off the snaps
    bed = slice(sr, 2 * sr - 4800)  # between snaps: the bed only gets the gain
    np.testing.assert_allclose(out[:, bed], wav[:, bed] * 10 ** (loud.gain_db / 20), rtol=1e-4, atol=1e-6)


def test_normalize_clip_of_a_gentle_window_is_a_pure_gain() -> None:
    wav = _tone(sr=48000, seconds=5.0, amp=0.01)
    out, loud = normalize_clip(wav, 48000, -14.0)
    assert loud.limiting_db == 0.0 and loud.output_lufs == pytest.approx(-14.0, abs=0.01)
    np.testing.assert_allclose(out, wav * 10 ** (loud.gain_db / 20), rtol=1e-5)


def test_normalize_clip_leaves_a_silent_window_alone() -> None:
    wav = np.zeros((2, 48000 * 3), np.float32)
    out, loud = normalize_clip(wav, 48000, -14.0)
    assert loud.input_lufs is None and loud.gain_db == 0.0 and loud.limiting_db == 0.0
    np.testing.assert_array_equal(out, wav)


# -------------------------------------------------------------- the promise, on clip files as encoded


@pytest.fixture(scope="module")
def picture(media_factory):
    """45 s of moving test pattern, no audio: the picture every clip below is cut from."""
    return media_factory("loud45", duration_s=45.0, size="96x64", fps=25, cut_every_s=None, audio=False)


def _source_then_clips(video: Path, src_audio: Path, work: Path, spans: list[ClipSpan]) -> list[Cut]:
    """What curation does: the per-source gain (music.wav), then each clip cut with its own."""
    plan = normalize_file(src_audio, work / "music.wav", target_lufs=-14.0)
    assert plan.output_lufs <= -14.0 + 1e-6
    return [cut_clip(video, work / "music.wav", span, work / f"clip-{span.start_s:05.0f}.mp4") for span in spans]


def _assert_on_target(clip: Path) -> None:
    lufs, peak = ebur128(clip)
    assert lufs == pytest.approx(-14.0, abs=0.5), f"{clip.name}: {lufs} LUFS"
    assert peak <= -1.0, f"{clip.name}: true peak {peak} dBTP"


@pytest.mark.slow
def test_a_source_whose_peaks_forbid_the_gain_still_gives_clips_on_target(picture, tmp_path) -> None:
    """Truth: a quiet chord under full-scale snaps (PLR ~17 dB): a linear gain to -14 LUFS would clip."""
    src = tmp_path / "snaps.flac"
    expr = ("0.02*sin(2*PI*220*t)+0.02*sin(2*PI*277*t)"
            "+0.95*exp(-60*mod(t,0.5))*sin(2*PI*1000*mod(t,0.5))")
    run_ffmpeg(["-f", "lavfi", "-i", f"aevalsrc='{expr}':s=44100:c=stereo:d=22", str(src)], stage="test")
    assert plan_gain(*load_audio(src)).limited  # the per-source gain alone stops short of the target
    (cut,) = _source_then_clips(picture, src, tmp_path, [ClipSpan(1.0, 20.0)])  # any clip length holds it
    _assert_on_target(cut.path)
    assert cut.loudness is not None and cut.loudness.limiting_db > 3.0  # recorded: heavy limiting


@pytest.mark.slow
def test_a_source_quieter_in_its_first_minute_gives_every_clip_on_target(picture, tmp_path) -> None:
    """Truth: the first clip's window sits 20 dB below the rest, so the source's one gain fits only its
    loud part. (20 s clips, to keep the test short: the first "minute" is the first clip.)"""
    src = tmp_path / "quiet_then_loud.flac"
    expr = "(0.02+0.18*gte(t,22))*(sin(2*PI*330*t)+0.5*sin(2*PI*495*t))"
    run_ffmpeg(["-f", "lavfi", "-i", f"aevalsrc='{expr}':s=48000:c=stereo:d=45", str(src)], stage="test")
    spans = plan_clips(45.0, 20.0)
    assert [s.start_s for s in spans] == [2.0, 22.0]
    quiet, loud = _source_then_clips(picture, src, tmp_path, spans)
    for cut in (quiet, loud):
        _assert_on_target(cut.path)
    assert quiet.loudness.gain_db == pytest.approx(20.0, abs=1.0) and abs(loud.loudness.gain_db) < 1.0
    assert quiet.loudness.limiting_db == loud.loudness.limiting_db == 0.0  # a chord needs no limiting


def test_the_real_piano_at_its_known_loudness_ends_on_target(picture, shared_media, tmp_path) -> None:
    """Truth: piano_-31.1LUFS.wav measures -31.1 LUFS (../shared/media/README.md): +17.1 dB to go."""
    src = shared_media / "piano_-31.1LUFS.wav"
    assert ebur128(src)[0] == pytest.approx(-31.1, abs=0.1)
    (cut,) = _source_then_clips(picture, src, tmp_path, [ClipSpan(0.0, 10.0)])
    _assert_on_target(cut.path)


@pytest.mark.slow
def test_a_real_loud_mix_with_overs_comes_down_to_target_without_clipping(picture, shared_media, tmp_path) -> None:
    """Truth: armygeddon's backing track + guitar stem (the full mix, ../shared/media/README.md) measures
    -7.0 LUFS over its first 45 s, and its decoded samples reach 3.6 dB over full scale: each clip must come
    down ~7 dB with the overs intact (a decode or a write clamped at full scale before the gain would square
    off the peaks and lower the loudness)."""
    import soundfile as sf

    song = shared_media / "armygeddon"
    if not (song / "guitar.ogg").exists():
        pytest.skip("armygeddon not in ../shared/media")
    backing, sr = sf.read(song / "song.ogg", dtype="float32", always_2d=True, frames=45 * 44100)
    guitar, _ = sf.read(song / "guitar.ogg", dtype="float32", always_2d=True, frames=45 * 44100)
    src = tmp_path / "mix.wav"
    sf.write(src, backing + guitar, sr, subtype="FLOAT")  # float: the overs survive the file
    lufs, _ = ebur128(src)
    assert lufs == pytest.approx(-7.0, abs=0.3) and np.abs(backing + guitar).max() > 1.5
    decoded, rate = load_audio(src)
    assert np.abs(decoded).max() == pytest.approx(np.abs(backing + guitar).max(), rel=1e-4)  # not clamped at 1.0
    plan = plan_gain(decoded, rate)
    assert plan.gain_db == pytest.approx(-7.0, abs=0.5) and not plan.limited  # the source's gain does the work
    cuts = _source_then_clips(picture, src, tmp_path, plan_clips(45.0, 20.0))
    music, _ = load_audio(tmp_path / "music.wav")
    assert 20 * np.log10(np.abs(music).max()) == pytest.approx(plan.peak_dbfs_after, abs=0.1)  # overs kept, scaled
    assert len(cuts) == 2
    for cut in cuts:
        _assert_on_target(cut.path)
        assert abs(cut.loudness.gain_db) < 2.0 and cut.loudness.limiting_db == 0.0  # a trim, no limiting


def test_the_promise_is_kept_on_the_encoded_file_not_only_before_encoding(picture, tmp_path) -> None:
    """Truth: white noise carries much of its K-weighted loudness above AAC's ~16 kHz low-pass, so the
    encoder takes ~0.8 LU away: a clip right before encoding would be short of the target after it."""
    src = tmp_path / "noise.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "anoisesrc=color=white:amplitude=0.1:duration=12:sample_rate=44100:seed=3",
                "-ac", "2", "-c:a", "pcm_f32le", str(src)], stage="test")  # fmt: skip
    cut = cut_clip(picture, src, ClipSpan(1.0, 10.0), tmp_path / "noise.mp4")
    _assert_on_target(cut.path)
    assert cut.loudness.output_lufs > -14.0 + 0.4  # redone: aimed above the target by what AAC takes
