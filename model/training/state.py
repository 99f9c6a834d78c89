"""(De)serialising a `TrainState`: pure functions on the state and on the paths passed in.

A training checkpoint is a `model.training.checkpoint` file (so `load_model` reads it like any other) whose
`extra["train"]` holds the optimiser, scheduler, grad scaler, EMA, step / epoch / position within it,
skip counters, best validation, every RNG state (torch CPU and CUDA, numpy, python, the CFG-dropout
generator; the sampler's state is (seed, epoch, position)), the `TrainConfig` and a fingerprint of the
frozen backbone (LM, codec, T5 base weights) the weights were trained against.
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import numpy as np
import torch

from model.training.checkpoint import CheckpointError, read_checkpoint, save_trainable
from model.training.config import TrainConfig
from model.training.step import TrainState
from model.vidmusician import VidMusician

logger = logging.getLogger(__name__)

TRAIN_FORMAT = "vidmusician-train/1"
RESUMABLE_CHANGES = ("steps", "epochs")  # TrainConfig fields a resume may change (a longer run)


def frozen_fingerprint(model: VidMusician) -> str:
    """sha256 over every frozen tensor's name, shape, dtype, float64 sum and 1024 strided values: a
    different MusicGen, codec or T5 (or a changed one) gives another value; cheap even at large scale."""
    trainable = {id(p) for p in model.trainable_state().values()}
    h = hashlib.sha256()
    with torch.no_grad():
        tensors = [(n, t) for n, t in model.named_parameters() if id(t) not in trainable]
        tensors += list(model.named_buffers())
        for name, t in sorted(tensors, key=lambda nt: nt[0]):
            flat = t.detach().reshape(-1)
            stride = max(1, flat.numel() // 1024)
            sample = flat[::stride][:1024].double().cpu()
            h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|{flat.double().sum().item():.12e}|".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()


def capture_rng(state: TrainState) -> dict:
    np_state = np.random.get_state()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
        "cfg_dropout": state.cfg_generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: TrainState, rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    n = rng["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    state.cfg_generator.set_state(rng["cfg_dropout"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def state_package(state: TrainState, fingerprint: str) -> dict:
    """The `extra["train"]` of a training checkpoint."""
    return {
        "format": TRAIN_FORMAT,
        "config": state.cfg.to_json(),
        "fingerprint": fingerprint,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": None if state.scaler is None else state.scaler.state_dict(),
        "ema": None if state.ema is None else state.ema.state_dict(),
        "counters": {"step": state.step, "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
                     "skipped_nonfinite": state.skipped_nonfinite, "skipped_scaler": state.skipped_scaler,
                     "skipped_uncond": state.skipped_uncond,
                     "consecutive_nonfinite": state.consecutive_nonfinite},
        "best": {"val": state.best_val, "step": state.best_step},
        "rng": capture_rng(state),
        "extra": dict(state.extra),
    }


def save_training(state: TrainState, path: str | Path, fingerprint: str) -> Path:
    """Atomically write the model's trainable weights plus the whole training state (and, at the top of
    `extra`, the features' extractor, which `generate` reads)."""
    extra = {"train": state_package(state, fingerprint)}
    if state.features is not None:
        extra["features"] = dict(state.features)
    return save_trainable(state.model, path, extra=extra)


def read_training(path: str | Path) -> dict:
    """The `extra["train"]` of a training checkpoint (refused if the file is a plain weights checkpoint)."""
    _, pkg = read_checkpoint(path)
    train = pkg["extra"].get("train")
    if not isinstance(train, dict) or train.get("format") != TRAIN_FORMAT:
        raise CheckpointError(f"{path}: holds weights but no training state; start from it with --init instead")
    return train


def restore_training(state: TrainState, path: str | Path, fingerprint: str) -> None:
    """Put a training checkpoint back into a fresh `new_state` of the same config: weights, optimiser,
    schedule, scaler, EMA, counters and RNGs, so the next step is the one the saved run would have made."""
    from model.training.checkpoint import load_trainable

    train = read_training(path)
    saved = TrainConfig.from_json(train["config"])
    if differ := saved.differences(state.cfg, ignore=RESUMABLE_CHANGES):  # a longer run may resume
        raise CheckpointError(f"{path}: this run differs from the one that wrote it in {'; '.join(differ)} "
                              "(saved -> asked); resume with the same options (only --steps / --epochs may change), "
                              "or pass another --out for a new run")
    if train["fingerprint"] != fingerprint:
        raise CheckpointError(f"{path}: trained against another frozen backbone/T5 (fingerprint differs); pass "
                              "the same --backbone and --t5 as the run that wrote it")
    load_trainable(state.model, path)
    state.optimizer.load_state_dict(train["optimizer"])
    state.scheduler.load_state_dict(train["scheduler"])
    if (train["scaler"] is None) != (state.scaler is None):
        raise CheckpointError(f"{path}: grad-scaler state does not match precision {state.cfg.precision}")
    if state.scaler is not None:
        state.scaler.load_state_dict(train["scaler"])
    if state.ema is not None:
        state.ema.load_state_dict(train["ema"])
    for key, value in train["counters"].items():
        setattr(state, key, int(value))
    state.best_val, state.best_step = train["best"]["val"], train["best"]["step"]
    state.extra = dict(train.get("extra", {}))
    restore_rng(state, train["rng"])
