"""`vidmusician train --data EXPORT_OR_ROOT --out RUN_DIR --stage 1|2|both`: two-stage training, resumable.

Re-running the same command on the same RUN_DIR resumes where it stopped; `--init CKPT` instead starts a
new run from another run's weights. Under `torchrun --nproc_per_node N` each process trains a share of
every batch (DDP) and rank 0 writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train VidMusician (stage 1 semantic, stage 2 + rhythm) on feature shards")
    p.add_argument("--data", type=Path, required=True,
                   help="an export (ROOT/exports/NAME: its own manifest's split, train on train, best.pt on valid), "
                        "a data root, or a features directory (the index's split, which the latest export rewrote)")
    p.add_argument("--out", type=Path, required=True, help="run directory (re-run the same command to resume)")
    p.add_argument("--stage", choices=("1", "2", "both"), default=None,
                   help="both (default), or 1 / 2 alone; --no-rhythm trains stage 1, --one-stage its one stage")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this checkpoint's weights (a new run, not a resume)")
    add_switch_options(p)
    add_run_options(p)
    p.set_defaults(func=cmd_train, runs_flows=True)


def add_switch_options(p: argparse.ArgumentParser) -> None:
    """The paper's Table 2 switches (model.ablation); recorded in every checkpoint's config."""
    g = p.add_argument_group("Table 2 ablations (recorded in the checkpoint; generate and evaluate follow it)")
    g.add_argument("--t5-from-scratch", action="store_true",
                   help="a random T5 of the same shape, trained in full, instead of the pre-trained one with LoRA")
    g.add_argument("--no-rhythm", action="store_true", help="no rhythm module: the semantic module alone (stage 1)")
    g.add_argument("--no-init-technique", action="store_true",
                   help="rhythm layers at PyTorch's default init instead of zero O / identity L_j")
    g.add_argument("--one-stage", action="store_true",
                   help="semantic and rhythm trained together from the start, at --stage1-lr, for the length of "
                        "both stages (2 x --steps/--epochs)")
    g.add_argument("--rhythm-source", choices=("all_tokens", "global"), default="all_tokens",
                   help="rhythm from the patch tokens (paper) or the pooled CLIP embedding (ablation AT)")
    g.add_argument("--rhythm-style", choices=("vidmusician", "musicongen"), default="vidmusician",
                   help="musicongen: the first self-attention of each block trained, one shared O")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of how a run trains, shared by `train` and `ablate`; defaults are the dataclasses'."""
    from flows.training.run import TrainRun
    from model.training.config import PAPER_LR, TrainConfig

    d, r = TrainConfig(), TrainRun.__dataclass_fields__
    p.add_argument("--backbone", default=r["backbone"].default,
                   help="MusicGen hub name, local dir with state_dict.bin + compression_state_dict.bin, or debug")
    p.add_argument("--t5", default=None, help="T5 hub name or local dir (default t5-base; the debug T5 for debug)")
    p.add_argument("--clip-dim", type=int, default=None, help="CLIP width D (default: the features')")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help=f"epochs per stage (default {d.epochs})")
    length.add_argument("--steps", type=int, default=None, help="batches per stage instead of epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="global (micro-)batch, split over processes; an update sees --batch-size x --accumulate rows")
    p.add_argument("--accumulate", type=int, default=d.accumulate, metavar="N",
                   help="gradient accumulation: N micro-batches per update (the paper's batch 16 on one GPU: "
                        "--batch-size 4 --accumulate 4)")
    p.add_argument("--stage1-lr", type=float, default=None, help=f"stage 1 peak lr (default {PAPER_LR[1]:g})")
    p.add_argument("--stage2-lr", type=float, default=None, help=f"stage 2 peak lr (default {PAPER_LR[2]:g})")
    p.add_argument("--warmup", type=int, default=d.warmup_steps, help="linear warm-up updates per stage")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--grad-clip", type=float, default=d.grad_clip)
    p.add_argument("--cfg-dropout", type=float, default=d.cfg_dropout,
                   help="probability a sample trains unconditioned (classifier-free guidance)")
    p.add_argument("--ema", type=float, default=None, help="EMA decay of the trainable weights (off by default)")
    p.add_argument("--window-s", type=int, default=d.window_s, help="seconds per training window")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default cuda when there is a GPU")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                   help="default bf16 on GPU, fp32 on CPU (bf16/fp16 need a GPU)")
    p.add_argument("--frozen-dtype", choices=("fp32", "bf16", "fp16"), default=d.frozen_dtype,
                   help="hold the frozen MusicGen LM's weights in this dtype (bf16/fp16: GPU only; halves their memory)")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute the LM's layers in backward: less activation memory, slower steps")
    p.add_argument("--val-every", type=int, default=r["val_every"].default,
                   help="validation on the valid split every N steps")
    p.add_argument("--ckpt-every", type=int, default=r["ckpt_every"].default,
                   help="checkpoint every N steps (and at the end)")
    p.add_argument("--keep", type=int, default=r["keep"].default, help="rotating checkpoints kept (best.pt apart)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=r["workers"].default, help="data-loader worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sample-every", type=int, default=r["sample_every"].default, metavar="N",
                   help="every N steps, music for the first --samples validation windows (current weights; EMA when "
                        "on) in RUN/stageN/samples/ and TensorBoard's Audio tab (default 0: never)")
    p.add_argument("--samples", type=int, default=r["samples"].default, help="validation windows per sample step")
    p.add_argument("--log-every", type=int, default=r["log_every"].default, metavar="N",
                   help="without a progress bar (no terminal), a loss line in the log every N steps")
    p.add_argument("--val-cfg-coef", type=float, default=r["val_cfg_coef"].default, metavar="C",
                   help="each validation also reports val_loss_guided, the loss under the guided logits generate "
                        "samples from (null + C (cond - null)); default generate's --cfg-coef "
                        f"({r['val_cfg_coef'].default:g}); 1 turns it off (it equals val_loss)"),


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def train_run(args: argparse.Namespace, data: Path, out: Path, stages: tuple[int, ...] = (1, 2), **switches):  # noqa: ANN003, ANN201
    """A TrainRun from `add_run_options`' arguments (flows.training.run.TrainRun, imported lazily)."""
    from flows.training.run import TrainRun
    from model.training.config import TrainConfig

    device = args.device or ("cuda" if _cuda() else "cpu")
    precision = args.precision or ("bf16" if device == "cuda" else "fp32")
    recipe = TrainConfig(stage=1, lr=args.stage1_lr, warmup_steps=args.warmup, batch_size=args.batch_size,
                         epochs=args.epochs or TrainConfig.epochs, steps=args.steps, grad_clip=args.grad_clip,
                         cfg_dropout=args.cfg_dropout, ema_decay=args.ema, precision=precision,
                         window_s=args.window_s, seed=args.seed, weight_decay=args.weight_decay,
                         accumulate=args.accumulate, frozen_dtype=args.frozen_dtype)
    return TrainRun(data=data, out=out, stages=stages, recipe=recipe, lr2=args.stage2_lr,
                    backbone=args.backbone, t5=args.t5, clip_dim=args.clip_dim, device=device,
                    val_every=args.val_every, ckpt_every=args.ckpt_every, keep=args.keep, workers=args.workers,
                    progress=not args.no_progress and sys.stderr.isatty(), log_every=args.log_every,
                    activation_checkpointing=args.activation_checkpointing, sample_every=args.sample_every,
                    samples=args.samples, val_cfg_coef=args.val_cfg_coef, **switches)


def _stages(args: argparse.Namespace) -> tuple[int, ...]:
    if args.stage is None:  # the default: both, or the one stage the switches leave
        return (1,) if args.no_rhythm else (2,) if args.one_stage else (1, 2)
    return (1, 2) if args.stage == "both" else (int(args.stage),)


def _run(args: argparse.Namespace):  # noqa: ANN202 - flows.training.train.TrainRun (imported lazily)
    return replace(train_run(args, args.data, args.out, _stages(args), t5_from_scratch=args.t5_from_scratch,
                             rhythm=not args.no_rhythm, init_technique=not args.no_init_technique,
                             one_stage=args.one_stage, rhythm_source=args.rhythm_source,
                             rhythm_style=args.rhythm_style), init=args.init)


def show_progress_log() -> None:
    """The training loop's INFO lines (loss every --log-every steps, resumes) on stderr without -v."""
    import logging

    progress = logging.getLogger("flows.training.train")
    if progress.getEffectiveLevel() > logging.INFO:
        progress.setLevel(logging.INFO)


def cmd_train(args: argparse.Namespace) -> int:
    try:
        run = _run(args)  # refuses bad options (bf16 on CPU, ...) before torch, data or a run folder
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from flows.training.train import run_training
    from model.training.checkpoint import CheckpointError
    from model.training.data import FeatureMismatchError
    from model.training.step import NonFiniteLossError

    show_progress_log()
    try:
        best = run_training(run).best
    except (FeatureMismatchError, CheckpointError, NonFiniteLossError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        for stage, path in best.items():
            print(f"stage {stage}: best weights {path}")
    return 0
