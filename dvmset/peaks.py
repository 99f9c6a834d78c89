"""Waveform peaks and spectrogram of a clip: computed once by curation, stored beside the clip, served by
the review tool (never computed per request).

The stored file holds ``STORED_PEAKS`` peak |amplitude| values (0..1, normalised to the loudest),
float16, as ``clips/{clip_id}.peaks.npy``; a reader asks for any ``n <= STORED_PEAKS`` and gets
the max over equal slices, which equals computing ``n`` peaks from the samples directly whenever
``n`` divides ``STORED_PEAKS``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dvmset.io import atomic_path, atomic_write_text

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


# --- spectrogram: [SPEC_BANDS, frames] uint8, SPEC_FPS frames a second, log-spaced bands, 80 dB range ---
SPEC_BANDS = 64
SPEC_FPS = 10
SPEC_RANGE_DB = 80.0
SPEC_FMIN_HZ = 40.0
SPEC_FMAX_HZ = 16000.0


def spectrogram_path(peaks_path: Path) -> Path:
    """``clips/{clip_id}.spec.npy`` beside the clip's ``.peaks.npy``."""
    peaks_path = Path(peaks_path)
    return peaks_path.with_name(peaks_path.name.removesuffix(".peaks.npy") + ".spec.npy")


def spectrogram_from_samples(samples: np.ndarray, sr: int) -> np.ndarray:
    """samples [T] or [C, T] at ``sr`` -> [SPEC_BANDS, ceil(T / (sr / SPEC_FPS))] uint8: each frame's magnitude
    in log-spaced bands (low frequencies in row 0), in dB scaled so the loudest cell is 255 and
    SPEC_RANGE_DB below it 0."""
    x = np.asarray(samples, dtype=np.float32)
    x = x.mean(axis=0) if x.ndim == 2 else x.reshape(-1)  # [T] mono
    hop = max(1, int(round(sr / SPEC_FPS)))
    n_fft = 1 << int(np.ceil(np.log2(max(hop, 256))))
    frames = max(1, int(np.ceil(x.size / hop)))
    padded = np.zeros(frames * hop + n_fft, dtype=np.float32)
    padded[n_fft // 2 : n_fft // 2 + x.size] = x
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]  # [frames, n_fft]
    mag = np.abs(np.fft.rfft(padded[idx] * np.hanning(n_fft).astype(np.float32), axis=1))  # [frames, n_fft/2+1]
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = np.geomspace(SPEC_FMIN_HZ, min(SPEC_FMAX_HZ, sr / 2), SPEC_BANDS + 1)
    lo = np.minimum(np.searchsorted(freqs, edges[:-1]), freqs.size - 1)  # [B] first bin of each band
    top_bin = max(int(np.searchsorted(freqs, edges[-1])), int(lo[-1]) + 1)
    # max over each band's bins; a band narrower than a bin takes the bin at its lower edge
    out = np.maximum.reduceat(mag[:, :top_bin], lo, axis=1).T.astype(np.float64)  # [B, frames]
    db = 20 * np.log10(np.maximum(out, 1e-10))
    top = db.max()
    if out.max() <= 0:
        return np.zeros((SPEC_BANDS, frames), dtype=np.uint8)
    return np.clip((db - (top - SPEC_RANGE_DB)) / SPEC_RANGE_DB * 255, 0, 255).astype(np.uint8)


def write_spectrogram(path: Path, spec: np.ndarray) -> Path:
    """Write a [SPEC_BANDS, frames] uint8 spectrogram atomically as ``.npy``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(spec, dtype=np.uint8), allow_pickle=False)
    return path


def read_spectrogram(path: Path) -> np.ndarray:
    """[SPEC_BANDS, frames] uint8 from :func:`write_spectrogram`; raises ``FileNotFoundError``."""
    arr = np.load(Path(path), allow_pickle=False)
    if arr.ndim != 2 or arr.shape[0] != SPEC_BANDS or arr.dtype != np.uint8:
        raise ValueError(f"{Path(path).name}: not a spectrogram file (shape {arr.shape}, {arr.dtype})")
    return arr


# --- per-second QC hints drawn on the review page's timeline -----------------------------------------------
HINT_KEYS = ("seconds", "cuts", "still", "silence", "vocals")


def hints_path(peaks_path: Path) -> Path:
    """``clips/{clip_id}.hints.json`` beside the clip's ``.peaks.npy``."""
    peaks_path = Path(peaks_path)
    return peaks_path.with_name(peaks_path.name.removesuffix(".peaks.npy") + ".hints.json")


def stretches(mask: np.ndarray, rate: float, min_s: float = 0.0) -> list[list[float]]:
    """[[start_s, end_s], ...] of the runs of True in ``mask`` [T] sampled at ``rate`` per second, each at
    least ``min_s`` long."""
    m = np.asarray(mask, dtype=bool).reshape(-1)
    if not m.size:
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], m.astype(np.int8), [0]])))  # starts and ends, paired
    out = [[round(float(a) / rate, 2), round(float(b) / rate, 2)] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return [s for s in out if s[1] - s[0] >= min_s]


def write_hints(path: Path, hints: dict) -> Path:
    """Write the timeline hints ({"seconds", "cuts": [s], "still": [[a, b]], "silence": [[a, b]],
    "vocals": [share per second] or None}) atomically as JSON."""
    if missing := [k for k in HINT_KEYS if k not in hints]:
        raise ValueError(f"timeline hints need {list(HINT_KEYS)}; missing {missing}")
    return atomic_write_text(Path(path), json.dumps({k: hints[k] for k in HINT_KEYS}, separators=(",", ":")) + "\n")


def read_hints(path: Path) -> dict:
    """The hints from :func:`write_hints`; raises ``FileNotFoundError``."""
    body = json.loads(Path(path).read_text())
    if not isinstance(body, dict) or any(k not in body for k in HINT_KEYS):
        raise ValueError(f"{Path(path).name}: not a timeline hints file")
    return body
