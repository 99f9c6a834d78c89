"""`vidmusician ablate --data EXPORT --out DIR [--rows full,no-rcm,...] [train options]`: the paper's Table 2.

Trains each row (resumable: re-run the same command to finish what is missing), generates the export's test
split with each row's best checkpoint, evaluates it, and writes DIR/table2.md and DIR/table2.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from flows.commands.train import add_run_options
    from model.ablation import REFERENCES, ROWS, TABLE2

    p = sub.add_parser("ablate", help="the paper's Table 2: train, generate and evaluate each ablation row")
    p.add_argument("--data", type=Path, required=True, help="an export (ROOT/exports/NAME) with a test split")
    p.add_argument("--out", type=Path, required=True, help="output folder (re-run the same command to resume)")
    p.add_argument("--rows", default=None, metavar="ROW,...",
                   help=f"rows to run (default all: {','.join(TABLE2)}; references: {','.join(REFERENCES)}; "
                        "all+refs: both). " + "; ".join(f"{n}: {r.title}" for n, r in ROWS.items()))
    p.add_argument("--split", default="test", help="the export's split generated and evaluated (test)")
    g = p.add_argument_group("generation and evaluation (the same for every row)")
    g.add_argument("--gen-seed", type=int, default=None, help="sampling seed (generate's default)")
    g.add_argument("--cfg-coef", type=float, default=None, help="classifier-free guidance (generate's default)")
    g.add_argument("--top-k", type=int, default=None, help="top-k sampling (generate's default)")
    g.add_argument("--window", type=int, default=None, metavar="W", help="seconds per model window (generate's)")
    g.add_argument("--stride", type=int, default=None, metavar="S", help="seconds between windows (generate's)")
    g.add_argument("--duration", type=float, default=None, metavar="S", help="music for each clip's first S seconds")
    g.add_argument("--clip-model", default=None, help="the CLIP of the features (default: read from the features)")
    g.add_argument("--pretrained", default=None, help="its pretrained tag or local checkpoint file")
    g.add_argument("--metrics", default=None, help="evaluate's metrics (default all)")
    for flag in ("--panns", "--clap", "--imagebind"):
        g.add_argument(flag, type=Path, default=None, metavar="CKPT", help="as in `vidmusician evaluate`")
    g.add_argument("--eval-seed", type=int, default=None, help="bootstrap seed (evaluate's default)")
    add_run_options(p)
    p.set_defaults(func=cmd_ablate)


def _configs(args: argparse.Namespace, out: Path):  # noqa: ANN202
    from flows.evaluation.evaluate import EvaluateConfig
    from flows.training.generate_config import GenerateConfig

    gen = {k: v for k, v in {"seed": args.gen_seed, "cfg_coef": args.cfg_coef, "top_k": args.top_k,
                             "window_s": args.window, "stride_s": args.stride, "duration_s": args.duration,
                             "clip_model": args.clip_model, "clip_pretrained": args.pretrained,
                             "device": args.device}.items() if v is not None}
    generate = None if not gen else GenerateConfig(checkpoint=out, out_dir=out, mux=False, **gen)
    ev = {k: v for k, v in {"panns": args.panns, "clap": args.clap, "imagebind": args.imagebind,
                            "seed": args.eval_seed}.items() if v is not None}
    if args.metrics:
        ev["metrics"] = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    evaluate = EvaluateConfig.with_env(generated=out, reference=out, **ev)
    return generate, evaluate


def cmd_ablate(args: argparse.Namespace) -> int:
    from flows.commands.train import train_run
    from flows.training.ablate import AblateError, AblateRun, run_ablate
    from flows.training.generate import GenerateError
    from model.ablation import parse_rows
    from model.training.checkpoint import CheckpointError
    from model.training.data import FeatureMismatchError
    from model.training.step import NonFiniteLossError

    def on_row(row: str, what: str) -> None:
        print(f"{row}: {what}", flush=True)

    try:
        generate, evaluate = _configs(args, args.out)
        run = AblateRun(data=args.data, out=args.out, rows=parse_rows(args.rows),
                        train=train_run(args, args.data, args.out), generate=generate, evaluate=evaluate,
                        split=args.split)
        if generate is not None and args.clip_model is None:
            run = _with_features_clip(run)
        result = run_ablate(run, on_row)
    except (AblateError, FeatureMismatchError, CheckpointError, NonFiniteLossError, GenerateError,
            FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.table_md.read_text() if result.table_md else "")
    print(f"wrote {result.table_md} and {result.table_json}")
    return 0


def _with_features_clip(run):  # noqa: ANN001, ANN202 - AblateRun
    """Sampling options were given but not --clip-model: the features' own CLIP, as without options."""
    from dataclasses import replace

    from flows.training.ablate_row import features_clip_model

    model = features_clip_model(run)
    return run if model is None or run.generate is None else replace(run, generate=replace(run.generate, clip_model=model))
