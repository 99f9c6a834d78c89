"""The training library on the debug model: overfit, stage 1 -> 2 hand-over, LR, clipping, CFG dropout,
non-finite steps, parameter groups, an in-process resume, and the data -> model seam."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import default_collate
from training_helpers import write_store

from dvmset.dataset import FeatureWindows
from model.training.checkpoint import load_model
from model.training.config import TrainConfig
from model.training.optim import param_groups
from model.training.state import frozen_fingerprint, restore_training, save_training
from model.training.step import NonFiniteLossError, cfg_keep, new_state, train_step


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("features") / "features")


@pytest.fixture
def batch(store):
    """One fixed FeatureWindows batch of two 2 s windows, collated as the DataLoader does."""
    ds = FeatureWindows(store, split="train", window_s=2, offset_s=0)
    return default_collate([ds[0], ds[1]])


def _trainable_copy(model):
    return {n: p.detach().clone() for n, p in model.trainable_state().items()}


def test_batch_goes_to_loss_unrenamed_and_spec_matches(store, batch, make_model):
    model = make_model()
    spec = FeatureWindows(store, window_s=2).spec()
    assert (spec.clip_dim, spec.codec, spec.token_rate, spec.n_codebooks) == (16, "tiny", 50, 4)
    loss, per_k = model.batch_loss(batch)
    ref, ref_k = model.loss(batch["global"], batch["rhythm"], batch["codes"])
    assert torch.equal(loss, ref) and torch.equal(per_k, ref_k) and per_k.shape == (4,)


@pytest.mark.slow
def test_overfit_then_stage2_starts_where_stage1_ended(batch, make_model):
    model = make_model()
    state = new_state(model, TrainConfig.debug(stage=1, lr=1e-2, cfg_dropout=0.0, warmup_steps=2))
    rhythm_before = {n: p.detach().clone() for n, p in model.rhythm.named_parameters()}
    losses = [train_step(state, batch).loss for _ in range(30)]
    # the frozen random LM starts worse than uniform (~8.1 nats); the semantic module alone brings it
    # clearly below uniform over 2048 codes (the codes use 8 tokens per clip)
    assert losses[-1] < losses[0] - 0.8 and losses[-1] < math.log(2048) - 0.3, losses
    assert all(p.grad is None for p in model.rhythm.parameters())  # stage 1: no rhythm gradients
    assert all(torch.equal(p, rhythm_before[n]) for n, p in model.rhythm.named_parameters())

    model.eval()
    with torch.no_grad():
        stage1 = model.lm.compute_predictions(batch["codes"], [], condition_tensors=model.condition_tensors(
            batch["global"])).logits
        model.set_stage(2)
        stage2 = model(batch["global"], batch["rhythm"], batch["codes"]).logits  # rhythm hooks on, zero/identity
    assert torch.equal(stage1.nan_to_num(), stage2.nan_to_num())

    state2 = new_state(model, TrainConfig.debug(stage=2, cfg_dropout=0.0, warmup_steps=0))
    train_step(state2, batch)
    assert model.rhythm.proj.weight.grad is not None and model.rhythm.proj.weight.grad.abs().sum() > 0


def test_lr_warmup_at_0_half_and_end(batch, make_model):
    cfg = TrainConfig.debug(stage=1, lr=1e-3, warmup_steps=8, steps=9)
    state = new_state(make_model(), cfg)
    lrs = [train_step(state, batch).lr for _ in range(9)]
    assert lrs[0] == 0.0
    assert lrs[4] == pytest.approx(0.5e-3, rel=1e-12)
    assert lrs[8] == pytest.approx(1e-3, rel=1e-12)
    assert all(a < b for a, b in zip(lrs[:8], lrs[1:], strict=True))


def test_gradient_norm_is_clipped(batch, make_model):
    cfg = TrainConfig.debug(stage=2, grad_clip=1e-3, warmup_steps=0)
    state = new_state(make_model(), cfg)
    res = train_step(state, batch)
    grads = [p.grad for p in state.model.parameters() if p.requires_grad and p.grad is not None]
    after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert res.grad_norm > 1e-3  # the clip was active
    assert after.item() <= 1e-3 * (1 + 1e-5)


def test_cfg_dropout_rates_and_reproducibility():
    def draws(seed, p, n=64):
        return cfg_keep(torch.Generator().manual_seed(seed), n, p)

    assert draws(0, 0.0).all()
    assert not draws(0, 1.0).any()
    assert torch.equal(draws(5, 0.3), draws(5, 0.3))
    assert not torch.equal(draws(5, 0.3), draws(6, 0.3))
    frac = 1 - draws(1, 0.3, 4000).float().mean().item()
    assert 0.27 < frac < 0.33
    whole = draws(3, 0.5, 8)  # each rank's rows are its slice of one draw for the global batch
    parts = [cfg_keep(torch.Generator().manual_seed(3), 8, 0.5, rank=r, world=2) for r in range(2)]
    assert torch.equal(whole[0::2], parts[0]) and torch.equal(whole[1::2], parts[1])


def test_dropped_samples_get_the_null_condition(batch, make_model):
    model = make_model().eval()
    keep = torch.tensor([True, False])
    with torch.no_grad():
        emb, mask = model.condition_tensors(batch["global"], keep)["description"]
    assert mask[1].sum() == 0 and emb[1].abs().sum() == 0 and mask[0].all()


def test_nonfinite_loss_skips_the_update_and_stops_after_many(batch, make_model):
    cfg = TrainConfig.debug(stage=2, max_nonfinite=3, warmup_steps=0)
    state = new_state(make_model(), cfg)
    bad = dict(batch, **{"global": batch["global"].clone()})
    bad["global"][0, 0, 0] = float("nan")
    before = _trainable_copy(state.model)
    res = train_step(state, bad)
    assert res.skipped == "nonfinite" and state.skipped_nonfinite == 1
    assert all(torch.equal(p, before[n]) for n, p in state.model.trainable_state().items())
    assert state.scheduler.last_epoch == 0  # the warm-up counts real updates only
    assert train_step(state, batch).skipped is None and state.consecutive_nonfinite == 0
    train_step(state, bad)
    train_step(state, bad)
    with pytest.raises(NonFiniteLossError, match="3 consecutive.*--stage1-lr / --stage2-lr"):
        train_step(state, bad)


def test_identity_and_pretrained_weights_get_no_decay(make_model):
    model = make_model()
    model.set_stage(2)
    cfg = TrainConfig(stage=2, lr=0.1, weight_decay=0.1)
    groups = {g["name"]: {id(p) for p in g["params"]} for g in param_groups(model, cfg)}
    assert id(model.rhythm.chain[0].weight) in groups["no_decay"]
    assert id(model.semantic.output_proj.weight) in groups["no_decay"]
    assert id(model.rhythm.proj.weight) in groups["decay"]
    assert all(id(lin.bias) in groups["no_decay"] for lin in model.rhythm.chain)
    em = model.semantic.embedding_manager.net[0]
    assert id(em.weight) in groups["decay"] and id(em.bias) in groups["no_decay"]
    # zero gradients for 50 updates: only decay acts; identity L_j stays exactly identity, E shrinks
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=0.1, betas=cfg.betas, eps=cfg.eps)
    em_before = em.weight.detach().clone()
    for _ in range(50):
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
        opt.step()
    assert torch.equal(model.rhythm.chain[0].weight, torch.eye(model.rhythm.chain[0].in_features))
    assert torch.allclose(em.weight, em_before * (1 - 0.01) ** 50, rtol=1e-4)


def test_in_process_resume_is_bitwise(tmp_path, batch, make_model):
    cfg = TrainConfig.debug(stage=2, ema_decay=0.9)
    a = new_state(make_model(), cfg)
    for _ in range(3):
        train_step(a, batch)
    fp = frozen_fingerprint(a.model)
    path = save_training(a, tmp_path / "ckpt.pt", fp)
    shadow = {n: t.clone() for n, t in a.ema.shadow.items()}
    b = new_state(make_model(), cfg)
    restore_training(b, path, fp)
    for _ in range(3):
        ra, rb = train_step(a, batch), train_step(b, batch)
        assert ra == rb
    for (n, p), q in zip(a.model.trainable_state().items(), b.model.trainable_state().values(), strict=True):
        assert torch.equal(p, q), n
    assert all(torch.equal(a.ema.shadow[n], b.ema.shadow[n]) for n in a.ema.shadow)
    assert torch.equal(a.cfg_generator.get_state(), b.cfg_generator.get_state())
    assert (a.step, a.scheduler.last_epoch) == (b.step, b.scheduler.last_epoch) == (6, 6)
    rebuilt = load_model(path)  # generation's loader reads a training checkpoint
    assert rebuilt.config == a.model.config and not rebuilt.training
    with torch.no_grad():
        assert math.isfinite(rebuilt.batch_loss(batch)[0].item())
    averaged = load_model(path, ema=True).trainable_state()
    assert all(torch.equal(averaged[n], shadow[n]) for n in shadow)
    assert not all(torch.equal(averaged[n], rebuilt.trainable_state()[n]) for n in shadow)


def test_other_backbone_weights_are_refused_on_resume(tmp_path, batch, make_model, perturb):
    cfg = TrainConfig.debug(stage=1)
    a = new_state(make_model(), cfg)
    path = save_training(a, tmp_path / "ckpt.pt", frozen_fingerprint(a.model))
    other = make_model()
    perturb(other.lm)
    from model.training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="fingerprint"):
        restore_training(new_state(other, cfg), path, frozen_fingerprint(other))
    with pytest.raises(CheckpointError, match="same options"):
        restore_training(new_state(make_model(), TrainConfig.debug(stage=1, lr=5e-4)), path,
                         frozen_fingerprint(a.model))


def test_mismatched_features_name_the_flag(tmp_path, make_model):
    from model.training.data import FeatureMismatchError, check_features

    model = make_model()
    wide = FeatureWindows(write_store(tmp_path / "wide", n_train=2, n_test=0, dim=32), window_s=2).spec()
    with pytest.raises(FeatureMismatchError, match="--clip-dim 32"):
        check_features(wide, model)
    real = FeatureWindows(write_store(tmp_path / "real", n_train=2, n_test=0, codec="facebook/musicgen-small"),
                          window_s=2).spec()
    with pytest.raises(FeatureMismatchError, match="--backbone"):
        check_features(real, model)


def test_scaler_overflow_is_a_skip_counted_apart(batch, make_model):
    """The fp16 path's bookkeeping, on CPU: an overflowing loss scale skips the update inside the scaler,
    halves the scale and counts as `skipped_scaler`, not as a non-finite step."""
    state = new_state(make_model(), TrainConfig.debug(stage=2, warmup_steps=0))
    state.scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))  # every scaled gradient overflows
    before = _trainable_copy(state.model)
    res = train_step(state, batch)
    assert res.skipped == "scaler" and (state.skipped_scaler, state.skipped_nonfinite) == (1, 0)
    assert math.isfinite(res.loss) and state.consecutive_nonfinite == 0
    assert all(torch.equal(p, before[n]) for n, p in state.model.trainable_state().items())
    assert state.scheduler.last_epoch == 0
    state.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)  # a sane scale: the update goes through
    assert train_step(state, batch).skipped is None and state.scheduler.last_epoch == 1
    assert any(not torch.equal(p, before[n]) for n, p in state.model.trainable_state().items())
