"""Invariant 2: one backward pass gives gradients to exactly the trainable set; the backbone gets none."""

from __future__ import annotations

import pytest
import torch


def _backward(model, inputs):
    model.train()
    loss, per_k = model.loss(**inputs)
    assert per_k.shape == (4,) and torch.isfinite(loss)
    loss.backward()


def _with_grad(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.grad is not None}


def test_vidmusician_trainable_set_gets_exactly_the_gradients(inputs, make_model):
    model = make_model()
    _backward(model, inputs)
    expected = set(model.trainable_state())
    assert _with_grad(model) == expected
    assert {n.split(".")[0] for n in expected} == {"semantic", "rhythm"}
    prefixes = ("semantic.embedding_manager.", "semantic.output_proj.", "rhythm.proj.", "rhythm.chain.")
    others = {n for n in expected if not n.startswith(prefixes)}
    assert others and all(".lora_A." in n or ".lora_B." in n for n in others)
    assert all(p.grad is None for p in model.lm.parameters())
    assert all(p.grad is None for p in model.codec.parameters())
    base_t5 = [p for n, p in model.semantic.t5.named_parameters() if "lora_" not in n]
    assert base_t5 and all(p.grad is None for p in base_t5)


def test_identity_init_lets_gradient_reach_the_zero_projector(inputs, make_model):
    """Zero O behind identity L_j still gets a gradient (a chain of zero-init layers would not)."""
    model = make_model()
    _backward(model, inputs)
    assert model.rhythm.proj.weight.grad.abs().sum() > 0
    assert model.rhythm.chain[0].bias.grad.abs().sum() > 0
    lora_b = [p for n, p in model.semantic.t5.named_parameters() if "lora_B" in n]
    assert any(p.grad.abs().sum() > 0 for p in lora_b)


def test_musicongen_style_trains_first_self_attention_of_each_block(inputs, make_model):
    model = make_model(style="musicongen")
    _backward(model, inputs)
    got = _with_grad(model)
    assert got == set(model.trainable_state())
    attn = {n for n in got if n.startswith("lm.")}
    n_blocks = model.config.rhythm.conditioned_blocks(16)  # debug backbone: 16 layers -> 4 blocks -> 3
    layers = {int(n.split(".")[3]) for n in attn}
    assert layers == {4 * j for j in range(n_blocks)} and all(".self_attn." in n for n in attn)
    assert not hasattr(model.rhythm, "chain") or len(model.rhythm.chain) == 0


@pytest.mark.parametrize("stage", [1, 2])
def test_stage_one_trains_semantic_only(inputs, make_model, stage):
    model = make_model()
    model.set_stage(stage)
    _backward(model, inputs)
    has_rhythm = any(n.startswith("rhythm.") for n in _with_grad(model))
    assert has_rhythm == (stage == 2)
    assert any(n.startswith("semantic.") for n in _with_grad(model))


def test_from_scratch_trains_the_whole_t5(inputs, make_model):
    model = make_model()
    model = type(model).from_config(model.config.with_semantic(from_scratch=True), seed=0)
    _backward(model, inputs)
    t5 = {n for n, _ in model.semantic.t5.named_parameters()}
    assert not any("lora_" in n for n in t5)
    assert {f"semantic.t5.{n}" for n in t5} - {"semantic.t5.shared.weight"} <= _with_grad(model)
