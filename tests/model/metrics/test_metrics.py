"""FD, KL, cosine, bootstrap and the input gate against closed forms and hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from model.metrics.audio import fixed_windows, resample, to_mono
from model.metrics.divergence import cosine_matrix, cosine_per_pair, kl_per_pair
from model.metrics.frechet import (
    GaussianStats,
    fd_from_embeddings,
    frechet_distance,
    gaussian_stats,
    project_to_span,
    sample_size_warning,
    split_half_fd,
    sqrtm_psd,
)
from model.metrics.gate import GateConfig, audio_problems, pair_ids
from model.metrics.stats import mean_ci, off_diagonal_mean


def _stats(mu, sigma, n=100):
    return GaussianStats(np.asarray(mu, float), np.asarray(sigma, float), n)


def _spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


# ------------------------------------------------------------------------------------------ FD


def test_fd_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    s = _spd(rng, 8)
    assert frechet_distance(_stats(np.ones(8), s), _stats(np.ones(8), s)) == pytest.approx(0.0, abs=1e-9)


def test_fd_of_a_shift_is_its_squared_norm():
    rng = np.random.default_rng(1)
    s, c = _spd(rng, 6), rng.standard_normal(6)
    mu = rng.standard_normal(6)
    assert frechet_distance(_stats(mu, s), _stats(mu + c, s)) == pytest.approx(float(c @ c), rel=1e-9)


def test_fd_diagonal_covariances_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
    m1, m2 = rng.standard_normal(10), rng.standard_normal(10)
    expected = float(((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(_stats(m1, np.diag(a)), _stats(m2, np.diag(b))) == pytest.approx(expected, rel=1e-9)


def test_fd_agrees_with_direct_sqrtm_on_well_conditioned_matrices():
    rng = np.random.default_rng(3)
    for d in (2, 16, 64):
        s1, s2 = _spd(rng, d), _spd(rng, d)
        m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
        covmean = scipy.linalg.sqrtm(s1 @ s2).real
        direct = float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
        assert frechet_distance(_stats(m1, s1), _stats(m2, s2)) == pytest.approx(direct, rel=1e-7)
        root = sqrtm_psd(s1)
        np.testing.assert_allclose(root @ root, s1, atol=1e-10)


def test_fd_refuses_fewer_than_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        fd_from_embeddings(np.zeros((1, 4)), np.ones((5, 4)))


def test_fd_in_the_span_of_the_rows_is_exact():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((12, 40)), rng.standard_normal((9, 40)) + 0.3
    pa, pb = project_to_span(a, b)
    assert pa.shape[1] <= 21
    assert fd_from_embeddings(pa, pb) == pytest.approx(fd_from_embeddings(a, b), rel=1e-6)


def test_small_n_warns_and_the_split_half_floor_shows_the_bias():
    """Two samples of one 64-d Gaussian: FD ≈ 44 at n = 50 and ≈ 0.4 at n = 5000 (bias ~ d²/n)."""
    rng = np.random.default_rng(5)
    d = 64
    small = fd_from_embeddings(rng.standard_normal((50, d)), rng.standard_normal((50, d)))
    large = fd_from_embeddings(rng.standard_normal((5000, d)), rng.standard_normal((5000, d)))
    assert 30 < small < 60 and 0.2 < large < 0.7
    assert "split-half" in sample_size_warning(50, d)
    assert sample_size_warning(5000, d) is None
    floor = split_half_fd(rng.standard_normal((100, d)), seed=0)
    assert floor > 30  # halves of 50: the same bias as two independent samples of 50


# ------------------------------------------------------------------------------------------ KL


def test_kl_of_a_distribution_with_itself_is_zero():
    logits = np.random.default_rng(6).standard_normal((5, 527))
    np.testing.assert_allclose(kl_per_pair(logits, logits), 0.0, atol=1e-12)


def test_kl_hand_value():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # 0.5108…
    got = kl_per_pair(np.log(p)[None], np.log(q)[None])[0]
    assert got == pytest.approx(expected, rel=1e-12)
    assert kl_per_pair(np.log(q)[None], np.log(p)[None])[0] != pytest.approx(expected)  # not symmetric


def test_kl_ignores_a_constant_added_to_the_logits():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((4, 10)), rng.standard_normal((4, 10))
    np.testing.assert_allclose(kl_per_pair(a + 100.0, b - 7.5), kl_per_pair(a, b), rtol=1e-10)


# ------------------------------------------------------------------------------------ cosine, stats


def test_cosine_runs_along_the_embedding_axis():
    a = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    b = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(cosine_per_pair(a, b), [1.0, 0.0])
    np.testing.assert_allclose(np.diag(cosine_matrix(a, b)), cosine_per_pair(a, b))
    with pytest.raises(ValueError, match="zero"):
        cosine_per_pair(np.zeros((1, 3)), b[:1])


def test_shuffled_baseline_is_the_off_diagonal_mean():
    m = np.array([[1.0, 0.2, 0.4], [0.0, 1.0, 0.6], [0.8, 1.0, 1.0]])
    assert off_diagonal_mean(m) == pytest.approx(3.0 / 6)


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    values = np.random.default_rng(8).normal(0.3, 0.1, 200)
    a, b = mean_ci(values, seed=3), mean_ci(values, seed=3)
    assert a == b and a.low < values.mean() < a.high and a.high - a.low < 0.05
    assert mean_ci(values[:1]) is None


# ------------------------------------------------------------------------------------------- gate


def test_gate_lists_silent_nan_clipped_short_and_low_rate_audio():
    sr = 16000
    rng = np.random.default_rng(9)
    ok = (0.1 * rng.standard_normal((2, sr * 2))).astype(np.float32)
    assert audio_problems(ok, sr) == []
    assert "silent" in audio_problems(np.zeros((1, sr * 2), np.float32), sr)[0]
    nan = ok.copy()
    nan[0, 100] = np.nan
    assert "NaN" in audio_problems(nan, sr)[0]
    assert any("clipped" in p for p in audio_problems(np.clip(ok * 100, -1, 1), sr))
    assert any("too short" in p for p in audio_problems(ok[:, : sr // 4], sr))
    assert any("sample rate" in p for p in audio_problems(ok, 8000, GateConfig(min_duration_s=0.5)))


def test_gate_refuses_music_not_as_long_as_its_video():
    from model.metrics.gate import duration_mismatch

    assert duration_mismatch(60.0, 60.0) is None and duration_mismatch(59.0, 60.0) is None  # within 1 s
    assert "4.00 s of music for a 60.00 s video" in duration_mismatch(4.0, 60.0)
    assert duration_mismatch(61.5, 60.0) is not None  # longer music is not this video's either
    assert duration_mismatch(4.0, 60.0, GateConfig(max_video_mismatch_s=60.0)) is None
    with pytest.raises(ValueError, match="max_video_mismatch_s"):
        GateConfig(max_video_mismatch_s=0)


def test_pairing_lists_unpaired_and_ambiguous_ids():
    gen = {"a": ["a.wav"], "b": ["b.wav"], "c": ["c.wav", "c.flac"], "d": ["d.wav"]}
    ref = {"a": ["a.flac"], "b": ["b.mp3"], "c": ["c.wav"], "e": ["e.wav"]}
    vids = {"a": ["a.mp4"], "c": ["c.mp4"], "d": ["d.mp4"], "e": ["e.mp4"]}
    paired, excluded = pair_ids(gen, ref, vids)
    assert paired == ["a"]  # x.wav and x.flac pair across folders
    reasons = {(e.clip_id, e.role): e.reason for e in excluded}
    assert "no video" in reasons[("b", "generated")]
    assert "ambiguous" in reasons[("c", "generated")]
    assert "no reference" in reasons[("d", "generated")]
    assert "no generated" in reasons[("e", "reference")]


# ----------------------------------------------------------------------------------------- audio


def test_fixed_windows_drop_the_tail_and_repeatpad_short_clips():
    x = np.arange(1, 26, dtype=np.float32)  # 25 samples
    np.testing.assert_array_equal(fixed_windows(x, 10), [x[:10], x[10:20]])
    short = fixed_windows(x[:4], 10)  # repeated twice (8 samples), then zeros: laion_clap's repeatpad
    np.testing.assert_array_equal(short, [[1, 2, 3, 4, 1, 2, 3, 4, 0, 0]])


def test_mono_and_resampling():
    stereo = np.stack([np.ones(100, np.float32), -np.ones(100, np.float32) * 0.5])
    np.testing.assert_allclose(to_mono(stereo), 0.25)
    tone = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32)
    down = resample(tone, 48000, 16000)
    assert down.shape == (16000,) and np.abs(down[100:-100]).max() == pytest.approx(1.0, abs=0.01)
    np.testing.assert_array_equal(resample(tone, 16000, 16000), tone)
