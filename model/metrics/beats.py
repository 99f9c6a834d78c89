"""Beat times of music with librosa's dynamic-programming tracker (Ellis 2007), no weights needed.

Pinned parameters. ``hop_length`` is 256 at 22 050 Hz (11.6 ms frames), not librosa's 512: on
the real 140 BPM amen break, hop 512 settles on 92 BPM and finds 5 of its 16 beats, hop 256 finds
140 BPM and all 16. ``trim`` is explicit: librosa drops leading/trailing beats whose onset
strength is weak, so beats the tracker extrapolates into silence do not count.

Every librosa call here runs under :func:`numba_cache_lock`. librosa compiles its kernels with numba's
``cache=True``, and numba's on-disk cache is not safe across processes: two processes compiling different
signatures of one kernel at once (two evaluations side by side on a pool's workers) leave an index that names
one signature's code for another, and from then on every process that loads that entry crashes with SIGSEGV.
Six processes (three with float32 audio, three with float64) on a fresh cache corrupted it in 4 of 5 rounds here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# One lock for every numba cache librosa may use (its own __pycache__, NUMBA_CACHE_DIR, which laion_clap sets to
# /tmp at import), so processes that picked different caches still take turns.
NUMBA_LOCK = Path(tempfile.gettempdir()) / "vidmusician-numba-cache.lock"
_held = threading.local()  # a thread already holding the lock enters again (flock would wait on itself)


@contextlib.contextmanager
def numba_cache_lock() -> Iterator[None]:
    """Hold the machine-wide lock around librosa calls that may compile or load numba kernels. Uncontended, it
    costs an open and a flock; contended, a process waits while another compiles (seconds, once per kernel and
    signature), and runs at once after that (a kernel already in memory does not touch the cache)."""
    if getattr(_held, "depth", 0):
        _held.depth += 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    fd = os.open(NUMBA_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held.depth = 1
        yield
    finally:
        _held.depth = 0
        os.close(fd)  # closing the descriptor releases the lock


@dataclass(frozen=True)
class BeatConfig:
    sample_rate: int = 22050
    hop_length: int = 256
    start_bpm: float = 120.0
    tightness: float = 100.0
    trim: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.hop_length <= 0:
            raise ValueError(f"sample_rate and hop_length must be positive: {self}")
        if self.start_bpm <= 0 or self.tightness <= 0:
            raise ValueError(f"start_bpm and tightness must be positive: {self}")

    def describe(self) -> dict:
        import librosa

        return {"tracker": "librosa.beat.beat_track", "librosa": librosa.__version__, **asdict(self)}


def track_beats(mono: np.ndarray, sr: int, config: BeatConfig = BeatConfig()) -> np.ndarray:
    """Beat times in seconds [B] of mono audio [N] already at ``config.sample_rate``."""
    import librosa

    if sr != config.sample_rate:
        raise ValueError(f"the beat tracker runs at {config.sample_rate} Hz, got audio at {sr} Hz (resample first)")
    y = np.asarray(mono, dtype=np.float32)
    if y.ndim != 1 or not np.isfinite(y).all():
        raise ValueError(f"need finite mono audio [N], got shape {y.shape}")
    with numba_cache_lock():
        _, beats = librosa.beat.beat_track(y=y, sr=sr, hop_length=config.hop_length, start_bpm=config.start_bpm,
                                           tightness=config.tightness, trim=config.trim, units="time")
    return np.asarray(beats, dtype=np.float64)


# LORIS beats_scores.py:17 (github.com/OpenGVLab/LORIS at 68543bb): librosa.load's 22 050 Hz and these peaks
LORIS_ONSET = {"sample_rate": 22050, "wait": 1, "delta": 0.2, "pre_avg": 3, "post_avg": 3, "pre_max": 3,
               "post_max": 3}


def detect_onsets_loris(mono: np.ndarray, sr: int) -> np.ndarray:
    """Onset times in seconds [O] as LORIS's ``beat_detect`` finds them, from mono audio [N] at 22 050 Hz."""
    import librosa

    params = {k: v for k, v in LORIS_ONSET.items() if k != "sample_rate"}
    if sr != LORIS_ONSET["sample_rate"]:
        raise ValueError(f"LORIS's onsets run at {LORIS_ONSET['sample_rate']} Hz, got audio at {sr} Hz (resample first)")
    y = np.asarray(mono, dtype=np.float32)
    if y.ndim != 1 or not np.isfinite(y).all():
        raise ValueError(f"need finite mono audio [N], got shape {y.shape}")
    with numba_cache_lock():
        onsets = librosa.onset.onset_detect(y=y, sr=sr, units="time", **params)
    return np.asarray(onsets, dtype=np.float64)


def onset_envelope(mono: np.ndarray, sr: int, config: BeatConfig = BeatConfig()) -> np.ndarray:
    """librosa's onset strength [F] of mono audio [N] at ``config.sample_rate``, on the tracker's frames."""
    import librosa

    if sr != config.sample_rate:
        raise ValueError(f"the onset envelope is taken at {config.sample_rate} Hz, got audio at {sr} Hz (resample first)")
    with numba_cache_lock():
        return librosa.onset.onset_strength(y=np.asarray(mono, dtype=np.float32), sr=sr, hop_length=config.hop_length)
