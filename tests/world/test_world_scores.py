"""The world's semantic and rhythm scores against shuffled pairs (model/metrics/world.py)."""

from __future__ import annotations

import numpy as np

from model.metrics.world import nearest_class, rhythm_vs_shuffled, semantic_score, tempo_bpm


def test_tempo_and_nearest_class():
    assert tempo_bpm(np.arange(0, 10, 0.5)) == 120.0
    assert nearest_class(118.0, [100, 125, 150]) == 1
    assert nearest_class(float("nan"), [100, 125, 150]) == -1


def test_semantic_score_follows_the_video_or_not():
    truth = [0, 1, 2] * 6
    good = semantic_score(truth, truth)
    assert good.value == 1.0 and abs(good.chance - 5 / 17) < 1e-9 and good.above_chance
    constant = semantic_score([0] * 18, truth)  # one tempo whatever the video: at chance
    assert constant.value == constant.chance and not constant.above_chance


def test_rhythm_on_the_cuts_beats_shuffled_music():
    rng = np.random.default_rng(0)
    cuts = [np.sort(rng.uniform(0, 10, 8)) for _ in range(10)]
    aligned = rhythm_vs_shuffled(cuts, [np.concatenate([c, c + 0.5]) for c in cuts])
    assert aligned.value == 1.0 and aligned.above_chance
    grid = [np.arange(0, 10, 0.5) + rng.uniform(0, 0.5) for _ in range(10)]  # beats that ignore the cuts
    blind = rhythm_vs_shuffled(cuts, grid)
    assert not blind.above_chance
