"""The field's beat scores, as their reference code computes them, beside the paper's Rhythm recall.

**BCS / BHS** (beat coverage and beat hit scores) as LORIS computes them
(github.com/OpenGVLab/LORIS, ``beats_scores.py`` at commit 68543bb, lines 16-22 and 24-36):
onsets of the real and of the generated music (librosa's onset detector, see
:func:`model.metrics.beats.detect_onsets_loris`) are binned per second, a bin is 1 when some onset
falls in it (``beats[int(np.trunc(time))] = 1``, line 21), and over the bins

    hits = #bins where both are 1,   BCS = hits / #generated bins   ("cover_rate", line 35),
                                     BHS = hits / #real bins        ("hit_rate", line 34),

each 0 when its denominator is 0 (as there). The set's BCS and BHS are the means over clips and
their F1 is the harmonic mean of those two means (lines 60-62). LORIS truncates the real bins to
the generated length and asserts equal lengths (lines 25-26); we truncate both to the shorter, which
is the same whenever the generated music is not the longer one. The scores compare generated music
with the real music of the same clip, not with the video.

**Beat alignment score** (BAS) as Bailando computes it (github.com/lisiyao21/Bailando,
``utils/beat_align_score.py`` at commit cc90b98, lines 51-55)::

    ba += np.exp(-np.min((motion_beats[0] - bb)**2) / 2 / 9)   # for bb in music_beats
    return ba / len(music_beats)

i.e. BAS = mean over **music beats** b of exp(−min_v (v − b)² / 2σ²), the direction music → visual
beats, with σ² = 9 frames² at AIST++'s 60 fps: σ = 3 frames = 0.05 s. (The AIST++ paper writes the
sum over the motion's beats; Bailando's code, which later papers reuse, runs over the music's.)
Our visual beats are the video's cuts and our music beats the beat tracker's (model.metrics.beats).

Chance levels: each score with every clip's music scored against every *other* clip's partner
(all pairs i ≠ j), the exact expectation over random re-pairings, like Rhythm's shuffled baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

BAILANDO_SIGMA_S = 3.0 / 60.0  # σ² = 9 frames² at 60 fps (Bailando utils/beat_align_score.py:54)
LORIS_BIN_S = 1.0  # onsets binned per second (LORIS beats_scores.py:18-21)


def _times(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    t = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if not np.isfinite(t).all():
        raise ValueError(f"{what} times hold NaN or infinite values")
    return t


def onset_bins(onsets: Sequence[float] | np.ndarray, duration_s: float, bin_s: float = LORIS_BIN_S) -> np.ndarray:
    """LORIS's binary onset vector: ceil(duration / bin) bins, 1 where an onset falls: [n_bins] int."""
    if duration_s <= 0 or bin_s <= 0:
        raise ValueError(f"duration_s and bin_s must be positive, got {duration_s} and {bin_s}")
    n = int(math.ceil(duration_s / bin_s))
    bins = np.zeros(n, dtype=np.int64)
    t = _times(onsets, "onset")
    idx = np.trunc(t / bin_s).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < n)]  # an onset at or past the end has no bin (LORIS would raise)
    bins[idx] = 1
    return bins


@dataclass(frozen=True)
class CoverHit:
    """One clip's counts of onset bins: real, generated, and both."""

    n_ref: int
    n_gen: int
    n_hit: int

    def __post_init__(self) -> None:
        if not 0 <= self.n_hit <= min(self.n_ref, self.n_gen):
            raise ValueError(f"hits out of range: {self}")

    @property
    def bcs(self) -> float:
        """Beat coverage score, LORIS's ``cover_rate``: hits / generated bins (0 without any)."""
        return self.n_hit / self.n_gen if self.n_gen else 0.0

    @property
    def bhs(self) -> float:
        """Beat hit score, LORIS's ``hit_rate``: hits / real bins (0 without any)."""
        return self.n_hit / self.n_ref if self.n_ref else 0.0


def cover_hit(ref_bins: np.ndarray, gen_bins: np.ndarray) -> CoverHit:
    """Counts of two binary onset vectors, truncated to the shorter."""
    r, g = np.asarray(ref_bins).astype(bool), np.asarray(gen_bins).astype(bool)
    n = min(r.size, g.size)
    r, g = r[:n], g[:n]
    return CoverHit(n_ref=int(r.sum()), n_gen=int(g.sum()), n_hit=int((r & g).sum()))


def harmonic_f1(a: float, b: float) -> float:
    """2ab / (a + b), 0 when both are 0 (LORIS beats_scores.py:62 on the means)."""
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


@dataclass(frozen=True)
class CoverHitSummary:
    bcs: float  # mean over clips
    bhs: float
    f1: float  # of the two means
    n_items: int


def summarize_cover_hit(items: Sequence[CoverHit]) -> CoverHitSummary:
    if not items:
        raise ValueError("no clip to score BCS/BHS on")
    bcs = float(np.mean([i.bcs for i in items]))
    bhs = float(np.mean([i.bhs for i in items]))
    return CoverHitSummary(bcs=bcs, bhs=bhs, f1=harmonic_f1(bcs, bhs), n_items=len(items))


def beat_align_score(music_beats: Sequence[float] | np.ndarray, visual_beats: Sequence[float] | np.ndarray,
                     sigma_s: float = BAILANDO_SIGMA_S) -> float:
    """Mean over music beats of exp(−(distance to the nearest visual beat)² / 2σ²), in [0, 1].

    Direction music → visual (Bailando utils/beat_align_score.py:51-55). NaN when there is no music
    beat or no visual beat (Bailando's ``np.min`` of an empty array raises there).
    """
    if sigma_s <= 0:
        raise ValueError(f"sigma_s must be positive, got {sigma_s}")
    m, v = _times(music_beats, "music beat"), _times(visual_beats, "visual beat")
    if m.size == 0 or v.size == 0:
        return math.nan
    nearest = np.min(np.abs(m[:, None] - v[None, :]), axis=1)  # [M]
    return float(np.exp(-(nearest**2) / (2.0 * sigma_s**2)).mean())


def pair_matrix(a: Sequence, b: Sequence, score: Callable[[object, object], float]) -> np.ndarray:
    """score(a_i, b_j) for every i, j: [N, N]; the diagonal is the paired score."""
    n = len(a)
    if len(b) != n:
        raise ValueError(f"{n} items on one side but {len(b)} on the other")
    return np.array([[score(a[i], b[j]) for j in range(n)] for i in range(n)], dtype=np.float64)


def shuffled_per_item(matrix: np.ndarray) -> np.ndarray:
    """Each row's mean over j ≠ i (NaN entries left out): item i's score against everyone else's partner: [N]."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"need a square matrix of at least 2 items, got shape {m.shape}")
    off = m.copy()
    np.fill_diagonal(off, np.nan)
    out = np.full(off.shape[0], np.nan)
    for i, row in enumerate(off):
        ok = row[np.isfinite(row)]
        if ok.size:
            out[i] = ok.mean()
    return out
