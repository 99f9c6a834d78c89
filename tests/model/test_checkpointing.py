"""Activation checkpointing (audiocraft's `transformer.checkpointing = "torch"`) with the rhythm hooks on:
the layers' recomputation in backward adds the same F_Rj, so outputs and every trainable gradient are those
of the run without checkpointing (stage 2, a rhythm module moved away from its zero initialisation)."""

from __future__ import annotations

import pytest
import torch


def _grads(model, batches, keep):
    """Sum of the losses of `batches` (several forwards, one backward) -> {name: grad} of the trainables."""
    model.zero_grad(set_to_none=True)
    total = sum(model.loss(**b, keep=keep)[0] for b in batches)
    total.backward()
    return total.detach(), {n: None if p.grad is None else p.grad.clone() for n, p in model.trainable_state().items()}


def _trained_like(make_model, perturb, style):
    model = make_model(style=style).train()
    model.set_stage(2)
    perturb(model.rhythm)  # O is zero-initialised: without this the rhythm path would contribute nothing
    perturb(model.semantic, scale=0.1, seed=4)  # LoRA's B too, so LoRA's A gets gradients
    for mod in model._attn_trained:
        perturb(mod, scale=0.1, seed=5)
    return model


@pytest.mark.parametrize("style", ["vidmusician", "musicongen"])
def test_gradients_with_checkpointing_equal_those_without(make_model, perturb, inputs, style):
    model = _trained_like(make_model, perturb, style)
    keep = torch.tensor([True, False])  # one conditional row, one CFG-dropped row (F_Rj = 0 there)
    second = {k: v.flip(0) for k, v in inputs.items()}
    assert model.lm.transformer.checkpointing == "none"
    loss_plain, plain = _grads(model, [inputs, second], keep)

    model.lm.transformer.checkpointing = "torch"
    loss_ckpt, ckpt = _grads(model, [inputs, second], keep)

    torch.testing.assert_close(loss_ckpt, loss_plain, rtol=0, atol=0)
    assert set(plain) == set(ckpt) and plain
    rhythm_names = [n for n in plain if n.startswith("rhythm.") or ".self_attn." in n]
    assert rhythm_names, "the rhythm module must be among the trainables in stage 2"
    for name in plain:
        assert plain[name] is not None and ckpt[name] is not None, f"{name}: no gradient"
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)
    assert all(plain[n].abs().sum() > 0 for n in rhythm_names), "the rhythm path must matter for this test"


def test_outputs_with_checkpointing_are_unchanged(make_model, perturb, inputs, exactly_equal):
    model = _trained_like(make_model, perturb, "vidmusician")
    keep = torch.tensor([True, False])
    out_plain = model(**inputs, keep=keep)
    model.lm.transformer.checkpointing = "torch"
    out_ckpt = model(**inputs, keep=keep)
    assert exactly_equal(out_ckpt.logits.detach(), out_plain.logits.detach())
    assert torch.equal(out_ckpt.mask, out_plain.mask)
    with torch.no_grad():  # the rhythm really is in these logits: without it they differ
        out_none = model(inputs["global_feats"], torch.zeros_like(inputs["rhythm"]), inputs["codes"], keep=keep)
    assert not exactly_equal(out_none.logits, out_plain.logits.detach())


def test_hooks_leave_a_call_outside_feeding_untouched(make_model, perturb, inputs, exactly_equal):
    """After a fed (checkpointed) forward and its backward, a plain LM call is the frozen MusicGen's."""
    model = _trained_like(make_model, perturb, "vidmusician")
    model.lm.transformer.checkpointing = "torch"
    conds = model.condition_tensors(inputs["global_feats"])
    with torch.no_grad():
        before = model.lm.compute_predictions(inputs["codes"], [], condition_tensors=conds).logits
    model.loss(**inputs)[0].backward()
    with torch.no_grad():
        after = model.lm.compute_predictions(inputs["codes"], [], condition_tensors=conds).logits
    assert exactly_equal(before, after)
