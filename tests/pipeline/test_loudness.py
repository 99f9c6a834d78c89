"""Loudness: BS.1770 measurement, gain to target, never clipping, silence refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import load_audio
from pipeline.errors import StageError
from pipeline.loudness import (
    GainPlan,
    apply_gain,
    integrated_loudness,
    normalize_file,
    plan_gain,
    sample_peak_dbfs,
)


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
