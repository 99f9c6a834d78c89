"""Eq. 4 and Algorithm 1 pinned on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.rhythm import distance_sequence, frame_similarity, pairwise_similarity, rhythm_from_tokens


def test_algorithm1_exact_interleaving_and_length():
    sim = np.array([0.9, 0.5, 1.0])  # 4 frames -> 3 similarities
    d = distance_sequence(sim)
    # prepend 1 -> [1, .9, .5, 1]; 1 - s -> [0, .1, .5, 0]; [x, 0] per frame
    np.testing.assert_allclose(d, [0.0, 0.0, 0.1, 0.0, 0.5, 0.0, 0.0, 0.0], atol=1e-7)
    assert d.dtype == np.float32


def test_algorithm1_matches_paper_pseudocode_literally():
    rng = np.random.default_rng(0)
    sim = rng.uniform(-1, 1, 1499)
    s = [1.0] + list(sim)
    dis = [1 - x for x in s]
    d_ref = sum(([i, 0] for i in dis), [])
    d = distance_sequence(sim)
    assert d.shape == (3000,)  # 1500 frames at 25 fps -> 60 s at 50 Hz
    np.testing.assert_allclose(d, np.array(d_ref, dtype=np.float32), atol=1e-6)


def test_identical_frames_have_zero_distance():
    tokens = torch.randn(1, 7, 16).repeat(5, 1, 1)  # 5 identical frames [N, K, C]
    d = rhythm_from_tokens(tokens)
    assert d.shape == (10,)
    np.testing.assert_allclose(d, 0.0, atol=1e-6)


def test_eq4_known_value_is_mean_over_patches():
    # frame a: patches e1, e1; frame b: patches e1 (cos 1), e2 (cos 0) -> mean 0.5
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])
    a = torch.stack([e1, e1])[None]  # [1, K=2, C=2]
    b = torch.stack([2 * e1, e2])[None]
    assert pairwise_similarity(a, b).item() == pytest.approx(0.5)
    # opposite patches: cos -1 -> distance 2
    d = rhythm_from_tokens(torch.cat([a, -a]))
    np.testing.assert_allclose(d, [0.0, 0.0, 2.0, 0.0], atol=1e-6)


def test_eq4_pairs_each_patch_with_the_same_patch_only():
    # swapping two patches between frames changes every per-patch cosine although the set is equal
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [1, 2, 2]
    y = x[:, [1, 0]]
    assert frame_similarity(torch.cat([x, y])).item() == pytest.approx(0.0)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        distance_sequence(np.zeros((2, 2)))
    with pytest.raises(ValueError):
        pairwise_similarity(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
