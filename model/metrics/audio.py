"""Audio arrays for the embedders and the beat tracker: one channel policy, one resampler, fixed windows.

Channel policy: the mean of the channels (mono). Resampler: soxr, quality "HQ" (deterministic).
"""

from __future__ import annotations

import numpy as np

RESAMPLER = {"library": "soxr", "quality": "HQ"}


def to_mono(wav: np.ndarray) -> np.ndarray:
    """[C, N] → [N] float32, the mean of the channels."""
    x = np.asarray(wav)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"audio must be [C, N], got shape {x.shape}")
    return x.astype(np.float32).mean(axis=0)


def resample(mono: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample [N] float32 from ``sr_in`` to ``sr_out`` Hz with soxr HQ (a copy when the rates match)."""
    import soxr

    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} and {sr_out}")
    x = np.asarray(mono, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample takes mono [N] audio, got shape {x.shape}")
    if sr_in == sr_out:
        return x.copy()
    return soxr.resample(x, sr_in, sr_out, quality=RESAMPLER["quality"]).astype(np.float32)


def fixed_windows(mono: np.ndarray, window: int) -> np.ndarray:
    """Non-overlapping windows of ``window`` samples from the start: [W, window].

    The tail shorter than a window is dropped when at least one whole window exists; a clip
    shorter than one window is laion_clap's "repeatpad": repeated a whole number of times, then
    zero-padded to the window. Never a random crop: the same file always gives the same windows.
    """
    x = np.asarray(mono, dtype=np.float32)
    if x.ndim != 1 or x.size == 0 or window <= 0:
        raise ValueError(f"need non-empty mono audio and a positive window, got {x.shape} and {window}")
    if x.size < window:
        out = np.zeros((1, window), dtype=np.float32)
        repeated = np.tile(x, window // x.size)
        out[0, : repeated.size] = repeated
        return out
    n = x.size // window
    return x[: n * window].reshape(n, window)
