"""Invariant 1: a freshly initialised rhythm module (zero O, identity L_j) changes nothing, exactly."""

from __future__ import annotations

import torch

from model.generation import SamplingParams


def test_teacher_forcing_logits_equal_model_without_rhythm(inputs, make_model, exactly_equal):
    with_rhythm, without = make_model(), make_model(enabled=False)
    assert with_rhythm.rhythm is not None and without.rhythm is None
    with torch.no_grad():
        a = with_rhythm(**inputs).logits
        b = without(**inputs).logits
        # and equal to the bare frozen LM fed the same semantic condition, no hooks involved
        conds = without.condition_tensors(inputs["global_feats"])
        c = without.lm.compute_predictions(inputs["codes"], [], condition_tensors=conds).logits
    assert exactly_equal(a, b)
    assert exactly_equal(b, c)


def test_generation_with_fixed_seed_equal_model_without_rhythm(inputs, make_model):
    with_rhythm, without = make_model().eval(), make_model(enabled=False).eval()
    steps_a: list[torch.Tensor] = []
    steps_b: list[torch.Tensor] = []
    params = SamplingParams(top_k=50, cfg_coef=3.0)
    g, r = inputs["global_feats"], inputs["rhythm"]
    codes_a = with_rhythm.generate_codes(g, r, 0.3, params, seed=7, on_step=lambda s, lg, _: steps_a.append(lg))
    codes_b = without.generate_codes(g, r, 0.3, params, seed=7, on_step=lambda s, lg, _: steps_b.append(lg))
    assert torch.equal(codes_a, codes_b)
    assert all(torch.equal(x, y) for x, y in zip(steps_a, steps_b, strict=True))


def test_a_trained_rhythm_module_does_change_logits(inputs, make_model, perturb):
    """The control: the equality above is not vacuous (the hooks really reach the LM)."""
    model, base = make_model(), make_model(enabled=False)
    perturb(model.rhythm)
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).logits, base(**inputs).logits)
        # a model that ignores the rhythm input would give equal logits for a different rhythm
        other = dict(inputs, rhythm=torch.roll(inputs["rhythm"], 1, dims=1))
        assert not torch.allclose(model(**inputs).logits, model(**other).logits)


def test_cfg_dropout_rows_see_neither_condition(inputs, make_model, perturb, exactly_equal):
    """keep=False in teacher forcing (CFG dropout) gives a row the null semantics and F_R = 0, as the
    unconditional half sees in generation."""
    model, base = make_model(), make_model(enabled=False)
    perturb(model.rhythm)
    perturb(model.semantic.embedding_manager)
    keep = torch.tensor([True, False])
    with torch.no_grad():
        dropped = model(**inputs, keep=keep).logits[1]
        ref = base(**inputs, keep=torch.tensor([False, False])).logits[1]
        kept = model(**inputs, keep=keep).logits[0]
        full = model(**inputs).logits[0]
    assert exactly_equal(dropped, ref)
    assert exactly_equal(kept, full)
