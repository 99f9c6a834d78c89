"""The paper's Rhythm metric: recall of video cuts that have a music beat within ±τ (§5.2).

Precision (beats with a cut within τ) and F1 stand beside it, and its chance level, without
which the number cannot be read: a cut dropped at a random time lands within τ of a beat with
probability equal to the share of the clip the ±τ windows around the beats cover, ≈ 2τ × beats
per second (0.40 at 120 BPM with τ = 0.1 s, above the paper's best 0.2516). Videos with stable
visuals (fewer than ``min_cuts_per_minute`` cuts) are excluded, as the paper excludes landscapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_EPS = 1e-9  # a beat exactly τ away counts as a hit whatever the float round-off


@dataclass(frozen=True)
class RhythmConfig:
    tolerance_s: float = 0.1  # **[paper]** ±0.1 s
    min_cuts_per_minute: float = 3.0  # below: "stable visuals", left out of the score

    def __post_init__(self) -> None:
        if not 0.0 < self.tolerance_s < 1.0:
            raise ValueError(f"tolerance_s must be in (0, 1) s, got {self.tolerance_s}")
        if self.min_cuts_per_minute < 0:
            raise ValueError(f"min_cuts_per_minute must be >= 0, got {self.min_cuts_per_minute}")


@dataclass(frozen=True)
class RhythmItem:
    """One video–music pair: counts, and the closed-form chance recall for this music."""

    n_cuts: int
    n_beats: int
    cut_hits: int  # cuts with a beat within τ
    beat_hits: int  # beats with a cut within τ
    duration_s: float
    chance_recall: float  # share of [0, duration] within τ of a beat

    def __post_init__(self) -> None:
        if not (0 <= self.cut_hits <= self.n_cuts and 0 <= self.beat_hits <= self.n_beats):
            raise ValueError(f"hits out of range: {self}")
        if self.duration_s <= 0 or not 0.0 <= self.chance_recall <= 1.0:
            raise ValueError(f"duration must be positive and chance in [0, 1]: {self}")

    @property
    def recall(self) -> float:
        return self.cut_hits / self.n_cuts if self.n_cuts else math.nan

    @property
    def precision(self) -> float:
        return self.beat_hits / self.n_beats if self.n_beats else math.nan

    @property
    def f1(self) -> float:
        return f1_score(self.precision, self.recall)

    @property
    def cuts_per_minute(self) -> float:
        return 60.0 * self.n_cuts / self.duration_s


def _times(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    t = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if not np.isfinite(t).all():
        raise ValueError(f"{what} times hold NaN or infinite values")
    return t


def hit_mask(events: Sequence[float] | np.ndarray, targets: Sequence[float] | np.ndarray,
             tolerance_s: float) -> np.ndarray:
    """For each event (sorted order), whether some target lies within ±``tolerance_s``: [len(events)] bool."""
    ev, tg = _times(events, "event"), _times(targets, "target")
    if tg.size == 0:
        return np.zeros(ev.size, dtype=bool)
    right = np.clip(np.searchsorted(tg, ev), 0, tg.size - 1)
    left = np.clip(right - 1, 0, tg.size - 1)
    nearest = np.minimum(np.abs(tg[right] - ev), np.abs(tg[left] - ev))
    return nearest <= tolerance_s + _EPS


def beat_coverage(beats: Sequence[float] | np.ndarray, duration_s: float, tolerance_s: float) -> float:
    """Share of [0, duration_s] lying within ±τ of some beat: the chance recall of a uniform random cut."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    b = _times(beats, "beat")
    lo = np.clip(b - tolerance_s, 0.0, duration_s)
    hi = np.clip(b + tolerance_s, 0.0, duration_s)
    covered, end = 0.0, 0.0
    for start, stop in zip(lo, hi, strict=True):  # sorted by start since b is sorted
        start = max(start, end)
        if stop > start:
            covered += stop - start
            end = stop
    return float(min(covered / duration_s, 1.0))


def chance_recall_2tau(beats_per_second: float, tolerance_s: float) -> float:
    """The rule of thumb min(1, 2τ × beats/s): exact for an evenly spaced grid sparser than 2τ."""
    return float(min(1.0, 2.0 * tolerance_s * beats_per_second))


def f1_score(precision: float, recall: float) -> float:
    if math.isnan(precision) or math.isnan(recall):
        return math.nan
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def rhythm_item(cuts: Sequence[float] | np.ndarray, beats: Sequence[float] | np.ndarray, duration_s: float,
                config: RhythmConfig = RhythmConfig()) -> RhythmItem:
    """Score one pair: cut times of the video and beat times of the music, in seconds from the start."""
    tau = config.tolerance_s
    c, b = _times(cuts, "cut"), _times(beats, "beat")
    return RhythmItem(
        n_cuts=int(c.size), n_beats=int(b.size),
        cut_hits=int(hit_mask(c, b, tau).sum()), beat_hits=int(hit_mask(b, c, tau).sum()),
        duration_s=float(duration_s), chance_recall=beat_coverage(b, duration_s, tau),
    )


def stable_visuals(item: RhythmItem, config: RhythmConfig = RhythmConfig()) -> bool:
    """The exclusion rule: no cut at all, or fewer than ``min_cuts_per_minute`` cuts per minute."""
    return item.n_cuts == 0 or item.cuts_per_minute < config.min_cuts_per_minute


@dataclass(frozen=True)
class RhythmSummary:
    """Pooled over the included items: every cut of every video counts once."""

    recall: float
    precision: float
    f1: float
    n_items: int
    n_cuts: int
    chance_recall: float  # cut-weighted closed-form chance of each video's own music
    chance_2tau_bps: float  # 2τ × (all beats / all seconds)


def summarize(items: Sequence[RhythmItem], config: RhythmConfig = RhythmConfig()) -> RhythmSummary:
    if not items:
        raise ValueError("no video left to score Rhythm on")
    n_cuts = sum(i.n_cuts for i in items)
    n_beats = sum(i.n_beats for i in items)
    if n_cuts == 0:
        raise ValueError("the videos have no cuts: Rhythm recall is undefined")
    recall = sum(i.cut_hits for i in items) / n_cuts
    precision = sum(i.beat_hits for i in items) / n_beats if n_beats else math.nan
    seconds = sum(i.duration_s for i in items)
    return RhythmSummary(
        recall=recall, precision=precision, f1=f1_score(precision, recall), n_items=len(items), n_cuts=n_cuts,
        chance_recall=sum(i.n_cuts * i.chance_recall for i in items) / n_cuts,
        chance_2tau_bps=chance_recall_2tau(n_beats / seconds, config.tolerance_s),
    )


def recall_matrix(cuts: Sequence[np.ndarray], beats: Sequence[np.ndarray], tolerance_s: float) -> np.ndarray:
    """hits[i, j]: cuts of video i that have a beat of music j within τ: [N, N] int."""
    n = len(cuts)
    if len(beats) != n:
        raise ValueError(f"{n} cut lists but {len(beats)} beat lists")
    hits = np.zeros((n, n), dtype=np.int64)
    for i, c in enumerate(cuts):
        for j, b in enumerate(beats):
            hits[i, j] = int(hit_mask(c, b, tolerance_s).sum())
    return hits


def shuffled_recall(cuts: Sequence[np.ndarray], beats: Sequence[np.ndarray], tolerance_s: float) -> float:
    """Pooled recall with each video scored against every other video's music (all pairs i ≠ j).

    The exact expectation over random re-pairings, so it needs no sampling and no seed.
    """
    n = len(cuts)
    if n < 2:
        raise ValueError("a shuffled baseline needs at least 2 videos")
    hits = recall_matrix(cuts, beats, tolerance_s)
    n_cuts = np.array([np.asarray(c).size for c in cuts], dtype=np.float64)  # [N]
    off = hits.sum() - np.trace(hits)
    total = n_cuts.sum() * (n - 1)
    if total == 0:
        raise ValueError("the videos have no cuts: Rhythm recall is undefined")
    return float(off / total)
