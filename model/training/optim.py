"""AdamW with parameter groups, the warm-up schedule and an optional EMA of the trainable weights.

Which parameters get weight decay. AdamW's decoupled decay multiplies every decayed weight by
(1 - lr * wd) per update, pulling it toward **zero**, whatever its initialisation. Measured with
torch's AdamW, zero gradients (decay alone), lr 1e-5, wd 0.1, 6000 warm-up updates, over the
paper's stage 2 (120 epochs x 224 updates = 26,880): an identity-initialised L_j ends at 0.976 I,
and F_R9 = L_9 ... L_1 O(d) carries the product of nine, 0.80: a fifth of the rhythm signal
lost to the regulariser, not to the data. Stage 1's projector P (MusicGen's own T5 projection,
lr 1e-4) would shrink to about 0.79 of itself the same way. So decay (`TrainConfig.weight_decay`)
applies only to matrices that start at zero or at random (EmbeddingManager, LoRA A/B, O, a
from-scratch T5's matrices); L_j and P (unless `decay_pretrained_init`), every bias and every norm
weight get none — for biases and norms this is the usual practice (GPT-2, nanoGPT, audiocraft's
`weight_decay` groups).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
from torch import nn

from model.training.config import TrainConfig
from model.vidmusician import VidMusician

logger = logging.getLogger(__name__)


def _pretrained_init(model: VidMusician) -> set[int]:
    """ids of the weights that start at a meaningful non-zero value: rhythm L_j (identity), projector P."""
    ids = {id(model.semantic.output_proj.weight)}
    if model.rhythm is not None and model.rhythm.cfg.init_technique:
        ids |= {id(lin.weight) for lin in model.rhythm.chain}
    return ids


def param_groups(model: VidMusician, cfg: TrainConfig) -> list[dict]:
    """[{decayed matrices, weight_decay}, {the rest, weight_decay 0}] over the parameters that train now."""
    keep_init = set() if cfg.decay_pretrained_init else _pretrained_init(model)
    norm_ids = {id(p) for m in model.modules() if isinstance(m, (nn.LayerNorm,)) or "Norm" in type(m).__name__
                for p in m.parameters(recurse=False)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.dim() < 2 or id(p) in norm_ids or id(p) in keep_init or name.endswith(".bias")
        (no_decay if plain else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters: call set_stage(1|2) first")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "name": "decay"},
              {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: VidMusician, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def lr_factor(step: int, warmup_steps: int) -> float:
    """Multiplier of the peak lr for update `step` (0-based): step / warmup, then 1 (constant), as
    audiocraft's LinearWarmupLRScheduler (init lr 0): update 0 runs at 0, update `warmup` at the peak."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, step / warmup_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = cfg.warmup_steps
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup))


class EMA:
    """Exponential moving average of the trainable weights (fp32 shadows, on the weights' device)."""

    def __init__(self, model: VidMusician, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in model.trainable_state().items()}

    @torch.no_grad()
    def update(self, model: VidMusician) -> None:
        for name, p in model.trainable_state().items():
            if p.requires_grad:
                self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self, model: VidMusician) -> Iterator[None]:
        """The EMA weights in the model for the duration (validation, best.pt, samples); the trained ones after."""
        params = model.trainable_state()
        with torch.no_grad():
            saved = {n: p.detach().clone() for n, p in params.items()}
            for name, p in params.items():
                p.copy_(self.shadow[name].to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(saved[name])

    @torch.no_grad()
    def reset_from(self, model: VidMusician) -> None:
        for name, p in model.trainable_state().items():
            self.shadow[name].copy_(p.detach().float())

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": {n: t.detach().cpu().clone() for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        if set(state["shadow"]) != set(self.shadow):
            raise ValueError("EMA state names other parameters than this model's")
        self.decay = float(state["decay"])
        for name, t in state["shadow"].items():
            self.shadow[name].copy_(t)
