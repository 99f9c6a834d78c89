"""Checkpoints hold only the trainable weights, name their backbone and config, and restore exactly."""

from __future__ import annotations

import pytest
import torch

from model.training.checkpoint import (
    CheckpointError,
    load_model,
    load_trainable,
    read_checkpoint,
    save_trainable,
)


def test_round_trip_restores_logits_and_holds_only_trainable(tmp_path, make_model, perturb, inputs):
    trained = make_model()
    perturb(trained.rhythm)
    perturb(trained.semantic.embedding_manager)
    for n, p in trained.semantic.t5.named_parameters():
        if "lora_B" in n:
            perturb(torch.nn.ParameterList([p]))
    path = save_trainable(trained, tmp_path / "ckpt.pt", extra={"step": 7})

    config, pkg = read_checkpoint(path)
    assert config == trained.config and pkg["backbone"] == "debug"
    assert set(pkg["state"]) == set(trained.trainable_state())
    assert not any(k.startswith(("lm.", "codec.")) for k in pkg["state"])
    assert not any(k.startswith("semantic.t5.") and "lora_" not in k for k in pkg["state"])

    fresh = make_model()
    assert load_trainable(fresh, path) == {"step": 7}
    rebuilt = load_model(path)
    with torch.no_grad():
        ref = trained.eval()(**inputs).logits
        for other in (fresh.eval(), rebuilt):
            out = other(**inputs).logits
            assert torch.equal(ref.nan_to_num(), out.nan_to_num())


def test_config_mismatch_is_refused(tmp_path, make_model):
    path = save_trainable(make_model(), tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="config differs"):
        load_trainable(make_model(style="musicongen"), path)
