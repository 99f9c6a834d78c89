"""One optimisation step on a batch, as values: a `TrainState` and a collated `FeatureWindows` batch in,
a `StepResult` out. No file I/O, no argv; distributed only through the collectives of an initialised
`torch.distributed` process group (DDP), if there is one.

`TrainState.step` counts batches consumed (the run's position); updates the optimiser really made are
`step - skipped_nonfinite - skipped_scaler - skipped_uncond`, and the warm-up schedule counts only those.

A batch is `cfg.update_batch` rows; with `cfg.accumulate` > 1 it runs as that many micro-batches (forward
and backward each, DDP synchronising only the last), each weighted by its share of the rows, so the
gradient is the full batch's (the loss is a mean over rows that all have the same number of tokens).

A batch whose classifier-free dropout drops every row is not an update: every trainable parameter is
conditioning (semantic module, LoRA, rhythm module), and their gradient on such a batch is zero, so
AdamW would move them by its moments and weight decay alone and the warm-up would count a step that
learned nothing. Its update is skipped and counted (`skipped_uncond`); the schedule and EMA do not move.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from dvmset.dataset import CODES
from model.training.config import TrainConfig
from model.training.optim import EMA, build_optimizer, build_scheduler
from model.vidmusician import VidMusician

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


class BatchLoss(nn.Module):
    """The model and its loss in one forward, so DDP's gradient hooks see the whole graph."""

    def __init__(self, model: VidMusician) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, torch.Tensor], keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.batch_loss(batch, keep)  # (loss [], per-codebook CE [K])


@dataclass
class TrainState:
    """Everything that changes while a stage trains; `model.training.state` (de)serialises it."""

    cfg: TrainConfig
    model: VidMusician
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    ema: EMA | None
    cfg_generator: torch.Generator  # CPU; draws the CFG-dropout mask of each global batch
    runner: nn.Module  # BatchLoss(model), or DDP around it
    step: int = 0  # batches consumed
    epoch: int = 0
    batch_in_epoch: int = 0  # position within `epoch` (batches already consumed)
    skipped_nonfinite: int = 0
    skipped_scaler: int = 0
    skipped_uncond: int = 0  # batches whose CFG dropout dropped every row (no update)
    consecutive_nonfinite: int = 0
    best_val: float | None = None
    best_step: int | None = None
    extra: dict = field(default_factory=dict)
    features: dict | None = None  # the features' extractor (CLIP, its weights' sha256, codec); every checkpoint records it


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean over ranks; nan when non-finite
    per_codebook: list[float]
    lr: float  # the lr this update used (or would have used)
    grad_norm: float  # total norm before clipping
    skipped: str | None = None  # None, "nonfinite", "scaler" or "uncond"


def cfg_seed(seed: int, stage: int) -> int:
    return seed * 1_000_003 + stage


def new_state(model: VidMusician, cfg: TrainConfig, wrap: nn.Module | None = None) -> TrainState:
    """A fresh stage: trainable set, AdamW, warm-up, scaler (fp16), EMA, the CFG-dropout generator.
    `wrap(BatchLoss)` -> runner, e.g. `lambda m: DDP(m)`; called after the trainable set is fixed."""
    model.set_stage(cfg.stage)
    model.train()
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    runner = BatchLoss(model)
    if wrap is not None:
        runner = wrap(runner)
    return TrainState(cfg=cfg, model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, cfg),
                      scaler=scaler, ema=ema, cfg_generator=torch.Generator().manual_seed(cfg_seed(cfg.seed, cfg.stage)),
                      runner=runner)


def cfg_keep(generator: torch.Generator, global_batch: int, p: float, rank: int = 0, world: int = 1) -> torch.Tensor:
    """keep [global_batch // world] bool: this rank's rows of one draw for the whole global batch (rows
    rank, rank + world, ... as `dvmset.dataset.epoch_batches` deals items), so the dropout is the same
    for any number of processes. p = 0: none dropped; p = 1: all."""
    return cfg_keep_all(generator, global_batch, p)[rank::world]


def cfg_keep_all(generator: torch.Generator, global_batch: int, p: float) -> torch.Tensor:
    """keep [global_batch] bool: one draw for the whole global batch (every rank draws the same)."""
    u = torch.rand(global_batch, generator=generator)  # [global_batch], in [0, 1)
    return u >= p


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type != "cuda":
        raise ValueError(f"precision {precision} needs a GPU; on CPU train with --precision fp32")
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _trainable(model: VidMusician) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _micro_batches(batch: Mapping[str, object], keep: torch.Tensor, n: int) -> list[tuple[dict, torch.Tensor]]:
    """`n` consecutive slices of this rank's rows (tensors and lists alike) with their CFG-keep rows."""
    rows = keep.shape[0]
    if batch[CODES].shape[0] != rows:
        raise ValueError(f"a batch of {batch[CODES].shape[0]} rows for an update of {rows} rows per process "
                         "(--batch-size x --accumulate over the processes): the loader must deal update batches")
    if rows % n:
        raise ValueError(f"{rows} rows per process do not split into {n} micro-batches: make --batch-size a "
                         f"multiple of the number of processes and the rows per update a multiple of --accumulate")
    size = rows // n
    return [({k: v[i * size:(i + 1) * size] for k, v in batch.items()}, keep[i * size:(i + 1) * size])
            for i in range(n)]


def _forward_backward(state: TrainState, batch: Mapping[str, torch.Tensor], keep: torch.Tensor,
                      device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss [], per-codebook CE [K]) of the whole batch; its gradient accumulated into .grad."""
    cfg = state.cfg
    if cfg.accumulate == 1:
        with autocast(cfg.precision, device):
            loss, per_k = state.runner(batch, keep)
        (loss if state.scaler is None else state.scaler.scale(loss)).backward()
        return loss, per_k
    parts = _micro_batches(batch, keep, cfg.accumulate)
    no_sync = getattr(state.runner, "no_sync", None)  # DDP: all-reduce the gradient on the last micro-batch only
    loss_sum = per_k_sum = None
    for i, (part, part_keep) in enumerate(parts):
        quiet = no_sync() if no_sync is not None and i < len(parts) - 1 else contextlib.nullcontext()
        with quiet:
            with autocast(cfg.precision, device):
                loss, per_k = state.runner(part, part_keep)
            share = 1.0 / len(parts)  # equal micro-batches: the mean over rows is the mean of their means
            (loss * share if state.scaler is None else state.scaler.scale(loss * share)).backward()
        loss_sum = loss.detach() * share if loss_sum is None else loss_sum + loss.detach() * share
        per_k_sum = per_k.detach() * share if per_k_sum is None else per_k_sum + per_k.detach() * share
    return loss_sum, per_k_sum


def train_step(state: TrainState, batch: Mapping[str, torch.Tensor]) -> StepResult:
    """Forward, backward (over `cfg.accumulate` micro-batches), clip, AdamW update — or a counted skip
    when the loss or gradient is not finite, or when CFG dropout dropped every row of the batch."""
    cfg, model = state.cfg, state.model
    rank, world = _world()
    device = next(model.lm.parameters()).device
    keep_all = cfg_keep_all(state.cfg_generator, cfg.update_batch, cfg.cfg_dropout)
    keep = keep_all[rank::world].to(device)
    params = _trainable(model)
    state.optimizer.zero_grad(set_to_none=True)
    loss, per_k = _forward_backward(state, batch, keep, device)  # always: DDP expects a backward per forward
    if state.scaler is not None:
        state.scaler.unscale_(state.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)  # [] before clipping
    stats = torch.cat([loss.detach().float().reshape(1), per_k.detach().float(), grad_norm.detach().float().reshape(1)])
    finite = torch.isfinite(stats)
    bad = torch.stack([(~finite[:-1]).any(), ~finite[-1]]).float()  # [loss or CE bad, gradient bad]
    if world > 1:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        dist.all_reduce(stats, op=dist.ReduceOp.SUM)
        stats /= world  # mean loss over ranks; the grad norm is the same on each (DDP averaged the grads)
    lr = float(state.optimizer.param_groups[0]["lr"])
    state.step += 1
    state.batch_in_epoch += 1
    values = stats.tolist()
    result = dict(loss=values[0], per_codebook=values[1:-1], lr=lr, grad_norm=values[-1])
    loss_bad, grad_bad = (bool(b) for b in bad.tolist())
    if not keep_all.any():  # the same draw on every rank: all skip together
        state.optimizer.zero_grad(set_to_none=True)
        if state.scaler is not None:
            state.scaler.update()  # closes this step's unscale_ bookkeeping; the scale is unchanged
        state.skipped_uncond += 1
        logger.info("step %d: CFG dropout dropped all %d rows, no update", state.step, cfg.update_batch)
        return StepResult(**result, skipped="uncond")
    if state.scaler is None:
        if loss_bad or grad_bad:
            return _skip_nonfinite(state, result)
        state.optimizer.step()
    else:
        scale = state.scaler.get_scale()
        state.scaler.step(state.optimizer)  # skips the update itself on inf/nan gradients
        state.scaler.update()  # always: it also resets the scaler's per-step bookkeeping
        if loss_bad:  # the unscaled loss itself: not an overflow of the scale
            return _skip_nonfinite(state, result)
        if grad_bad:
            state.skipped_scaler += 1
            logger.info("step %d: fp16 gradient overflow, scale %g -> %g", state.step, scale, state.scaler.get_scale())
            return StepResult(**result, skipped="scaler")
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update(model)
    state.consecutive_nonfinite = 0
    return StepResult(**result)


def _skip_nonfinite(state: TrainState, result: dict) -> StepResult:
    state.optimizer.zero_grad(set_to_none=True)
    state.skipped_nonfinite += 1
    state.consecutive_nonfinite += 1
    logger.warning("step %d: non-finite loss/gradient (loss %s), update skipped (%d in a row)",
                   state.step, result["loss"], state.consecutive_nonfinite)
    if state.consecutive_nonfinite >= state.cfg.max_nonfinite:
        raise NonFiniteLossError(
            f"{state.consecutive_nonfinite} consecutive steps with a non-finite loss or gradient (up to step "
            f"{state.step}): lower the lr (--stage1-lr / --stage2-lr), use --precision fp32 or bf16, or check the features for NaN")
    return StepResult(**result, skipped="nonfinite")


@dataclass(frozen=True)
class Validation:
    """What `validate` measures over a split: the loss with both conditions on (what picks best.pt), and the
    loss under the guided logits `generate` samples from (null + cfg_coef * (cond - null))."""

    loss: float  # mean over items; nan when there are none
    per_codebook: list[float]
    items: int
    guided: float  # at cfg_coef; equal to `loss` at cfg_coef 1; nan when there are no items
    guided_per_codebook: list[float]
    cfg_coef: float


@torch.no_grad()
def evaluate(model: VidMusician, batches: Iterable[Mapping[str, torch.Tensor]], precision: str = "fp32"
             ) -> tuple[float, list[float], int]:
    """(mean loss, mean per-codebook CE, items) over batches with both conditions on; summed over DDP
    ranks when distributed (each rank passes its own share). The model's train/eval mode is restored."""
    got = validate(model, batches, precision)
    return got.loss, got.per_codebook, got.items


@torch.no_grad()
def validate(model: VidMusician, batches: Iterable[Mapping[str, torch.Tensor]], precision: str = "fp32",
             cfg_coef: float = 1.0) -> Validation:
    """`evaluate`'s losses and, at `cfg_coef` != 1, the cross-entropy under classifier-free guidance's logits
    (`VidMusician.guided_batch_loss`: one more forward per batch, with the null condition). Means over items,
    summed over DDP ranks when distributed (each rank passes its own share; one all-reduce). The model's
    train/eval mode is restored."""
    was_training = model.training
    model.eval()
    device = next(model.lm.parameters()).device
    k = model.lm.num_codebooks
    total: torch.Tensor | None = None
    try:
        for batch in batches:
            with autocast(precision, device):
                (loss, per_k), (guided, guided_k) = model.guided_batch_loss(batch, cfg_coef)
            n = batch["codes"].shape[0]
            row = torch.cat([loss.float().reshape(1), per_k.float(), guided.float().reshape(1), guided_k.float()]) * n
            row = torch.cat([row, torch.tensor([float(n)], device=row.device)])
            total = row if total is None else total + row
    finally:
        model.train(was_training)
    rank, world = _world()
    if total is None:
        total = torch.zeros(2 * k + 3, device=device)
    if world > 1:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    n = float(total[-1])
    if n == 0:
        return Validation(float("nan"), [], 0, float("nan"), [], cfg_coef)
    mean = (total[:-1] / n).tolist()
    return Validation(loss=mean[0], per_codebook=mean[1:k + 1], items=int(n), guided=mean[k + 1],
                      guided_per_codebook=mean[k + 2:], cfg_coef=cfg_coef)
