"""The prompt input of streaming generation: audiocraft's own semantics, exact logits, bad prompts refused."""

from __future__ import annotations

import contextlib

import pytest
import torch
from audiocraft.modules.conditioners import ConditioningAttributes

from model.generation import FixedConditions, SamplingParams

GREEDY = SamplingParams(use_sampling=False, cfg_coef=3.0)


@contextlib.contextmanager
def audiocraft_conditions(model, global_feats: torch.Tensor):
    """Our semantic condition (conditional rows, then null rows) served to audiocraft's generate."""
    B = global_feats.shape[0]
    keep = torch.cat([torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)])
    with torch.no_grad():
        tensors = model.condition_tensors(torch.cat([global_feats, global_feats]), keep)
    original = model.lm.condition_provider
    model.lm.condition_provider = FixedConditions(tensors)
    try:
        yield [ConditioningAttributes() for _ in range(B)]
    finally:
        model.lm.condition_provider = original


@pytest.fixture
def semantic_trained(make_model, perturb):
    model = make_model()  # rhythm at its zero init: F_R = 0, the hooks add nothing
    perturb(model.semantic.embedding_manager, seed=5)
    return model.eval()


@pytest.mark.parametrize("n_prompt", [0, 7])
def test_greedy_generation_with_a_prompt_equals_audiocrafts_lm_generate(semantic_trained, inputs, n_prompt):
    model = semantic_trained
    g, r = inputs["global_feats"], inputs["rhythm"]
    n_frames = 20
    prompt = inputs["codes"][..., :n_prompt] if n_prompt else None
    ours = model.generate_codes(g, r, n_frames / 50, GREEDY, seed=0, prompt=prompt)
    with audiocraft_conditions(model, g) as attrs, torch.no_grad():
        theirs = model.lm.generate(prompt, attrs, num_samples=g.shape[0], max_gen_len=n_frames,
                                   use_sampling=False, cfg_coef=3.0, two_step_cfg=False)
    assert torch.equal(ours, theirs)
    if prompt is not None:
        assert torch.equal(ours[..., :n_prompt], prompt)


def test_logits_after_a_prompt_equal_teacher_forcing_with_rhythm(make_model, perturb, inputs):
    """With a prompt fed in one call, every later step's logits equal a full forward on the final sequence,
    with the rhythm of each frame (the streaming offsets after the prompt pick the right slice)."""
    model = make_model()
    perturb(model.rhythm, scale=2.0)
    perturb(model.semantic.embedding_manager, seed=5)
    model.eval()
    g, r = inputs["global_feats"], inputs["rhythm"]
    n_frames, n_prompt = 20, 6
    steps: dict[int, torch.Tensor] = {}
    codes = model.generate_codes(g, r, n_frames / 50, SamplingParams(top_k=20, cfg_coef=1.0), seed=0,
                                 on_step=lambda pos, lg, _: steps.__setitem__(pos, lg.clone()),
                                 prompt=inputs["codes"][..., :n_prompt])
    assert torch.equal(codes[..., :n_prompt], inputs["codes"][..., :n_prompt])
    pattern = model.lm.pattern_provider.get_pattern(n_frames)
    seq, _, _ = pattern.build_pattern_sequence(codes, model.lm.special_token_id)
    with torch.no_grad():
        full = model.sequence_logits(g, r, seq[..., :-1], n_frames)  # [B, K, S-1, card]
    first = pattern.get_first_step_with_timesteps(n_prompt)
    assert sorted(steps) == list(range(first - 1, full.shape[2]))  # the prompt call reports its last position
    for pos, logits in steps.items():
        torch.testing.assert_close(logits, full[:, :, pos], rtol=1e-4, atol=1e-4, msg=f"position {pos}")


def test_bad_prompts_are_refused(semantic_trained, inputs):
    g, r, codes = inputs["global_feats"], inputs["rhythm"], inputs["codes"]
    with pytest.raises(ValueError, match="shorter"):
        semantic_trained.generate_codes(g, r, 0.2, GREEDY, prompt=codes[..., :10])
    with pytest.raises(ValueError, match=r"\[B=2, K=4, P\]"):
        semantic_trained.generate_codes(g, r, 0.2, GREEDY, prompt=codes[:1, :, :3])
    with pytest.raises(ValueError, match="integer codes"):
        semantic_trained.generate_codes(g, r, 0.2, GREEDY, prompt=codes[..., :3] + 2048)
