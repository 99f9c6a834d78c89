"""The world's semantic and rhythm scores against shuffled pairs, and the backbone's tempo gate
(model/metrics/world.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dvmset.envelope_codec import EnvelopeCodec
from flows.demos.world import SCALES, heldout_plans
from model.metrics.world import (
    nearest_class,
    precision_vs_shuffled,
    rhythm_between,
    rhythm_vs_shuffled,
    semantic_score,
    tempo_accuracy,
    tempo_bpm,
    tempo_item,
)
from pipeline.loudness import normalize_clip
from pipeline.world import CLASSES, WorldVideo, plan_world, synth_music


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


def test_precision_tells_dense_music_from_music_on_the_cuts():
    rng = np.random.default_rng(1)
    cuts = [np.sort(rng.uniform(0.5, 9.5, 6)) for _ in range(10)]
    dense = [np.arange(0, 10, 0.15) + rng.uniform(0, 0.15) for _ in range(10)]  # a beat near any instant
    recall, precision = rhythm_vs_shuffled(cuts, dense), precision_vs_shuffled(cuts, dense)
    assert recall.value > 0.9 and abs(recall.value - recall.chance) < 0.1  # recall rewards the density ...
    assert precision.value < 0.35 and not precision.above_chance  # ... precision shows it is not on the cuts
    on_cuts = [np.concatenate([c, c + 3.3]) for c in cuts]  # half its beats on the cuts
    exact = precision_vs_shuffled(cuts, on_cuts)
    hand = sum(int((np.abs(b[:, None] - c[None, :]).min(1) <= 0.1 + 1e-9).sum()) for c, b in zip(cuts, on_cuts, strict=True))
    assert exact.value == hand / sum(b.size for b in on_cuts) and exact.above_chance
    # chance: every beat of music j against video i != j, beat-weighted (the mean over re-pairings)
    pairs = [(i, j) for i in range(10) for j in range(10) if i != j]
    near = sum(int((np.abs(on_cuts[j][:, None] - cuts[i][None, :]).min(1) <= 0.1 + 1e-9).sum()) for i, j in pairs)
    assert abs(exact.chance - near / sum(on_cuts[j].size for _, j in pairs)) < 1e-12


def test_rhythm_between_two_models_on_the_same_videos():
    rng = np.random.default_rng(2)
    cuts = [np.sort(rng.uniform(0.5, 9.5, int(k))) for k in rng.integers(1, 6, 20)]
    grid = [np.arange(0, 10, 0.5) + rng.uniform(0, 0.5) for _ in range(20)]  # beats that ignore the cuts
    same = rhythm_between(cuts, grid, grid)
    assert same.value == same.chance and same.diff_ci.low == same.diff_ci.high == 0.0  # a model against itself
    half = [np.concatenate([c[: (c.size + 1) // 2], g]) for c, g in zip(cuts, grid, strict=True)]  # beats on half the cuts
    better = rhythm_between(cuts, half, grid)
    n = sum(c.size for c in cuts)
    hits = [int((np.abs(c[:, None] - b[None, :]).min(1) <= 0.1 + 1e-9).sum()) for c, b in zip(cuts, half, strict=True)]
    assert better.value == sum(hits) / n  # pooled over cuts, as Rhythm is
    assert better.above_chance and better.diff_ci.low <= better.value - better.chance <= better.diff_ci.high
    assert not rhythm_between(cuts, grid, half).above_chance  # the order matters: B above A is not A above B


def test_heldout_plans_are_new_videos():
    large = SCALES["large"]
    plans = heldout_plans(large, 20, seed=2)
    assert len(plans) == 60 and all(p.name.startswith("heldout-") for p in plans)
    seen = plan_world(large.videos_per_class, large.source_s, seed=large.seed)
    assert not {p.seed for p in plans} & {p.seed for p in seen}
    for used in (large.seed, large.seed + 1):  # the run's own videos, the backbone's pre-training corpus
        with pytest.raises(ValueError, match="seen"):
            heldout_plans(large, 20, seed=used)


def _irregular(plan: WorldVideo, seed: int) -> WorldVideo:
    """The same class and notes, its onsets at random intervals of 0.4-1.6 beats (no grid, mean tempo kept)."""
    rng = np.random.default_rng(seed)
    gaps = plan.world_class.beat_s * rng.uniform(0.4, 1.6, 64)
    times = np.cumsum(np.concatenate([[plan.beat_times[0]], gaps]))
    return replace(plan, beat_times=tuple(float(t) for t in times[times < plan.duration_s]))


def test_tempo_accuracy_passes_world_music_and_fails_irregular_or_other_class_music():
    codec = EnvelopeCodec()
    plans = plan_world(2, 8.0, seed=11, prefix="tempo")
    bpm = {c.word: c.bpm for c in CLASSES}
    words = [p.world_class.word for p in plans]

    def decoded(plan: WorldVideo) -> np.ndarray:  # through the codec, as the backbone's music is heard
        music, _ = normalize_clip(synth_music(plan)[None], codec.sample_rate)
        return codec.decode(codec.encode(torch.from_numpy(music)[None])[0])[0, 0].numpy()

    real = tempo_accuracy([decoded(p) for p in plans], codec.sample_rate, words, bpm)
    assert real.accuracy == 1.0 and real.on_grid > 0.85, real.to_json()
    irregular = tempo_accuracy([decoded(_irregular(p, i)) for i, p in enumerate(plans)], codec.sample_rate, words,
                               bpm)
    assert irregular.accuracy <= 0.5 and irregular.on_grid < real.on_grid - 0.2, irregular.to_json()
    rotated = words[1:] + words[:1]  # each piece scored against the next class's tempo: on its grid, wrong tempo
    other = tempo_accuracy([decoded(p) for p in plans], codec.sample_rate, rotated, bpm)
    assert other.accuracy == 0.0 and other.on_grid > 0.85, other.to_json()


def test_tempo_item_counts_onsets_off_the_grid():
    beats = np.arange(0.5, 8.0, 0.6)  # 100 BPM
    on = tempo_item(beats, beats + 0.01, 100.0)
    assert on.tempo_ok and on.on_grid == 1.0
    off = tempo_item(beats, np.concatenate([beats, beats[:-1] + 0.3]), 100.0)
    assert off.tempo_ok and abs(off.on_grid - len(beats) / (2 * len(beats) - 1)) < 1e-9
    assert not tempo_item(beats, beats, 125.0).tempo_ok  # 100 BPM is not 125 within 4 %
    assert not tempo_item(beats[:2], beats[:2], 100.0).tempo_ok  # too few beats for a tempo
