"""Loudness: every clip on the target (default −14 LUFS) with true peak ≤ −1 dBTP, by gain + a limiter.

**[paper]** volume normalisation, "for consistency": trainers want every clip equally loud. Two steps:

1. per source (``plan_gain``/``normalize_file``): one linear gain that brings the separated music
   towards the target, lowered if its sample peak would pass −1 dBFS. The waveform keeps its shape
   and ``music.wav`` stays a faithful, playable copy of the music.
2. per clip (``normalize_clip``, called by the clip stage on its own window): the window is
   measured again and raised or lowered to the target, and a true-peak limiter holds the peaks at
   the ceiling. Per clip because a source's loudness is an average: a quiet first minute stays
   quiet after any single per-source gain. The source step keeps the clip gain small; the clip
   step is what guarantees the target. ``clip_gain_db`` and ``limiting_db`` are recorded per clip.

The limiter is our own look-ahead limiter on the array, not ffmpeg's: ``alimiter`` sees sample
peaks only (the inter-sample peaks that AAC decoders reconstruct pass it), and ``loudnorm``'s
dynamic mode is a slow AGC that reshapes the music's dynamics everywhere and lands only near the
target. Here the peak envelope is taken on a 4× oversampled signal (BS.1770-4's true peak), the
gain reduction is exactly what each peak needs (a look-ahead max, an exponential release, a
short box smoothing the attack), it is zero wherever nothing peaks, and the loop of gain and
limiting is repeated until the integrated loudness sits on the target. Limiting reshapes only
the transients that hit the ceiling; ``limiting_db`` (the deepest reduction) tells annotators when
that was heavy enough to hear.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
from scipy.ndimage import maximum_filter1d
from scipy.signal import resample_poly

from pipeline.audio import check_wav, load_audio, save_audio
from pipeline.errors import StageError

log = logging.getLogger(__name__)

SILENCE_LUFS = -70.0  # BS.1770's absolute gate: below it nothing counts as programme
TRUE_PEAK_MAX_DBTP = -1.0  # what every clip file promises (measured on the encoded clip)
LIMIT_CEILING_DBTP = -1.5  # where the limiter holds peaks: 0.5 dB of room for AAC's own overshoot
MAX_CLIP_GAIN_DB = 30.0  # a window quieter than target−30 LU is ambience or noise: raised no further
OVERSAMPLE = 4  # BS.1770-4 true peak: 4× oversampling at 48 kHz
LOOKAHEAD_S = 0.005  # the gain is fully down this long before a peak
RELEASE_S = 0.08  # then recovers exponentially with this time constant (a 10 dB dip is 1 dB after 184 ms)
_LUFS_TOLERANCE = 0.05  # the gain/limiter loop stops this close to the target
_MAX_ROUNDS = 8
_TINY_DB = 1e-9  # the release runs in log(dB): zero reduction is this
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


@dataclass(frozen=True)
class ClipLoudness:
    """What the clip step did to one window: ``gain_db`` applied, then up to ``limiting_db`` of limiting."""

    input_lufs: float | None  # None: the window is silent (below the −70 LUFS gate), left as it is
    gain_db: float
    limiting_db: float  # the deepest gain reduction of the limiter (0: no peak reached the ceiling)
    output_lufs: float | None
    true_peak_dbtp: float

    def __post_init__(self) -> None:
        for name in ("gain_db", "limiting_db"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"ClipLoudness.{name} must be finite, got {getattr(self, name)}")
        if self.limiting_db < 0:
            raise ValueError(f"ClipLoudness.limiting_db is a reduction (>= 0), got {self.limiting_db}")


# ------------------------------------------------------------------------------------ measuring


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


def peak_envelope(wav: np.ndarray) -> np.ndarray:
    """[C, N] → [N]: per sample, the largest |value| of any channel on the 4× oversampled signal
    between this sample and the next (the sample itself included): the true-peak envelope."""
    x = np.asarray(wav, dtype=np.float32)
    up = resample_poly(x, OVERSAMPLE, 1, axis=1)  # [C, 4N], aligned: up[:, 4n] ≈ x[:, n]
    env = np.abs(up[:, : OVERSAMPLE * x.shape[1]]).reshape(x.shape[0], x.shape[1], OVERSAMPLE).max(axis=(0, 2))
    return np.maximum(env, np.abs(x).max(axis=0))  # [N]


def true_peak_dbtp(wav: np.ndarray, sr: int) -> float:
    """True peak of ``wav`` [C, N] in dBTP (4× oversampled, BS.1770-4); ``-inf`` for silence."""
    check_wav(wav, sr)
    if wav.shape[1] == 0:
        return -math.inf
    peak = float(peak_envelope(wav).max())
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


# ------------------------------------------------------------------------------------- limiting


def limiter_reduction_db(needed_db: np.ndarray, sr: int, *, lookahead_s: float = LOOKAHEAD_S,
                         release_s: float = RELEASE_S) -> np.ndarray:
    """The limiter's gain reduction [N] (dB, >= 0) for the reduction each sample needs [N] (pure).

    Never less than ``needed_db`` anywhere: a look-ahead max over the next ``lookahead_s``, an
    exponential release with time constant ``release_s``, then a trailing box of the look-ahead's
    length whose every term is already >= the need at its end, so the attack becomes a ramp that
    still arrives in time. Falls back towards zero wherever nothing peaks.
    """
    need = np.maximum(np.asarray(needed_db, dtype=np.float64), 0.0)  # [N]
    if need.size == 0 or not need.any():
        return np.zeros_like(need)
    ahead = max(1, round(lookahead_s * sr))
    held = maximum_filter1d(need, size=ahead + 1, origin=-((ahead + 1) // 2), mode="constant", cval=0.0)
    # release: rel[n] = max_{k<=n} held[k] exp(-(n-k)/(release_s sr)); in logs a running max of a line
    decay = np.arange(need.size, dtype=np.float64) / (release_s * sr)
    log_rel = np.maximum.accumulate(np.log(held + _TINY_DB) + decay) - decay
    released = np.maximum(np.exp(log_rel) - _TINY_DB, held)
    released[released < 1e-9] = 0.0  # decayed away (and the log's rounding at zero)
    csum = np.concatenate([[0.0], np.cumsum(released)])  # trailing box over [n - ahead, n]
    lo = np.maximum(np.arange(need.size) - ahead, 0)
    return (csum[1:] - csum[lo]) / (np.arange(need.size) + 1 - lo)


def limit_true_peak(wav: np.ndarray, sr: int, ceiling_dbtp: float = LIMIT_CEILING_DBTP) -> tuple[np.ndarray, float]:
    """``wav`` [C, N] with its true peak held at ``ceiling_dbtp``; returns (audio float32, deepest reduction dB)."""
    check_wav(wav, sr)
    out, deepest, _ = _limit(np.asarray(wav, dtype=np.float64), sr, ceiling_dbtp)
    return out, deepest


def _limit(x: np.ndarray, sr: int, ceiling_dbtp: float) -> tuple[np.ndarray, float, float]:
    """(limited float32 [C, N], deepest reduction dB, its true peak dBTP)."""
    total = np.zeros(x.shape[1])
    for _ in range(4):  # a gain curve's own modulation can leave a hair above: another pass settles it
        env = peak_envelope(x)  # [N]
        need = 20.0 * np.log10(np.maximum(env, 1e-12)) - (ceiling_dbtp - _CEILING_MARGIN_DB)
        if need.max(initial=-math.inf) <= 0:
            break
        reduction = limiter_reduction_db(need, sr)
        x = x * 10.0 ** (-reduction / 20.0)
        total += reduction
    peak = float(env.max(initial=0.0)) if x.shape[1] else 0.0
    return x.astype(np.float32), float(total.max(initial=0.0)), 20.0 * math.log10(peak) if peak > 0 else -math.inf


# -------------------------------------------------------------------------------------- planning


def plan_gain(
    wav: np.ndarray, sr: int, target_lufs: float = -14.0, peak_ceiling_dbfs: float = -1.0
) -> GainPlan:
    """Gain that brings ``wav`` [C, N] to ``target_lufs``, lowered so the sample peak stays ≤ the ceiling.

    The per-source step (linear, no limiter). Silent or sub-gate input cannot be normalised:
    a ``StageError("loudness", ...)``.
    """
    _check_target(target_lufs)
    if not math.isfinite(peak_ceiling_dbfs) or peak_ceiling_dbfs > 0:
        raise ValueError(f"peak_ceiling_dbfs must be <= 0 dBFS, got {peak_ceiling_dbfs}")
    lufs = _measure(wav, sr)
    if lufs is None:
        raise StageError("loudness", "the audio is silent (integrated loudness below -70 LUFS); nothing to normalise")
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


def normalize_clip(wav: np.ndarray, sr: int, target_lufs: float = -14.0, *,
                   ceiling_dbtp: float = LIMIT_CEILING_DBTP) -> tuple[np.ndarray, ClipLoudness]:
    """One clip's window [C, N] at ``target_lufs`` with its true peak ≤ ``ceiling_dbtp`` (pure).

    Gain and limiting are iterated together: limiting lowers the loudness, so the gain is raised
    (secant steps on loudness against gain) until the limited result measures the target. A silent
    window (below the −70 LUFS gate, or too short to measure) is returned unchanged, gain 0.
    """
    _check_target(target_lufs)
    if not math.isfinite(ceiling_dbtp) or ceiling_dbtp > 0:
        raise ValueError(f"ceiling_dbtp must be <= 0 dBTP, got {ceiling_dbtp}")
    check_wav(wav, sr)
    x = np.asarray(wav, dtype=np.float64)
    lufs = _measure(x, sr, silent_ok=True)
    if lufs is None:
        out = x.astype(np.float32)
        return out, ClipLoudness(None, 0.0, 0.0, None, true_peak_dbtp(out, sr))
    # the reduction each sample needs at gain 0 dB [N]; the envelope scales with the gain, so once
    need0 = 20.0 * np.log10(np.maximum(peak_envelope(x), 1e-12)) - (ceiling_dbtp - _CEILING_MARGIN_DB)

    def attempt(gain: float) -> tuple[float, np.ndarray, np.ndarray]:
        reduction = limiter_reduction_db(need0 + gain, sr)  # [N] dB
        y = x * 10.0 ** ((gain - reduction) / 20.0)
        got = _measure(y, sr, silent_ok=True)
        return (lufs + gain if got is None else got), y, reduction

    gain_db = min(target_lufs - lufs, MAX_CLIP_GAIN_DB)
    got, out, reduction = attempt(gain_db)
    below: tuple[float, float] = (gain_db, got)  # loudness rises with gain: bracket the target, then
    above: tuple[float, float] | None = None  # false position (Illinois) inside the bracket
    for _ in range(_MAX_ROUNDS):
        if abs(got - target_lufs) <= _LUFS_TOLERANCE or (gain_db >= MAX_CLIP_GAIN_DB and got < target_lufs):
            break
        if above is None:  # limiting ate part of the gain: step past the target, twice what is missing
            gain_db = min(gain_db + 2.0 * (target_lufs - got), MAX_CLIP_GAIN_DB)
        else:
            (g0, l0), (g1, l1) = below, above
            gain_db = g0 + (target_lufs - l0) * (g1 - g0) / (l1 - l0)
        got, out, reduction = attempt(gain_db)
        if got < target_lufs:
            below = (gain_db, got)
            if above is not None:
                above = (above[0], target_lufs + (above[1] - target_lufs) / 2)  # Illinois: no stalling
        else:
            if above is not None:
                below = (below[0], target_lufs + (below[1] - target_lufs) / 2)
            above = (gain_db, got)
    if not reduction.any():  # a pure gain: its true peak and loudness are known without measuring again
        out32, extra, peak, out_lufs = out.astype(np.float32), 0.0, float(need0.max()) + gain_db + ceiling_dbtp, got
        peak -= _CEILING_MARGIN_DB
    else:  # the gain curve's own modulation may leave a hair above: _limit settles it
        out32, extra, peak = _limit(out, sr, ceiling_dbtp)
        out_lufs = _measure(out32, sr, silent_ok=True)
    limiting = float(reduction.max(initial=0.0)) + extra
    report = ClipLoudness(input_lufs=lufs, gain_db=gain_db, limiting_db=limiting, output_lufs=out_lufs,
                          true_peak_dbtp=peak)
    log.debug("clip loudness %.2f -> %s LUFS: gain %+.2f dB, limiting up to %.2f dB, %.2f dBTP",
              lufs, report.output_lufs, gain_db, limiting, peak)
    return out32, report


def normalize_file(src: Path, dest_wav: Path, target_lufs: float = -14.0) -> GainPlan:
    """Decode ``src`` (any container), normalise it to ``target_lufs``, write float WAV atomically."""
    wav, sr = load_audio(src)
    plan = plan_gain(wav, sr, target_lufs)
    save_audio(dest_wav, apply_gain(wav, plan), sr)
    log.info("%s: %.1f LUFS -> %.1f LUFS (gain %+.2f dB%s)", Path(src).name, plan.input_lufs,
             plan.output_lufs, plan.gain_db, ", peak-limited" if plan.limited else "")
    return plan


def _check_target(target_lufs: float) -> None:
    if not math.isfinite(target_lufs) or target_lufs >= 0:
        raise ValueError(f"target_lufs must be a negative LUFS value, got {target_lufs}")


def _measure(wav: np.ndarray, sr: int, *, silent_ok: bool = False) -> float | None:
    """Integrated loudness, or None below the gate; too short to measure is a StageError (or None)."""
    try:
        lufs = integrated_loudness(np.asarray(wav), sr)
    except ValueError as exc:
        if silent_ok:
            return None
        raise StageError("loudness", f"cannot measure loudness: {exc}") from exc
    return lufs if math.isfinite(lufs) and lufs >= SILENCE_LUFS else None
