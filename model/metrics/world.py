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

from model.metrics.beats import BeatConfig, detect_onsets_loris, track_beats
from model.metrics.rhythm import hit_mask, recall_matrix
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


def _pooled_vs_shuffled(hits: np.ndarray, weight: np.ndarray, seed: int) -> Paired:
    """hits[i, j] / weight[i, j]: events of video i against music j (diagonal = true pairs), pooled over pairs.
    Value = the diagonal's pooled ratio, chance = the off-diagonal's, with a bootstrap interval of the difference."""
    n = hits.shape[0]

    def diff(idx: np.ndarray) -> float:
        sub, w = hits[np.ix_(idx, idx)], weight[np.ix_(idx, idx)]
        other = idx[:, None] != idx[None, :]
        if np.trace(w) == 0 or w[other].sum() == 0:
            return float("nan")
        return float(np.trace(sub) / np.trace(w) - sub[other].sum() / w[other].sum())

    if np.trace(weight) == 0:
        return Paired(float("nan"), float("nan"), None, n)
    off = ~np.eye(n, dtype=bool)
    return Paired(float(np.trace(hits) / np.trace(weight)), float(hits[off].sum() / weight[off].sum()),
                  bootstrap_ci(n, diff, seed=seed), n)


def rhythm_vs_shuffled(cuts: Sequence[np.ndarray], beats: Sequence[np.ndarray], tolerance_s: float = 0.1,
                       seed: int = 0) -> Paired:
    """Pooled recall of cuts at beats (the paper's Rhythm) against every other clip's music, cut-weighted."""
    n = len(cuts)
    if n < 2 or len(beats) != n:
        raise ValueError(f"need >= 2 clips with cuts and beats, got {n} and {len(beats)}")
    hits = recall_matrix(cuts, beats, tolerance_s).astype(np.float64)  # [N video, N music]
    n_cuts = np.array([np.asarray(c).size for c in cuts], dtype=np.float64)  # by video i
    return _pooled_vs_shuffled(hits, np.repeat(n_cuts[:, None], n, axis=1), seed)


def precision_vs_shuffled(cuts: Sequence[np.ndarray], beats: Sequence[np.ndarray], tolerance_s: float = 0.1,
                          seed: int = 0) -> Paired:
    """Pooled share of the music's beats within ``tolerance_s`` of a cut, against every other clip's video,
    beat-weighted. Recall alone rewards dense music (a beat falls near any instant); this is its other side."""
    n = len(cuts)
    if n < 2 or len(beats) != n:
        raise ValueError(f"need >= 2 clips with cuts and beats, got {n} and {len(beats)}")
    hits = recall_matrix(beats, cuts, tolerance_s).astype(np.float64).T  # [i video, j music]: beats of j near cuts of i
    n_beats = np.array([np.asarray(b).size for b in beats], dtype=np.float64)  # by music j
    return _pooled_vs_shuffled(hits, np.repeat(n_beats[None, :], n, axis=0), seed)


def rhythm_between(cuts: Sequence[np.ndarray], beats: Sequence[np.ndarray], other: Sequence[np.ndarray],
                   tolerance_s: float = 0.1, seed: int = 0) -> Paired:
    """Pooled Rhythm recall of one model's music (`beats`) against another's (`other`) on the same videos, the
    interval of the difference bootstrapped over clips (the pair stays together): does A land on more cuts than
    B? ``chance`` holds B's recall."""
    n = len(cuts)
    if n < 2 or len(beats) != n or len(other) != n:
        raise ValueError(f"need >= 2 clips with cuts and two beat lists each, got {n}, {len(beats)}, {len(other)}")
    a = np.array([hit_mask(c, b, tolerance_s).sum() for c, b in zip(cuts, beats, strict=True)], dtype=np.float64)
    b = np.array([hit_mask(c, o, tolerance_s).sum() for c, o in zip(cuts, other, strict=True)], dtype=np.float64)
    w = np.array([np.asarray(c).size for c in cuts], dtype=np.float64)
    if w.sum() == 0:
        return Paired(float("nan"), float("nan"), None, n)

    def diff(idx: np.ndarray) -> float:
        return float((a[idx].sum() - b[idx].sum()) / w[idx].sum()) if w[idx].sum() else float("nan")

    return Paired(float(a.sum() / w.sum()), float(b.sum() / w.sum()), bootstrap_ci(n, diff, seed=seed), n)


@dataclass(frozen=True)
class TempoItem:
    """One piece of music made for a class: its tracked tempo and how much of its onsets sit on its beat grid."""

    target_bpm: float
    tracked_bpm: float  # 60 / median inter-beat interval of the tracked beats (NaN below 3 beats)
    n_onsets: int
    on_grid: float  # share of detected onsets within `grid_tol_s` of a tracked beat (NaN without onsets)
    tolerance: float  # relative tempo tolerance

    @property
    def tempo_ok(self) -> bool:
        return bool(np.isfinite(self.tracked_bpm) and abs(self.tracked_bpm / self.target_bpm - 1) <= self.tolerance)

    def to_json(self) -> dict:
        return {"target_bpm": self.target_bpm, "tracked_bpm": round(self.tracked_bpm, 2), "tempo_ok": self.tempo_ok,
                "on_grid": round(self.on_grid, 3), "onsets": self.n_onsets}


def tempo_item(beats: np.ndarray, onsets: np.ndarray, target_bpm: float, tolerance: float = 0.04,
               grid_tol_s: float = 0.07) -> TempoItem:
    """Score one piece: is its tracked tempo the class's (within `tolerance`), and are its onsets on its beats?

    The tracker (dynamic programming with a strong tempo prior) lays a steady grid over any music, so the tempo
    alone does not say the music is regular: `on_grid` checks the onsets themselves against that grid."""
    if not target_bpm > 0 or not 0 < tolerance < 1 or not grid_tol_s > 0:
        raise ValueError(f"target_bpm, tolerance in (0, 1) and grid_tol_s must be positive: "
                         f"{target_bpm}, {tolerance}, {grid_tol_s}")
    b = np.sort(np.asarray(beats, dtype=np.float64))
    o = np.asarray(onsets, dtype=np.float64)
    if o.size == 0:
        on_grid = float("nan")
    elif b.size == 0:
        on_grid = 0.0
    else:
        near = np.abs(o[:, None] - b[None, :]).min(axis=1)  # [O]
        on_grid = float(np.mean(near <= grid_tol_s + 1e-9))
    return TempoItem(float(target_bpm), tempo_bpm(b), int(o.size), on_grid, tolerance)


@dataclass(frozen=True)
class TempoAccuracy:
    """How well music made for each class holds that class's tempo: the backbone's competence gate."""

    items: tuple[TempoItem, ...]
    words: tuple[str, ...]  # the class word each item was made with

    def __post_init__(self) -> None:
        if not self.items or len(self.items) != len(self.words):
            raise ValueError(f"need one word per item and at least one item, got {len(self.items)} and "
                             f"{len(self.words)}")

    @property
    def accuracy(self) -> float:
        """Share of pieces whose tracked tempo is their class's."""
        return float(np.mean([i.tempo_ok for i in self.items]))

    @property
    def on_grid(self) -> float:
        """Mean share of onsets on the tracked beat grid (pieces without onsets count as 0)."""
        return float(np.mean([0.0 if not np.isfinite(i.on_grid) else i.on_grid for i in self.items]))

    def per_word(self) -> dict[str, float]:
        return {w: float(np.mean([i.tempo_ok for i, v in zip(self.items, self.words, strict=True) if v == w]))
                for w in dict.fromkeys(self.words)}

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "on_grid": self.on_grid, "per_word": self.per_word(), "n": len(self.items),
                "tolerance": self.items[0].tolerance,
                "items": [{"word": w, **i.to_json()} for i, w in zip(self.items, self.words, strict=True)]}


def beats_and_onsets(mono: np.ndarray, sr: int, config: BeatConfig = BeatConfig()) -> tuple[np.ndarray, np.ndarray]:
    """(beat times, onset times) in seconds of mono audio [N] at `sr`, by the project's tracker and LORIS's
    onset picker (both at 22 050 Hz)."""
    import soxr

    y = np.asarray(mono, dtype=np.float32)
    if sr != config.sample_rate:
        y = soxr.resample(y, sr, config.sample_rate).astype(np.float32)
    return track_beats(y, config.sample_rate, config), detect_onsets_loris(y, config.sample_rate)


def tempo_accuracy(audio: Sequence[np.ndarray], sr: int, words: Sequence[str], class_bpm: dict[str, float],
                   tolerance: float = 0.04) -> TempoAccuracy:
    """Score music made for class words (`audio[i]` mono [N] for `words[i]`) against each class's tempo."""
    if len(audio) != len(words):
        raise ValueError(f"need one word per piece, got {len(audio)} pieces and {len(words)} words")
    unknown = sorted(set(words) - set(class_bpm))
    if unknown:
        raise ValueError(f"words {unknown} have no tempo; known: {sorted(class_bpm)}")
    items = []
    for y, w in zip(audio, words, strict=True):
        beats, onsets = beats_and_onsets(y, sr)
        items.append(tempo_item(beats, onsets, class_bpm[w], tolerance))
    return TempoAccuracy(tuple(items), tuple(words))
