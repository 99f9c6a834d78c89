"""Invariant 4: streaming generation's logits at each step equal a full teacher-forced forward on the same
prefix, with the rhythm signal applied (the streaming offsets select the right rhythm frames)."""

from __future__ import annotations

import pytest
import torch

from model.generation import SamplingParams

DURATION_S = 0.4  # 20 frames -> 23 streaming steps


@pytest.fixture
def trained_like(make_model, perturb):
    model = make_model()
    perturb(model.rhythm, scale=2.0)  # a rhythm module far from identity, so every offset matters
    perturb(model.semantic.embedding_manager, seed=5)
    return model.eval()


def _stream(model, inputs, cfg_coef):
    steps: dict[int, torch.Tensor] = {}
    codes = model.generate_codes(inputs["global_feats"], inputs["rhythm"], DURATION_S,
                                 SamplingParams(top_k=20, cfg_coef=cfg_coef), seed=0,
                                 on_step=lambda pos, lg, _: steps.__setitem__(pos, lg.clone()))
    return codes, steps


def _teacher(model, inputs, codes, rhythm):
    n_frames = codes.shape[-1]
    pattern = model.lm.pattern_provider.get_pattern(n_frames)
    seq, _, _ = pattern.build_pattern_sequence(codes, model.lm.special_token_id)  # [B, K, S]
    with torch.no_grad():
        return model.sequence_logits(inputs["global_feats"], rhythm, seq[..., :-1], n_frames)  # [B, K, S-1, card]


@pytest.mark.parametrize("cfg_coef", [1.0, 3.0])
def test_streaming_logits_equal_teacher_forcing(trained_like, inputs, cfg_coef):
    codes, steps = _stream(trained_like, inputs, cfg_coef)
    assert codes.shape == (2, 4, 20)
    full = _teacher(trained_like, inputs, codes, inputs["rhythm"])
    assert sorted(steps) == list(range(full.shape[2]))
    for pos, logits in steps.items():
        torch.testing.assert_close(logits, full[:, :, pos], rtol=1e-4, atol=1e-4, msg=f"position {pos}")


def test_a_one_frame_rhythm_shift_is_detected(trained_like, inputs):
    """Control: had the streaming offsets been off by one frame, the comparison above would fail."""
    codes, steps = _stream(trained_like, inputs, 1.0)
    shifted = torch.roll(inputs["rhythm"], 1, dims=1)
    full = _teacher(trained_like, inputs, codes, shifted)
    mismatched = [p for p, lg in steps.items() if not torch.allclose(lg, full[:, :, p], rtol=1e-4, atol=1e-4)]
    assert len(mismatched) >= len(steps) // 2


def test_unconditional_half_gets_null_semantics_and_zero_rhythm(trained_like, inputs):
    """CFG's unconditional rows must equal the bare LM with the null condition and no rhythm at all."""
    uncond: dict[int, torch.Tensor] = {}
    codes = trained_like.generate_codes(inputs["global_feats"], inputs["rhythm"], DURATION_S,
                                        SamplingParams(top_k=20, cfg_coef=3.0), seed=0,
                                        on_step=lambda pos, _, un: uncond.__setitem__(pos, un.clone()))
    pattern = trained_like.lm.pattern_provider.get_pattern(codes.shape[-1])
    seq, _, _ = pattern.build_pattern_sequence(codes, trained_like.lm.special_token_id)
    keep = torch.zeros(codes.shape[0], dtype=torch.bool)
    with torch.no_grad():
        null = trained_like.condition_tensors(inputs["global_feats"], keep)
        assert torch.equal(null["description"][0], torch.zeros_like(null["description"][0]))
        full = trained_like.lm(seq[..., :-1], [], condition_tensors=null)  # no rhythm fed: hooks inactive
    for pos, logits in uncond.items():
        torch.testing.assert_close(logits, full[:, :, pos], rtol=1e-4, atol=1e-4, msg=f"position {pos}")
