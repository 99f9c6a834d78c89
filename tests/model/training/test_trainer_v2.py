"""Trainer v2 on the debug model: gradient accumulation equals the larger batch, a batch whose CFG dropout
drops every row is no update, EMA weights swap in and out, a resume names the fields that differ."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate
from training_helpers import write_store

from dvmset.dataset import FeatureWindows
from model.training.checkpoint import CheckpointError
from model.training.config import TrainConfig
from model.training.state import frozen_fingerprint, restore_training, save_training
from model.training.step import cfg_keep_all, cfg_seed, new_state, train_step


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("features") / "features")


@pytest.fixture
def batch4(store):
    """One fixed batch of four 2 s windows, collated as the DataLoader does."""
    ds = FeatureWindows(store, split="train", window_s=2, offset_s=0)
    return default_collate([ds[i] for i in range(4)])


def _weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.trainable_state().items()}


def test_accumulate_2_of_batch_2_equals_batch_4(batch4, make_model):
    """Same rows, same CFG-dropout draw, same gradient: losses, grad norms and weights agree to float
    tolerance over steps with dropped rows (cfg_dropout 0.5) and with gradient clipping active."""
    runs = {}
    for name, cfg in {"big": TrainConfig.debug(batch_size=4, cfg_dropout=0.5, warmup_steps=0, grad_clip=0.5),
                      "acc": TrainConfig.debug(batch_size=2, accumulate=2, cfg_dropout=0.5, warmup_steps=0,
                                               grad_clip=0.5)}.items():
        assert cfg.update_batch == 4
        state = new_state(make_model(), cfg)
        results = [train_step(state, batch4) for _ in range(4)]
        runs[name] = (results, _weights(state.model), state)
    (big, w_big, s_big), (acc, w_acc, s_acc) = runs["big"], runs["acc"]
    assert [r.skipped for r in big] == [r.skipped for r in acc]
    for a, b in zip(big, acc, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-5)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-4)  # summed halves, not twice the gradient
        assert b.per_codebook == pytest.approx(a.per_codebook, rel=1e-5)
    assert any(r.grad_norm > 0.5 for r in big)  # clipping mattered on some step
    for name in w_big:
        torch.testing.assert_close(w_acc[name], w_big[name], rtol=1e-4, atol=1e-6, msg=name)
    assert any(not torch.equal(w_big[n], _weights(make_model())[n]) for n in w_big)  # the runs did train
    assert s_big.scheduler.last_epoch == s_acc.scheduler.last_epoch


def test_accumulate_refuses_rows_that_do_not_split(batch4, make_model):
    state = new_state(make_model(), TrainConfig.debug(batch_size=1, accumulate=3))
    with pytest.raises(ValueError, match="a batch of 4 rows for an update of 3 rows"):
        train_step(state, batch4)
    with pytest.raises(ValueError, match="accumulate"):
        TrainConfig.debug(accumulate=0)


def test_a_batch_with_every_row_dropped_is_not_an_update(batch4, make_model):
    """seed 2, p 0.5, 2 rows: steps 1 and 3 drop both rows (replayed from the generator below). Those steps
    leave the weights, AdamW's moments, the warm-up and the EMA as they were, and are counted."""
    cfg = TrainConfig.debug(batch_size=2, cfg_dropout=0.5, warmup_steps=0, seed=2, ema_decay=0.9)
    g = torch.Generator().manual_seed(cfg_seed(cfg.seed, cfg.stage))
    dropped = [not cfg_keep_all(g, 2, 0.5).any() for _ in range(4)]
    assert dropped == [True, False, True, False]
    batch = {k: v[:2] for k, v in batch4.items()}
    state = new_state(make_model(), cfg)
    for i, all_dropped in enumerate(dropped):
        before, shadow = _weights(state.model), {n: t.clone() for n, t in state.ema.shadow.items()}
        updates, moments = state.scheduler.last_epoch, len(state.optimizer.state)
        res = train_step(state, batch)
        changed = any(not torch.equal(before[n], p) for n, p in state.model.trainable_state().items())
        if all_dropped:
            assert res.skipped == "uncond" and not changed
            assert state.scheduler.last_epoch == updates and len(state.optimizer.state) == moments
            assert all(torch.equal(shadow[n], t) for n, t in state.ema.shadow.items())
        else:
            assert res.skipped is None and changed and state.scheduler.last_epoch == updates + 1, i
    assert (state.step, state.skipped_uncond) == (4, 2)


def test_ema_applied_swaps_the_average_in_and_the_trained_weights_back(batch4, make_model):
    state = new_state(make_model(), TrainConfig.debug(batch_size=4, warmup_steps=0, ema_decay=0.5, cfg_dropout=0.0))
    for _ in range(3):
        train_step(state, batch4)
    trained = _weights(state.model)
    assert any(not torch.equal(trained[n], state.ema.shadow[n]) for n in trained)
    with state.ema.applied(state.model):
        assert all(torch.equal(p, state.ema.shadow[n]) for n, p in state.model.trainable_state().items())
    assert all(torch.equal(p, trained[n]) for n, p in state.model.trainable_state().items())


def test_a_resume_with_other_options_names_the_fields(tmp_path, make_model):
    cfg = TrainConfig.debug(stage=1)
    a = new_state(make_model(), cfg)
    path = save_training(a, tmp_path / "ckpt.pt", frozen_fingerprint(a.model))
    other = TrainConfig.debug(stage=1, lr=5e-4, accumulate=2, steps=99)
    with pytest.raises(CheckpointError) as err:
        restore_training(new_state(make_model(), other), path, frozen_fingerprint(a.model))
    text = str(err.value)
    assert "accumulate: 1 -> 2" in text and "lr: 0.001 -> 0.0005" in text
    assert "steps" not in text.split("(saved")[0] and "TrainConfig(" not in text  # no two whole configs
    restore_training(new_state(make_model(), TrainConfig.debug(stage=1, steps=99)), path, frozen_fingerprint(a.model))


def test_memory_options_halve_the_frozen_lm_and_keep_the_trained_weights_fp32(tmp_path, make_model):
    """--frozen-dtype bf16 (GPU only; the cast itself is device-independent) and --activation-checkpointing."""
    from flows.training.run import TrainRun
    from flows.training.train import _memory_options

    model = make_model()
    trained = {id(p) for p in model.trainable_state().values()}
    frozen = [p for p in model.lm.parameters() if id(p) not in trained]
    before = sum(p.numel() * p.element_size() for p in frozen)
    run = TrainRun(data=tmp_path, out=tmp_path / "run", device="cuda", activation_checkpointing=True,
                   recipe=TrainConfig.debug(frozen_dtype="bf16", precision="bf16"))
    _memory_options(run, model)
    assert all(p.dtype == torch.bfloat16 for p in frozen)
    assert sum(p.numel() * p.element_size() for p in frozen) * 2 == before
    assert all(p.dtype == torch.float32 for p in model.trainable_state().values())
    assert model.lm.transformer.checkpointing == "torch"
    with pytest.raises(ValueError, match="--frozen-dtype bf16 needs a GPU"):
        TrainRun(data=tmp_path, out=tmp_path / "run", recipe=TrainConfig.debug(frozen_dtype="bf16"))
    with pytest.raises(ValueError, match="needs autocast: pass --precision bf16 or fp16"):
        TrainRun(data=tmp_path, out=tmp_path / "run", device="cuda", recipe=TrainConfig.debug(frozen_dtype="bf16"))
