"""Loudness normalisation: BS.1770 integrated loudness (pyloudnorm), gain to a target, never clipping.

**[paper]** volume normalisation. The plan is pure (array in, numbers out); applying it is a
multiply; only ``normalize_file`` touches disk.

Peak safety lowers the gain instead of running a limiter: a limiter reshapes transients (the
kicks the rhythm features and beat metric read) and adds its own attack/release artefacts,
while a lower gain keeps the waveform exactly. The cost is that a very dynamic track ends
quieter than the target; the plan records that (``limited``, ``output_lufs``) so the catalog
and the annotators can see it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm

from pipeline.audio import check_wav, load_audio, save_audio
from pipeline.errors import StageError

log = logging.getLogger(__name__)

SILENCE_LUFS = -70.0  # BS.1770's absolute gate: below it nothing counts as programme
_CEILING_MARGIN_DB = 1e-4  # keeps the float32 rounding of a limited peak under the ceiling


@dataclass(frozen=True)
class GainPlan:
    """How much gain to apply and what it leads to; ``limited`` means the peak ceiling set the gain."""

    input_lufs: float
    target_lufs: float
    gain_db: float
    limited: bool
    peak_dbfs_after: float

    def __post_init__(self) -> None:
        for field in ("input_lufs", "target_lufs", "gain_db", "peak_dbfs_after"):
            if not math.isfinite(getattr(self, field)):
                raise ValueError(f"GainPlan.{field} must be finite, got {getattr(self, field)}")

    @property
    def output_lufs(self) -> float:
        """Integrated loudness after the gain (gain is linear, so loudness shifts by exactly gain_db)."""
        return self.input_lufs + self.gain_db

    @property
    def factor(self) -> float:
        return 10.0 ** (self.gain_db / 20.0)


def integrated_loudness(wav: np.ndarray, sr: int) -> float:
    """BS.1770-4 integrated loudness of ``wav`` [C, N] in LUFS (``-inf`` for digital silence)."""
    check_wav(wav, sr)
    if wav.shape[0] > 5:
        raise ValueError(f"BS.1770 covers up to 5 channels, got {wav.shape[0]}")
    meter = pyloudnorm.Meter(sr)
    if wav.shape[1] < int(meter.block_size * sr):
        raise ValueError(f"audio of {wav.shape[1] / sr:.3f} s is shorter than one 0.4 s gating block")
    return float(meter.integrated_loudness(wav.T.astype(np.float64)))


def sample_peak_dbfs(wav: np.ndarray) -> float:
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def plan_gain(
    wav: np.ndarray, sr: int, target_lufs: float = -14.0, peak_ceiling_dbfs: float = -1.0
) -> GainPlan:
    """Gain that brings ``wav`` [C, N] to ``target_lufs``, lowered so the sample peak stays ≤ the ceiling.

    Silent or sub-gate input cannot be normalised: a ``StageError("loudness", ...)``.
    """
    if not math.isfinite(target_lufs) or target_lufs >= 0:
        raise ValueError(f"target_lufs must be a negative LUFS value, got {target_lufs}")
    if not math.isfinite(peak_ceiling_dbfs) or peak_ceiling_dbfs > 0:
        raise ValueError(f"peak_ceiling_dbfs must be <= 0 dBFS, got {peak_ceiling_dbfs}")
    try:
        lufs = integrated_loudness(wav, sr)
    except ValueError as exc:
        raise StageError("loudness", f"cannot measure loudness: {exc}") from exc
    if not math.isfinite(lufs) or lufs < SILENCE_LUFS:
        raise StageError("loudness", f"the audio is silent (integrated loudness {lufs:.1f} LUFS); nothing to normalise")
    gain_db = target_lufs - lufs
    peak = sample_peak_dbfs(wav)
    limited = peak + gain_db > peak_ceiling_dbfs
    if limited:
        gain_db = peak_ceiling_dbfs - peak - _CEILING_MARGIN_DB
        log.info("gain limited by the peak: %.2f dB instead of %.2f dB", gain_db, target_lufs - lufs)
    return GainPlan(
        input_lufs=lufs, target_lufs=target_lufs, gain_db=gain_db, limited=limited, peak_dbfs_after=peak + gain_db
    )


def apply_gain(wav: np.ndarray, plan: GainPlan) -> np.ndarray:
    """``wav`` [C, N] scaled by the plan's gain, as float32 (a new array)."""
    return (np.asarray(wav, dtype=np.float64) * plan.factor).astype(np.float32)


def normalize_file(src: Path, dest_wav: Path, target_lufs: float = -14.0) -> GainPlan:
    """Decode ``src`` (any container), normalise it to ``target_lufs``, write float WAV atomically."""
    wav, sr = load_audio(src)
    plan = plan_gain(wav, sr, target_lufs)
    save_audio(dest_wav, apply_gain(wav, plan), sr)
    log.info("%s: %.1f LUFS -> %.1f LUFS (gain %+.2f dB%s)", Path(src).name, plan.input_lufs,
             plan.output_lufs, plan.gain_db, ", peak-limited" if plan.limited else "")
    return plan
