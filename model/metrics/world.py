"""The miniature world's scores: does the generated music follow the video (semantics: its class tempo) and
land its beats on the video's cuts (rhythm), above the chance of shuffled video–music pairs?

Pure numpy on beat and cut times. Each score comes with its shuffled-pair chance (the exact mean over all
pairs i != j) and a bootstrap interval of (score - chance) over the clips, so "above chance" is a statement
about that interval excluding 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.metrics.rhythm import recall_matrix
from model.metrics.stats import Interval, bootstrap_ci


@dataclass(frozen=True)
class Paired:
    """A score, its shuffled-pair chance, and the 95 % bootstrap interval of their difference."""

    value: float
    chance: float
    diff_ci: Interval | None
    n: int

    @property
    def above_chance(self) -> bool:
        return self.diff_ci is not None and self.diff_ci.low > 0

    def to_json(self) -> dict:
        ci = None if self.diff_ci is None else [self.diff_ci.low, self.diff_ci.high]
        return {"value": self.value, "shuffled_chance": self.chance, "diff": self.value - self.chance,
                "diff_ci95": ci, "above_chance": self.above_chance, "n": self.n}


def tempo_bpm(beats: np.ndarray) -> float:
    """The music's tempo from its beat times: 60 / median inter-beat interval (NaN below 3 beats)."""
    b = np.sort(np.asarray(beats, dtype=np.float64))
    if b.size < 3:
        return float("nan")
    return float(60.0 / np.median(np.diff(b)))


def nearest_class(bpm: float, class_bpms: Sequence[float]) -> int:
    """The class whose tempo is nearest on a log scale; -1 for an undefined tempo."""
    if not np.isfinite(bpm):
        return -1
    return int(np.argmin(np.abs(np.log(np.asarray(class_bpms, dtype=np.float64) / bpm))))


def _paired(match: np.ndarray, seed: int) -> Paired:
    """match [N, N] of scores of music j against video i: diagonal = true pairs. Chance = mean off-diagonal."""
    n = match.shape[0]
    off = ~np.eye(n, dtype=bool)

    def diff(idx: np.ndarray) -> float:
        sub = match[np.ix_(idx, idx)]
        other = idx[:, None] != idx[None, :]
        return float(np.mean(match[idx, idx]) - sub[other].mean()) if other.any() else float("nan")

    return Paired(float(np.mean(np.diag(match))), float(match[off].mean()), bootstrap_ci(n, diff, seed=seed), n)


def semantic_score(predicted: Sequence[int], truth: Sequence[int], seed: int = 0) -> Paired:
    """Share of clips whose music's class (by tempo) is the video's class, against shuffled pairs."""
    p, t = np.asarray(predicted), np.asarray(truth)
    if p.shape != t.shape or p.size < 2:
        raise ValueError(f"need two equal-length label lists of >= 2 clips, got {p.shape} and {t.shape}")
    match = (t[:, None] == p[None, :]).astype(np.float64)  # video i's class vs music j's class
    return _paired(match, seed)


def rhythm_vs_shuffled(cuts: Sequence[np.ndarray], beats: Sequence[np.ndarray], tolerance_s: float = 0.1,
                       seed: int = 0) -> Paired:
    """Pooled recall of cuts at beats (the paper's Rhythm) against every other clip's music, cut-weighted."""
    n = len(cuts)
    if n < 2 or len(beats) != n:
        raise ValueError(f"need >= 2 clips with cuts and beats, got {n} and {len(beats)}")
    hits = recall_matrix(cuts, beats, tolerance_s).astype(np.float64)  # [N, N]
    n_cuts = np.array([np.asarray(c).size for c in cuts], dtype=np.float64)  # [N]

    def diff(idx: np.ndarray) -> float:
        sub = hits[np.ix_(idx, idx)]
        other = idx[:, None] != idx[None, :]
        total = n_cuts[idx].sum()
        off_total = (n_cuts[idx][:, None] * other).sum()
        if total == 0 or off_total == 0:
            return float("nan")
        return float(np.trace(sub) / total - sub[other].sum() / off_total)

    total = n_cuts.sum()
    off = ~np.eye(n, dtype=bool)
    value = float(np.trace(hits) / total)
    chance = float(hits[off].sum() / (total * (n - 1)))
    return Paired(value, chance, bootstrap_ci(n, diff, seed=seed), n)
