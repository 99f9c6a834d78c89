"""BCS/BHS (LORIS) and the beat-alignment score (Bailando): hand values, and the reference code transcribed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.metrics.beat_scores import (
    BAILANDO_SIGMA_S,
    CoverHit,
    beat_align_score,
    cover_hit,
    onset_bins,
    shuffled_per_item,
    summarize_cover_hit,
)
from model.metrics.field_metrics import bcs_bhs_metric, beat_align_metric, imagebind_scales
from model.metrics.rhythm import RhythmConfig
from model.metrics.scores import ClipFeatures, MetricResult


def loris_beat_scores(gt: list[int], syn: list[int]) -> tuple[float, float]:
    """LORIS beats_scores.py:24-36 (github.com/OpenGVLab/LORIS, commit 68543bb), transcribed."""
    gt = gt[:len(syn)]
    assert len(gt) == len(syn)
    total_beats = sum(gt)
    cover_beats = sum(syn)
    hit_beats = 0
    for i in range(len(gt)):
        if gt[i] == 1 and gt[i] == syn[i]:
            hit_beats += 1
    hit_rate = hit_beats / total_beats if total_beats else 0
    cover_rate = hit_beats / cover_beats if cover_beats else 0
    return cover_rate, hit_rate


def loris_bins(onsets: list[float], n_samples: int, sr: int = 22050) -> list[int]:
    """LORIS beats_scores.py:18-22: one bin per second, ``beats[int(np.trunc(time))] = 1``."""
    n = np.ceil(n_samples / sr)
    beats = [0] * int(n)
    for time in onsets:
        beats[int(np.trunc(time))] = 1
    return beats


def bailando_ba(music_beats: np.ndarray, motion_beats: tuple[np.ndarray]) -> float:
    """Bailando utils/beat_align_score.py:51-55 (github.com/lisiyao21/Bailando, commit cc90b98), in frames."""
    ba = 0
    for bb in music_beats:
        ba += np.exp(-np.min((motion_beats[0] - bb) ** 2) / 2 / 9)
    return ba / len(music_beats)


def test_onsets_binned_per_second_by_hand():
    assert onset_bins([0.2, 0.7, 1.5, 3.99], 4.2).tolist() == [1, 1, 0, 1, 0]  # ceil(4.2) = 5 bins
    assert onset_bins([], 2.0).tolist() == [0, 0]
    with pytest.raises(ValueError):
        onset_bins([0.1], 0.0)


def test_cover_and_hit_by_hand():
    c = cover_hit(np.array([1, 1, 0, 1, 0]), np.array([1, 0, 1, 1, 0, 1]))  # truncated to 5 bins
    assert (c.n_ref, c.n_gen, c.n_hit) == (3, 3, 2)
    assert c.bcs == pytest.approx(2 / 3) and c.bhs == pytest.approx(2 / 3)
    c = cover_hit(np.array([1, 1, 1, 1]), np.array([1, 0, 0, 0]))
    assert c.bcs == 1.0 and c.bhs == 0.25  # coverage: hits over the generated bins; hit: over the real ones
    assert CoverHit(0, 0, 0).bcs == 0.0 and CoverHit(0, 0, 0).bhs == 0.0  # LORIS's 0 for an empty side


def test_set_scores_are_means_over_clips_and_f1_of_the_means():
    s = summarize_cover_hit([CoverHit(n_ref=2, n_gen=1, n_hit=1), CoverHit(n_ref=4, n_gen=4, n_hit=2)])
    assert s.bcs == pytest.approx((1.0 + 0.5) / 2) and s.bhs == pytest.approx((0.5 + 0.5) / 2)
    assert s.f1 == pytest.approx(2 * 0.75 * 0.5 / 1.25)  # 0.6, LORIS beats_scores.py:62


def test_cover_hit_equals_loris_on_random_onsets():
    rng = np.random.default_rng(3)
    for _ in range(50):
        sr, seconds = 22050, rng.uniform(3, 12)
        n = int(seconds * sr)
        ref = sorted(rng.uniform(0, seconds, rng.integers(0, 15)).tolist())
        gen = sorted(rng.uniform(0, seconds, rng.integers(0, 15)).tolist())
        want = loris_beat_scores(loris_bins(ref, n), loris_bins(gen, n))
        c = cover_hit(onset_bins(ref, n / sr), onset_bins(gen, n / sr))
        assert (c.bcs, c.bhs) == pytest.approx(want, abs=0, rel=1e-12)


def test_beat_alignment_by_hand_and_its_direction():
    assert BAILANDO_SIGMA_S == pytest.approx(0.05)  # 3 frames at 60 fps
    # beat 1 on a cut; beat 2 one σ away: (1 + e^-0.5) / 2
    assert beat_align_score([1.0, 2.0], [1.0, 2.05]) == pytest.approx((1 + math.exp(-0.5)) / 2)
    assert beat_align_score([1.0], [1.0, 3.0]) == 1.0  # an extra cut costs nothing: music → video
    assert beat_align_score([1.0, 3.0], [1.0]) == pytest.approx(0.5 + 0.5 * math.exp(-4 / (2 * 0.05**2)))
    assert math.isnan(beat_align_score([], [1.0])) and math.isnan(beat_align_score([1.0], []))


def test_beat_alignment_equals_bailando_in_frames():
    rng = np.random.default_rng(5)
    for _ in range(30):
        music = np.unique(rng.integers(0, 600, rng.integers(1, 20)))  # frames at 60 fps
        motion = np.unique(rng.integers(0, 600, rng.integers(1, 20)))
        want = bailando_ba(music, (motion,))
        assert beat_align_score(music / 60.0, motion / 60.0) == pytest.approx(want, rel=1e-12)


def test_shuffled_per_item_is_each_row_without_its_diagonal():
    m = np.array([[9.0, 1.0, 2.0], [3.0, 9.0, np.nan], [4.0, 6.0, 9.0]])
    assert shuffled_per_item(m).tolist() == [1.5, 3.0, 5.0]


def _clip(cid, ref_onsets, gen_onsets, seconds=4.0, **kw) -> ClipFeatures:
    f = ClipFeatures(cid, onsets_ref=np.array(ref_onsets), onsets_gen=np.array(gen_onsets), **kw)
    f.durations = {"reference": seconds, "generated": seconds}
    return f


def test_bcs_bhs_metric_and_its_shuffled_chance_by_hand():
    # clip a: real bins [1,1,0,0], generated [1,1,0,0]; clip b: real [0,0,1,1], generated [0,0,1,0]
    feats = [_clip("a", [0.1, 1.1], [0.5, 1.5]), _clip("b", [2.1, 3.1], [2.9])]
    m = bcs_bhs_metric(feats, seed=0)
    assert m.n == 2 and m.value == pytest.approx(1.0)  # BCS: (2/2 + 1/1) / 2
    assert m.extra["bhs"] == pytest.approx((1.0 + 0.5) / 2)
    assert m.extra["f1"] == pytest.approx(2 * 1.0 * 0.75 / 1.75)
    # shuffled: real a with generated b -> 0 hits; real b with generated a -> 0 hits
    assert m.chance["shuffled_pairs_bcs"] == 0.0 and m.chance["shuffled_pairs_bhs"] == 0.0
    assert [r["shuffled"] for r in m.items] == [0.0, 0.0]
    assert bcs_bhs_metric([], seed=0).skipped


def test_beat_align_metric_uses_rhythms_videos_and_a_shuffled_chance():
    cfg = RhythmConfig()
    grid = np.arange(0.5, 6.0, 0.5)
    feats = [ClipFeatures("a", beats_gen=grid, cuts=np.array([1.0, 2.0, 3.5, 5.0]), video_duration_s=6.0),
             ClipFeatures("b", beats_gen=grid + 0.2, cuts=np.array([1.2, 2.7, 4.2]), video_duration_s=6.0),
             ClipFeatures("still", beats_gen=grid, cuts=np.array([]), video_duration_s=6.0)]
    m = beat_align_metric(feats, cfg, seed=0)
    far = math.exp(-0.25 / (2 * 0.05**2))  # a beat 0.5 s from every cut
    near = math.exp(-0.04 / (2 * 0.05**2))  # 0.2 s away
    a = (4 + 7 * far) / 11  # 11 beats, 4 on a cut, the others 0.5 s away
    b = (3 + 8 * far) / 11
    assert m.n == 2 and [r["clip_id"] for r in m.items] == ["a", "b"]  # "still" has stable visuals
    assert m.value == pytest.approx((a + b) / 2)
    # a's beats (0.5 … 5.5) to b's cuts (1.2, 2.7, 4.2): 3 at 0.2 s, 3 at 0.3 s, 5 at ≥ 0.7 s (≈ 0);
    # b's beats (0.7 … 5.7) to a's cuts (1, 2, 3.5, 5): 4 at 0.2 s, 4 at 0.3 s, 3 at ≥ 0.7 s
    mid, out = math.exp(-0.09 / (2 * 0.05**2)), math.exp(-0.49 / (2 * 0.05**2))
    a_on_b = (3 * near + 3 * mid + 4 * out + math.exp(-0.64 / (2 * 0.05**2))) / 11  # 5.0 is 0.8 s off
    b_on_a = (4 * near + 4 * mid + 2 * out + math.exp(-0.64 / (2 * 0.05**2))) / 11  # 4.2 is 0.8 s off
    assert m.chance["shuffled_music"] == pytest.approx((a_on_b + b_on_a) / 2)
    assert m.items[0]["shuffled"] == pytest.approx(b_on_a)  # video a with b's music


def test_imagebind_in_both_scales_one_value():
    m = imagebind_scales(MetricResult("imagebind", value=0.2158, n=3, chance={"shuffled_pairs": 0.1}))
    assert m.value == 0.2158 and m.extra["value_cosine"] == 0.2158
    assert m.extra["value_x100"] == pytest.approx(21.58) and m.chance["shuffled_pairs_x100"] == pytest.approx(10.0)
    assert "av-benchmark" in m.extra["scales"]["value_x100"]
    assert imagebind_scales(MetricResult("imagebind", skipped="no ckpt")).extra == {}
