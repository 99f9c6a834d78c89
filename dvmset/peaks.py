"""Waveform peaks of a clip: computed once by curation, stored beside the clip, served by the review tool.

The stored file holds ``STORED_PEAKS`` peak |amplitude| values (0..1, normalised to the loudest),
float16, as ``clips/{clip_id}.peaks.npy``; a reader asks for any ``n <= STORED_PEAKS`` and gets
the max over equal slices, which equals computing ``n`` peaks from the samples directly whenever
``n`` divides ``STORED_PEAKS``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dvmset.io import atomic_path

STORED_PEAKS = 4000


def peaks_from_samples(samples: np.ndarray, n: int) -> np.ndarray:
    """samples [T] (any scale) → [n] peak |amplitude| per equal slice, normalised to the loudest (0..1)."""
    if n < 1:
        raise ValueError(f"need at least one peak, got n={n}")
    x = np.abs(np.asarray(samples, dtype=np.float32).reshape(-1))  # [T]
    if x.size == 0:
        return np.zeros(n, dtype=np.float32)
    edges = np.linspace(0, x.size, n + 1).astype(np.int64)[:-1]  # [n] slice starts, all < T
    # A slice shorter than one sample (T < n) takes the sample at its start, as reduceat does.
    out = np.maximum.reduceat(x, edges).astype(np.float32)  # [n]
    top = float(out.max())
    return out / top if top > 0 else out


def downsample_peaks(peaks: np.ndarray, n: int) -> np.ndarray:
    """[N] stored peaks → [n] (n ≤ N): the max over equal slices, renormalised to the loudest."""
    return peaks_from_samples(np.asarray(peaks, dtype=np.float32), n)


def write_peaks(path: Path, peaks: np.ndarray) -> Path:
    """Write [N] peaks atomically as float16 ``.npy``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(peaks, dtype=np.float16), allow_pickle=False)
    return path


def read_peaks(path: Path) -> np.ndarray:
    """[N] float32 peaks from a file written by :func:`write_peaks`; raises ``FileNotFoundError``."""
    arr = np.load(Path(path), allow_pickle=False)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{Path(path).name}: not a peaks file (shape {arr.shape})")
    return arr.astype(np.float32)
