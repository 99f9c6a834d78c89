"""Each metric from the clips' features: value, n, 95 % bootstrap interval, chance level, per-item rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model.metrics.divergence import cosine_matrix, cosine_per_pair, kl_per_pair, kl_per_pair_audioldm_eval
from model.metrics.frechet import fd_from_embeddings, project_to_span, sample_size_warning, split_half_fd
from model.metrics.rhythm import (
    RhythmConfig,
    RhythmItem,
    recall_matrix,
    rhythm_item,
    shuffled_recall,
    stable_visuals,
    summarize,
)
from model.metrics.stats import Interval, bootstrap_ci, mean_ci, off_diagonal_mean

N_BOOT_FD = 200  # each resample is two eigendecompositions; 200 keeps the interval's ends stable to ~2 %


@dataclass
class ClipFeatures:
    """What one clip contributes to each metric (None where that metric does not run)."""

    clip_id: str
    panns_gen: tuple[np.ndarray, np.ndarray] | None = None  # embedding [D], logits [K]
    panns_ref: tuple[np.ndarray, np.ndarray] | None = None
    clap_gen: np.ndarray | None = None
    clap_ref: np.ndarray | None = None
    imagebind_audio: np.ndarray | None = None
    imagebind_video: np.ndarray | None = None
    beats_gen: np.ndarray | None = None
    beats_ref: np.ndarray | None = None
    cuts: np.ndarray | None = None
    passt_gen: tuple[np.ndarray, np.ndarray] | None = None  # embedding [768], logits [527] (KL-PaSST)
    passt_ref: tuple[np.ndarray, np.ndarray] | None = None
    vggish_gen: np.ndarray | None = None  # [F, 128] frames (FAD)
    vggish_ref: np.ndarray | None = None
    onsets_gen: np.ndarray | None = None  # LORIS onsets (BCS/BHS)
    onsets_ref: np.ndarray | None = None
    video_duration_s: float | None = None
    durations: dict[str, float] = field(default_factory=dict)


@dataclass
class MetricResult:
    """One row of Table 1. ``skipped`` holds the reason when the metric could not run."""

    name: str
    value: float | None = None
    n: int = 0
    ci: Interval | None = None
    chance: dict[str, float] = field(default_factory=dict)  # chance levels / shuffled baselines
    extra: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    skipped: str | None = None
    items: list[dict] = field(default_factory=list)  # per clip: {"clip_id", "value", ...}

    def to_json(self) -> dict:
        out: dict = {"value": self.value, "n": self.n}
        if self.skipped is not None:
            return {"value": None, "n": 0, "skipped": self.skipped}
        out["ci95"] = None if self.ci is None else [self.ci.low, self.ci.high]
        if self.chance:
            out["chance"] = self.chance
        out |= self.extra
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def _have(feats: list[ClipFeatures], attr: str) -> list[ClipFeatures]:
    return [f for f in feats if getattr(f, attr) is not None]


def fd_metric(feats: list[ClipFeatures], seed: int) -> MetricResult:
    rows = _have(_have(feats, "panns_gen"), "panns_ref")
    res = MetricResult("fd", n=len(rows))
    if len(rows) < 2:
        res.skipped = f"FD needs at least 2 scored clips, got {len(rows)}"
        return res
    gen = np.stack([f.panns_gen[0] for f in rows])  # [N, D]
    ref = np.stack([f.panns_ref[0] for f in rows])  # [N, D]
    dim = gen.shape[1]
    gen_p, ref_p = project_to_span(gen, ref)  # exact FD in the ≤ 2N-d span of the rows
    res.value = fd_from_embeddings(gen_p, ref_p)
    res.ci = bootstrap_ci(len(rows), lambda i: fd_from_embeddings(gen_p[i], ref_p[i]), seed=seed, n_boot=N_BOOT_FD)
    res.extra = {"embedding_dim": dim, "n_bootstrap": N_BOOT_FD}
    if len(rows) >= 4:
        res.chance["real_vs_real_split_half"] = split_half_fd(ref_p, seed=seed)
    if (warning := sample_size_warning(len(rows), dim)) is not None:
        res.warnings.append(warning)
    return res


def kl_metric(feats: list[ClipFeatures], seed: int) -> MetricResult:
    rows = _have(_have(feats, "panns_gen"), "panns_ref")
    res = MetricResult("kl", n=len(rows))
    if not rows:
        res.skipped = "no scored clip (see the input gate's list)"
        return res
    gen = np.stack([f.panns_gen[1] for f in rows])  # [N, K] logits
    ref = np.stack([f.panns_ref[1] for f in rows])
    fwd = kl_per_pair(ref, gen)  # KL(real ‖ generated), as audioldm_eval
    rev = kl_per_pair(gen, ref)
    res.value = float(fwd.mean())
    res.ci = mean_ci(fwd, seed=seed)
    res.extra = {"direction": "KL(real||generated), softmax over PANNs logits, mean over pairs",
                 "reverse_kl_generated_real": float(rev.mean()),
                 "kl_audioldm_eval": float(kl_per_pair_audioldm_eval(ref, gen).mean())}
    res.items = [{"clip_id": f.clip_id, "value": float(a), "reverse": float(b)} for f, a, b in zip(rows, fwd, rev, strict=True)]
    return res


def cosine_metric(name: str, feats: list[ClipFeatures], a_attr: str, b_attr: str, seed: int) -> MetricResult:
    rows = _have(_have(feats, a_attr), b_attr)
    res = MetricResult(name, n=len(rows))
    if not rows:
        res.skipped = "no scored clip (see the input gate's list)"
        return res
    a = np.stack([getattr(f, a_attr) for f in rows])
    b = np.stack([getattr(f, b_attr) for f in rows])
    per = cosine_per_pair(a, b)
    res.value = float(per.mean())
    res.ci = mean_ci(per, seed=seed)
    shuffled: list[float | None] = [None] * len(rows)
    if len(rows) >= 2:
        matrix = cosine_matrix(a, b)
        res.chance["shuffled_pairs"] = off_diagonal_mean(matrix)
        shuffled = list((matrix.sum(axis=1) - np.diag(matrix)) / (len(rows) - 1))  # row i against the others
    res.items = [{"clip_id": f.clip_id, "value": float(v), "shuffled": s}
                 for f, v, s in zip(rows, per, shuffled, strict=True)]
    return res


def rhythm_metric(feats: list[ClipFeatures], config: RhythmConfig, seed: int) -> MetricResult:
    res = MetricResult("rhythm")
    rows = _have(_have(feats, "cuts"), "beats_gen")
    if not rows:
        res.skipped = "no scored clip with a video and generated music (see the input gate's list)"
        return res
    scored: list[tuple[ClipFeatures, RhythmItem]] = []
    stable = []
    for f in rows:
        item = rhythm_item(f.cuts, f.beats_gen, f.video_duration_s, config)
        row = {"clip_id": f.clip_id, "value": item.recall, "precision": item.precision, "f1": item.f1,
               "cuts": item.n_cuts, "beats": item.n_beats, "chance": item.chance_recall,
               "cuts_per_minute": round(item.cuts_per_minute, 3)}
        if stable_visuals(item, config):
            stable.append(f.clip_id)
            row["excluded"] = f"stable visuals: {item.cuts_per_minute:.2f} cuts/min < {config.min_cuts_per_minute:g}"
        else:
            scored.append((f, item))
        res.items.append(row)
    res.extra = {"tolerance_s": config.tolerance_s, "excluded_stable_visuals": stable,
                 "rule": f"videos with fewer than {config.min_cuts_per_minute:g} cuts per minute are excluded"}
    if not scored:
        res.skipped = f"every video has stable visuals (< {config.min_cuts_per_minute:g} cuts/min): {', '.join(stable)}"
        return res
    items = [it for _, it in scored]
    summary = summarize(items, config)
    res.value, res.n = summary.recall, summary.n_items
    res.ci = bootstrap_ci(len(items), lambda i: summarize([items[k] for k in i], config).recall, seed=seed)
    res.extra |= {"precision": summary.precision, "f1": summary.f1, "n_cuts": summary.n_cuts,
                  "pooling": "all cuts of the scored videos pooled (micro recall)"}
    res.chance = {"closed_form": summary.chance_recall, "two_tau_beats_per_second": summary.chance_2tau_bps}
    if len(scored) >= 2:
        cuts, beats = [f.cuts for f, _ in scored], [f.beats_gen for f, _ in scored]
        res.chance["shuffled_music"] = shuffled_recall(cuts, beats, config.tolerance_s)
        hits = recall_matrix(cuts, beats, config.tolerance_s)  # [video i, music j]
        per_video = (hits.sum(axis=1) - np.diag(hits)) / (len(scored) - 1)
        by_id = {f.clip_id: float(h / it.n_cuts) for (f, it), h in zip(scored, per_video, strict=True)}
        for row in res.items:
            if row["clip_id"] in by_id:
                row["shuffled"] = by_id[row["clip_id"]]
    ref_rows = [(f, it) for f, it in scored if f.beats_ref is not None]
    if len(ref_rows) == len(scored):
        ref_items = [rhythm_item(f.cuts, f.beats_ref, f.video_duration_s, config) for f, _ in ref_rows]
        res.extra["reference_music_recall"] = summarize(ref_items, config).recall
    return res
