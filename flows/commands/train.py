"""`vidmusician train --data EXPORT_OR_ROOT --out RUN_DIR --stage 1|2|both`: two-stage training, resumable.

Re-running the same command on the same RUN_DIR resumes where it stopped; `--init CKPT` instead starts a
new run from another run's weights. Under `torchrun --nproc_per_node N` each process trains a share of
every batch (DDP) and rank 0 writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from flows.training.run import TrainRun
    from model.training.config import PAPER_LR, TrainConfig

    d, r = TrainConfig(), TrainRun.__dataclass_fields__  # the defaults are the dataclasses'
    p = sub.add_parser("train", help="train VidMusician (stage 1 semantic, stage 2 + rhythm) on feature shards")
    p.add_argument("--data", type=Path, required=True,
                   help="an export (ROOT/exports/NAME), a data root, or a features directory")
    p.add_argument("--out", type=Path, required=True, help="run directory (re-run the same command to resume)")
    p.add_argument("--stage", choices=("1", "2", "both"), default="both")
    p.add_argument("--backbone", default=r["backbone"].default,
                   help="MusicGen hub name, local dir with state_dict.bin + compression_state_dict.bin, or debug")
    p.add_argument("--t5", default=None, help="T5 hub name or local dir (default t5-base; the debug T5 for debug)")
    p.add_argument("--clip-dim", type=int, default=None, help="CLIP width D (default: the features')")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this checkpoint's weights (a new run, not a resume)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help=f"epochs per stage (default {d.epochs})")
    length.add_argument("--steps", type=int, default=None, help="batches per stage instead of epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (split over processes)")
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
                   help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--val-every", type=int, default=r["val_every"].default,
                   help="validation on the test split every N steps")
    p.add_argument("--ckpt-every", type=int, default=r["ckpt_every"].default,
                   help="checkpoint every N steps (and at the end)")
    p.add_argument("--keep", type=int, default=r["keep"].default, help="rotating checkpoints kept (best.pt apart)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=r["workers"].default, help="data-loader worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train, runs_flows=True)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _run(args: argparse.Namespace):  # noqa: ANN202 - flows.training.train.TrainRun (imported lazily)
    from flows.training.run import TrainRun
    from model.training.config import TrainConfig

    device = args.device or ("cuda" if _cuda() else "cpu")
    precision = args.precision or ("bf16" if device == "cuda" else "fp32")
    recipe = TrainConfig(stage=1, lr=args.stage1_lr, warmup_steps=args.warmup, batch_size=args.batch_size,
                         epochs=args.epochs or TrainConfig.epochs, steps=args.steps, grad_clip=args.grad_clip,
                         cfg_dropout=args.cfg_dropout, ema_decay=args.ema, precision=precision,
                         window_s=args.window_s, seed=args.seed, weight_decay=args.weight_decay)
    stages = (1, 2) if args.stage == "both" else (int(args.stage),)
    return TrainRun(data=args.data, out=args.out, stages=stages, recipe=recipe, lr2=args.stage2_lr,
                    backbone=args.backbone, t5=args.t5, clip_dim=args.clip_dim, init=args.init, device=device,
                    val_every=args.val_every, ckpt_every=args.ckpt_every, keep=args.keep, workers=args.workers,
                    progress=not args.no_progress and sys.stderr.isatty())


def cmd_train(args: argparse.Namespace) -> int:
    from flows.training.train import run_training
    from model.training.checkpoint import CheckpointError
    from model.training.data import FeatureMismatchError
    from model.training.step import NonFiniteLossError

    try:
        best = run_training(_run(args)).best
    except (FeatureMismatchError, CheckpointError, NonFiniteLossError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        for stage, path in best.items():
            print(f"stage {stage}: best weights {path}")
    return 0
