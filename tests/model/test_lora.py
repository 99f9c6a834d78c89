"""Invariant 3: LoRA really trains - one optimizer step changes T5's output."""

from __future__ import annotations

import torch


def _t5_out(model, feats):
    with torch.no_grad():
        emb = model.semantic.embedding_manager(feats)
        return model.semantic.t5(inputs_embeds=emb).last_hidden_state


def test_one_step_changes_t5_output(inputs, make_model):
    model = make_model()
    before_base = {n: p.clone() for n, p in model.semantic.t5.named_parameters() if "lora_" not in n}
    out0 = _t5_out(model, inputs["global_feats"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    loss, _ = model.loss(**inputs)
    loss.backward()
    opt.step()
    out1 = _t5_out(model, inputs["global_feats"])
    assert not torch.allclose(out0, out1)
    # the change came from the adapters: T5's own weights are untouched
    for n, p in model.semantic.t5.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, before_base[n]), n


def test_lora_starts_as_identity(inputs, make_model):
    model = make_model()
    from model.semantic import build_t5_encoder

    plain = build_t5_encoder("debug", load_weights=False, seed=0).eval()
    emb = model.semantic.embedding_manager(inputs["global_feats"]).detach()
    with torch.no_grad():
        a = model.semantic.t5(inputs_embeds=emb).last_hidden_state
        b = plain(inputs_embeds=emb).last_hidden_state
    assert torch.equal(a, b)
