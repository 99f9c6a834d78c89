"""Rhythm alignment with the delay pattern, Eq. 5 at initialisation, and the generation API."""

from __future__ import annotations

import pytest
import torch
from audiocraft.modules.codebooks_patterns import DelayedPatternProvider

from model.config import RhythmConfig
from model.generation import SamplingParams, sample_next
from model.rhythm import RhythmModule, align_to_pattern, frame_index_per_position


def test_position_s_gets_the_frame_whose_first_codebook_it_predicts():
    pattern = DelayedPatternProvider(n_q=4).get_pattern(6)  # S = 6 + 3 + 1 = 10 positions
    idx = frame_index_per_position(pattern)
    assert idx.tolist() == [0, 1, 2, 3, 4, 5, 5, 5, 5, -1]
    d = torch.arange(1.0, 7.0)[None]  # frames 0..5 carry 1..6
    assert align_to_pattern(d, pattern).tolist() == [[1, 2, 3, 4, 5, 6, 6, 6, 6, 0]]
    with pytest.raises(ValueError):
        align_to_pattern(torch.zeros(1, 5), pattern)


def test_fresh_rhythm_module_outputs_exact_zeros_and_chains():
    mod = RhythmModule(RhythmConfig(), dim=8, num_blocks=3)
    outs = mod(torch.rand(2, 5))
    assert len(outs) == 3 and all(torch.equal(o, torch.zeros(2, 5, 8)) for o in outs)
    assert all(torch.equal(lin.weight, torch.eye(8)) for lin in mod.chain)
    with torch.no_grad():
        mod.proj.weight.normal_()
        mod.chain[1].weight.mul_(2.0)
    d = torch.rand(2, 5)
    f1, f2, f3 = mod(d)
    o = d.unsqueeze(-1) * mod.proj.weight[:, 0]
    torch.testing.assert_close(f1, o)  # L_1 = identity
    torch.testing.assert_close(f2, 2 * o)  # F_R2 = L_2(F_R1)
    torch.testing.assert_close(f3, 2 * o)


def test_without_init_technique_the_module_is_not_identity():
    mod = RhythmModule(RhythmConfig(init_technique=False), dim=8, num_blocks=2)
    assert mod.proj.weight.abs().sum() > 0
    assert not torch.equal(mod.chain[0].weight, torch.eye(8))


def test_generate_audio_shape_seed_and_duration_limit(make_model, inputs):
    model = make_model().eval()
    g, r = inputs["global_feats"], inputs["rhythm"]
    a = model.generate(g, r, duration_s=0.1, seed=1)
    assert a.shape == (2, 1, 3200) and torch.isfinite(a).all()
    assert torch.equal(a, model.generate(g, r, duration_s=0.1, seed=1))
    codes_1 = model.generate_codes(g, r, 0.1, seed=1)
    codes_2 = model.generate_codes(g, r, 0.1, seed=2)
    assert not torch.equal(codes_1, codes_2)
    with pytest.raises(ValueError, match="duration_s"):
        model.generate(g, r, duration_s=31)
    with pytest.raises(RuntimeError, match="eval"):
        model.train().generate_codes(g, r, 0.1)


def test_sampling_respects_top_k_and_greedy():
    logits = torch.tensor([[[0.0, 5.0, 4.0, -1.0]]])
    gen = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, SamplingParams(top_k=2), gen)) for _ in range(200)}
    assert draws == {1, 2}
    assert int(sample_next(logits, SamplingParams(use_sampling=False), None)) == 1
    draws_p = {int(sample_next(logits, SamplingParams(top_p=0.5), gen)) for _ in range(100)}
    assert draws_p == {1}
