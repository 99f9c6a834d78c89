"""The anchors' conventions as metrics: BCS/BHS (LORIS), the beat-alignment score (Bailando), the
ImageBind score in both scales, and the name of the convention (and toolkit) behind every value.

The maths is in model.metrics.beat_scores; this module turns the clips' features into MetricResults
with n, a 95 % bootstrap interval, the shuffled-pair chance level and per-clip rows (each with its
own shuffled value, for the report's distribution pictures).
"""

from __future__ import annotations

import numpy as np

from model.metrics.beat_scores import (
    BAILANDO_SIGMA_S,
    LORIS_BIN_S,
    beat_align_score,
    cover_hit,
    onset_bins,
    pair_matrix,
    shuffled_per_item,
    summarize_cover_hit,
)
from model.metrics.divergence import inception_score, kl_per_pair
from model.metrics.frechet import (
    fad_inf,
    fd_from_embeddings,
    frechet_distance,
    gaussian_stats,
    sample_size_warning,
)
from model.metrics.rhythm import RhythmConfig, rhythm_item, stable_visuals
from model.metrics.scores import N_BOOT_FD, ClipFeatures, MetricResult
from model.metrics.stats import bootstrap_ci, mean_ci, off_diagonal_mean

# metric -> what its value is, and the toolkit (file) whose number it equals
CONVENTIONS: dict[str, dict[str, str]] = {
    "fd": {"convention": "Fréchet distance on PANNs Cnn14 fc1 (2048-d), one embedding per clip, unbiased covariances",
           "matches": "audioldm_eval metrics/fid.py calculate_fid (the paper's FD); also frechet_audio_distance and "
                      "fadtk's calc_frechet_distance on the same embeddings"},
    "fad_vggish": {"convention": "FD of VGGish 128-d embeddings of every 0.96 s frame at 16 kHz, frames pooled over "
                                 "clips, no PCA, last ReLU dropped",
                   "matches": "audioldm_eval (eval.py:27-30, metrics/fad.py) and frechet_audio_distance "
                              "(model_name='vggish', use_pca=False, use_activation=False)"},
    "kl": {"convention": "KL(real‖generated) of softmax(PANNs logits), per clip pair, mean over pairs, exact log-softmax",
           "matches": "av-benchmark av_bench/metrics/kl.py 'kl_softmax' (exact); audioldm_eval metrics/kl.py "
                      "calculate_kl softmax differs by its 1e-6 inside the log (reported as kl_audioldm_eval)"},
    "kl_passt": {"convention": "KL(real‖generated) of softmax(PaSST-S logits) of each clip's first 10 s at 32 kHz, "
                             "per pair, mean over pairs",
                 "matches": "av-benchmark KL-PASST-softmax (av_bench/extract.py:158-176, metrics/kl.py:22-29)"},
    "isc": {"convention": "inception score of softmax(PANNs logits) of the generated music, 10 shuffled splits "
                          "(seed 2020), mean (std beside it)",
            "matches": "audioldm_eval metrics/isc.py calculate_isc; av-benchmark ISC-PANNS-mean"},
    "imagebind": {"convention": "cosine of ImageBind video and generated-audio embeddings, mean over clips",
                  "matches": "the paper's ImageBind score and av-benchmark's IB-Score (evaluate.py:166-169), both "
                             "the cosine; papers printing av-benchmark's numbers scale it ×100 (value_x100)"},
    "clap": {"convention": "cosine of CLAP audio embeddings, generated vs real, mean over clips",
             "matches": "the paper's CLAP score"},
    "rhythm": {"convention": "recall of video cuts with a music beat within ±τ, cuts pooled over videos",
               "matches": "the paper's Rhythm (§5.2)"},
    "bcs_bhs": {"convention": "LORIS beat coverage (hits/generated onset bins) and hit (hits/real onset bins) "
                              "scores on 1 s bins, means over clips, F1 of the means",
                "matches": "LORIS beats_scores.py beat_detect/beat_scores"},
    "beat_align": {"convention": "mean over music beats of exp(-d²/2σ²), d to the nearest video cut, σ = 0.05 s",
                   "matches": "Bailando utils/beat_align_score.py BA (AIST++ beat-alignment score)"},
}


def bcs_bhs_metric(feats: list[ClipFeatures], seed: int, bin_s: float = LORIS_BIN_S) -> MetricResult:
    """LORIS's BCS (value) and BHS, with F1 and shuffled-pair chance levels for each."""
    rows = [f for f in feats if f.onsets_gen is not None and f.onsets_ref is not None]
    res = MetricResult("bcs_bhs", n=len(rows))
    if not rows:
        res.skipped = "no scored clip with generated and real music (see the input gate's list)"
        return res
    ref_bins = [onset_bins(f.onsets_ref, f.durations["reference"], bin_s) for f in rows]
    gen_bins = [onset_bins(f.onsets_gen, f.durations["generated"], bin_s) for f in rows]
    items = [cover_hit(r, g) for r, g in zip(ref_bins, gen_bins, strict=True)]
    summary = summarize_cover_hit(items)
    res.value = summary.bcs
    res.ci = bootstrap_ci(len(items), lambda i: summarize_cover_hit([items[k] for k in i]).bcs, seed=seed)
    bhs_ci = bootstrap_ci(len(items), lambda i: summarize_cover_hit([items[k] for k in i]).bhs, seed=seed)
    res.extra = {"bcs": summary.bcs, "bhs": summary.bhs, "f1": summary.f1, "bin_s": bin_s,
                 "bhs_ci95": None if bhs_ci is None else [bhs_ci.low, bhs_ci.high],
                 "onsets": "librosa.onset.onset_detect at 22050 Hz with LORIS's peak parameters"}
    shuffled_bcs = shuffled_bhs = [None] * len(rows)
    if len(rows) >= 2:
        pairs = [[cover_hit(r, g) for g in gen_bins] for r in ref_bins]  # [real i][generated j]
        bcs_m = np.array([[c.bcs for c in row] for row in pairs])
        bhs_m = np.array([[c.bhs for c in row] for row in pairs])
        res.chance = {"shuffled_pairs_bcs": off_diagonal_mean(bcs_m), "shuffled_pairs_bhs": off_diagonal_mean(bhs_m)}
        res.chance["shuffled_pairs_f1"] = _f1(res.chance["shuffled_pairs_bcs"], res.chance["shuffled_pairs_bhs"])
        shuffled_bcs, shuffled_bhs = list(shuffled_per_item(bcs_m)), list(shuffled_per_item(bhs_m))
    res.items = [{"clip_id": f.clip_id, "value": it.bcs, "bhs": it.bhs, "real_bins": it.n_ref,
                  "generated_bins": it.n_gen, "hits": it.n_hit, "shuffled": sb, "shuffled_bhs": sh}
                 for f, it, sb, sh in zip(rows, items, shuffled_bcs, shuffled_bhs, strict=True)]
    return res


def _f1(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def beat_align_metric(feats: list[ClipFeatures], config: RhythmConfig, seed: int,
                      sigma_s: float = BAILANDO_SIGMA_S) -> MetricResult:
    """Bailando's BAS of the generated music's beats against the video's cuts, on Rhythm's videos."""
    res = MetricResult("beat_align")
    rows = [f for f in feats if f.cuts is not None and f.beats_gen is not None]
    if not rows:
        res.skipped = "no scored clip with a video and generated music (see the input gate's list)"
        return res
    scored = [f for f in rows if not stable_visuals(rhythm_item(f.cuts, f.beats_gen, f.video_duration_s, config),
                                                    config)]
    scored = [f for f in scored if np.asarray(f.beats_gen).size > 0]
    res.extra = {"sigma_s": sigma_s, "direction": "music beats -> nearest video cut (Bailando)",
                 "videos": "Rhythm's scored videos (stable visuals excluded), music with at least one beat"}
    if not scored:
        res.skipped = "no video with cuts and music with beats (stable visuals are excluded, as for Rhythm)"
        return res
    per = np.array([beat_align_score(f.beats_gen, f.cuts, sigma_s) for f in scored])
    res.n, res.value = len(scored), float(per.mean())
    res.ci = mean_ci(per, seed=seed)
    shuffled: list[float | None] = [None] * len(scored)
    if len(scored) >= 2:
        m = pair_matrix([f.beats_gen for f in scored], [f.cuts for f in scored],
                        lambda b, c: beat_align_score(b, c, sigma_s))  # [music i, video j]
        res.chance["shuffled_music"] = off_diagonal_mean(m)
        shuffled = list(shuffled_per_item(m.T))  # video i against every other clip's music
    if all(f.beats_ref is not None and np.asarray(f.beats_ref).size for f in scored):
        res.extra["reference_music"] = float(np.mean([beat_align_score(f.beats_ref, f.cuts, sigma_s) for f in scored]))
    res.items = [{"clip_id": f.clip_id, "value": float(v), "shuffled": s}
                 for f, v, s in zip(scored, per, shuffled, strict=True)]
    return res


FAD_INF_MIN_N = 500  # fadtk score_inf's default min_n


def fad_vggish_metric(feats: list[ClipFeatures], seed: int, n_boot: int = N_BOOT_FD) -> MetricResult:
    """FAD on VGGish frames: all generated frames against all real frames (audioldm_eval's recipe)."""
    rows = [f for f in feats if f.vggish_gen is not None and f.vggish_ref is not None
            and len(f.vggish_gen) and len(f.vggish_ref)]
    res = MetricResult("fad_vggish", n=len(rows))
    gen = [np.asarray(f.vggish_gen) for f in rows]
    ref = [np.asarray(f.vggish_ref) for f in rows]
    n_frames = (sum(len(g) for g in gen), sum(len(r) for r in ref))
    if len(rows) < 2 or min(n_frames) < 2:
        res.skipped = f"FAD needs at least 2 scored clips, got {len(rows)}"
        return res
    res.value = fd_from_embeddings(np.concatenate(gen), np.concatenate(ref))
    res.ci = bootstrap_ci(len(rows), lambda i: fd_from_embeddings(np.concatenate([gen[k] for k in i]),
                                                                  np.concatenate([ref[k] for k in i])),
                          seed=seed, n_boot=n_boot)
    res.extra = {"embedding_dim": int(gen[0].shape[1]), "frames_generated": n_frames[0], "frames_real": n_frames[1],
                 "n_bootstrap": n_boot, "pooling": "every 0.96 s frame of every clip (not one vector per clip)"}
    if len(rows) >= 4:
        order = np.random.default_rng(seed).permutation(len(rows))
        half = len(rows) // 2
        res.chance["real_vs_real_split_half"] = fd_from_embeddings(np.concatenate([ref[k] for k in order[:half]]),
                                                                   np.concatenate([ref[k] for k in order[half:]]))
    if (warning := sample_size_warning(min(n_frames), int(gen[0].shape[1]))) is not None:
        res.warnings.append(warning)
    ref_stats = gaussian_stats(np.concatenate(ref))
    if n_frames[0] >= FAD_INF_MIN_N:
        inf = fad_inf(np.concatenate(gen), ref_stats, min_n=FAD_INF_MIN_N, seed=seed)
        res.extra |= {"fad_inf": inf.score, "fad_inf_slope": inf.slope, "fad_inf_r2": inf.r2}
    else:
        res.extra["fad_inf"] = None
        res.extra["fad_inf_skipped"] = f"fadtk's FAD∞ starts at n={FAD_INF_MIN_N} frames; {n_frames[0]} generated"
    # fadtk's per-song FAD (score_individual): one clip's frames against all the real frames
    res.items = [{"clip_id": f.clip_id, "value": frechet_distance(gaussian_stats(g), ref_stats) if len(g) >= 2 else None,
                  "frames": len(g)} for f, g in zip(rows, gen, strict=True)]
    return res


def kl_passt_metric(feats: list[ClipFeatures], seed: int) -> MetricResult:
    """KL(real‖generated) of softmax(PaSST logits) per pair, mean over pairs: av-benchmark's KL-PASST-softmax."""
    rows = [f for f in feats if f.passt_gen is not None and f.passt_ref is not None]
    res = MetricResult("kl_passt", n=len(rows))
    if not rows:
        res.skipped = "no scored clip (see the input gate's list)"
        return res
    gen = np.stack([f.passt_gen[1] for f in rows])
    ref = np.stack([f.passt_ref[1] for f in rows])
    fwd, rev = kl_per_pair(ref, gen), kl_per_pair(gen, ref)
    res.value = float(fwd.mean())
    res.ci = mean_ci(fwd, seed=seed)
    res.extra = {"direction": "KL(real||generated), softmax over PaSST logits, mean over pairs",
                 "reverse_kl_generated_real": float(rev.mean()), "window": "first 10 s at 32 kHz, zero-padded"}
    if len(rows) >= 2:
        res.extra["fd_passt"] = fd_from_embeddings(np.stack([f.passt_gen[0] for f in rows]),
                                                   np.stack([f.passt_ref[0] for f in rows]))
    res.items = [{"clip_id": f.clip_id, "value": float(a), "reverse": float(b)}
                 for f, a, b in zip(rows, fwd, rev, strict=True)]
    return res


IS_SPLITS = 10  # av-benchmark's compute_isc(splits=10, rng_seed=2020, samples_shuffle=True)


def isc_metric(feats: list[ClipFeatures], seed: int) -> MetricResult:
    """Inception score of the generated music's PANNs logits (audioldm_eval / av-benchmark ISC-PANNS)."""
    rows = [f for f in feats if f.panns_gen is not None]
    res = MetricResult("isc", n=len(rows))
    if len(rows) < IS_SPLITS:
        res.skipped = f"the inception score needs at least {IS_SPLITS} scored clips (one per split), got {len(rows)}"
        return res
    gen = np.stack([f.panns_gen[1] for f in rows])
    res.value, std = inception_score(gen, splits=IS_SPLITS)
    res.extra = {"std_over_splits": std, "splits": IS_SPLITS, "shuffle_seed": 2020}
    if all(f.panns_ref is not None for f in rows):
        res.extra["reference_music"] = inception_score(np.stack([f.panns_ref[1] for f in rows]), splits=IS_SPLITS)[0]
    res.ci = bootstrap_ci(len(rows), lambda i: inception_score(gen[i], splits=IS_SPLITS, shuffle=False)[0],
                          seed=seed, n_boot=200)
    return res


def imagebind_scales(res: MetricResult) -> MetricResult:
    """One ImageBind value in both scales: the paper's cosine and av-benchmark's ×100, each named."""
    if res.skipped is None and res.value is not None:
        res.extra["value_cosine"] = res.value
        res.extra["value_x100"] = 100.0 * res.value
        res.extra["scales"] = {"value_cosine": "the paper (VidMusician Table 1): cosine in [-1, 1]",
                               "value_x100": "the same cosine × 100, as papers print av-benchmark's IB-score"}
        if "shuffled_pairs" in res.chance:
            res.chance["shuffled_pairs_x100"] = 100.0 * res.chance["shuffled_pairs"]
    return res
