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
    from flows.evaluation.evaluate import CHECKPOINTS
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
    for name, (flag, env) in CHECKPOINTS.items():
        g.add_argument(flag, type=Path, default=None, metavar="CKPT", dest=name,
                       help=f"as in `vidmusician evaluate` (or ${env}); without it the metric is skipped")
    g.add_argument("--eval-seed", type=int, default=None, help="bootstrap seed (evaluate's default)")
    add_run_options(p)
    p.add_argument("--via-server", action="store_true",
                   help="start the ablate deployment on the Prefect server ($PREFECT_API_URL, set up by `vidmusician "
                        "deploy`) and follow it: it starts each row as its own run on the GPU pool, so its workers "
                        "run rows side by side (paths must be valid on every worker, --out on shared storage)")
    p.set_defaults(func=cmd_ablate, runs_flows=True)


def _checkpoints(args: argparse.Namespace) -> dict[str, Path | None]:
    from flows.evaluation.evaluate import CHECKPOINTS

    return {name: getattr(args, name) for name in CHECKPOINTS}


def _configs(args: argparse.Namespace, out: Path, device: str):  # noqa: ANN202
    from flows.evaluation.evaluate import EvaluateConfig
    from flows.training.generate_config import GenerateConfig

    gen = {k: v for k, v in {"seed": args.gen_seed, "cfg_coef": args.cfg_coef, "top_k": args.top_k,
                             "window_s": args.window, "stride_s": args.stride, "duration_s": args.duration,
                             "clip_model": args.clip_model, "clip_pretrained": args.pretrained,
                             "device": args.device}.items() if v is not None}
    generate = None if not gen else GenerateConfig(checkpoint=out, out_dir=out, mux=False, **{"device": device, **gen})
    ev = {k: v for k, v in {**_checkpoints(args), "seed": args.eval_seed}.items() if v is not None}
    if args.metrics:
        ev["metrics"] = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    evaluate = EvaluateConfig.with_env(generated=out, reference=out, **ev)
    return generate, evaluate


def ablate_run_from_args(args: argparse.Namespace):  # noqa: ANN201 - flows.training.ablate.AblateRun
    from flows.commands.train import train_run
    from flows.training.ablate import AblateRun
    from model.ablation import parse_rows

    train = train_run(args, args.data, args.out)
    generate, evaluate = _configs(args, args.out, train.device)
    return AblateRun(data=args.data, out=args.out, rows=parse_rows(args.rows), train=train, generate=generate,
                     evaluate=evaluate, split=args.split)


def cmd_ablate(args: argparse.Namespace) -> int:
    from flows.training.ablate import AblateError, run_ablate, with_features_clip
    from flows.training.generate import GenerateError
    from model.training.checkpoint import CheckpointError
    from model.training.data import FeatureMismatchError
    from model.training.step import NonFiniteLossError

    def on_row(row: str, what: str) -> None:
        print(f"{row}: {what}", flush=True)

    try:
        run = ablate_run_from_args(args)
        if args.via_server:
            return _via_server(run, args)
        if run.generate is not None and args.clip_model is None:
            run = with_features_clip(run)
        result = run_ablate(run, on_row)
    except (AblateError, FeatureMismatchError, CheckpointError, NonFiniteLossError, GenerateError,
            FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.table_md.read_text() if result.table_md else "")
    print(f"wrote {result.table_md} and {result.table_json}")
    return 0


def remote_params(run, args: argparse.Namespace) -> dict:  # noqa: ANN001 - an AblateRun
    """The ablate entry flow's JSON parameters (flows/cluster/entry.py) for this run: only what was given."""
    from dataclasses import fields

    from flows.cluster.deploy import DEPLOYMENTS
    from flows.training.run import TrainRun
    from model.training.config import TrainConfig

    def changed(obj, default, skip=()):  # noqa: ANN001, ANN202
        return {f.name: getattr(obj, f.name) for f in fields(obj) if f.init and f.name not in skip
                and getattr(obj, f.name) != getattr(default, f.name)}

    # device and precision not given: the worker's own choice (its GPU, bf16), as the CLI chooses here
    recipe = changed(run.train.recipe, TrainConfig(), skip=() if args.precision else ("precision",))
    settings = changed(run.train, TrainRun(data=run.data, out=run.out),
                       skip=("data", "out", "recipe", "init", "progress", *(() if args.device else ("device",))))
    gen = {k: v for k, v in {"seed": args.gen_seed, "cfg_coef": args.cfg_coef, "top_k": args.top_k,
                             "window_s": args.window, "stride_s": args.stride, "duration_s": args.duration,
                             "clip_model": args.clip_model, "clip_pretrained": args.pretrained,
                             "device": args.device}.items() if v is not None}
    ev = {k: str(v) if isinstance(v, Path) else v for k, v in {**_checkpoints(args), "seed": args.eval_seed}.items()
          if v is not None}
    if args.metrics:
        ev["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    params = {"data": str(run.data), "out": str(run.out), "rows": list(run.rows), "split": run.split,
              "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items()},
              "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
              "evaluate": ev}
    if gen:
        params["generate"] = gen
    params["row_deployment"] = DEPLOYMENTS["ablate_row"].full_name  # each row its own run: side by side
    return params


def _via_server(run, args: argparse.Namespace) -> int:  # noqa: ANN001 - an AblateRun
    from prefect import get_client

    from flows.cluster.deploy import DEPLOYMENTS
    from flows.cluster.remote import RemoteRunError, run_remote
    from flows.cluster.rows import child_states

    deployment = DEPLOYMENTS["ablate"].full_name
    shown: dict[str, str] = {}
    started: list[str] = []

    def on_poll(state: str) -> None:
        if shown.get("") != state:
            print(f"{deployment}: {state}", flush=True)
            shown[""] = state
        if not started:
            return
        with get_client(sync_client=True) as client:
            rows = child_states(client, started[0])
        for row, row_state in sorted(rows.items()):
            if shown.get(row) != row_state:
                print(f"row {row}: {row_state}", flush=True)
                shown[row] = row_state

    try:
        done = run_remote(deployment, remote_params(run, args), on_poll=on_poll, on_start=started.append)
    except RemoteRunError as err:
        print(f"ablate: {err}", file=sys.stderr)
        return 2
    on_poll(done.state)  # the rows' last states, read after the run ended
    print(f"flow run {done.name} ({done.flow_run_id}): {done.state}" + (f": {done.message}" if done.message else ""))
    if done.state == "Completed":
        print(f"wrote {Path(run.out) / 'table2.md'} and {Path(run.out) / 'table2.json'} (on the workers' storage)")
    return 0 if done.state == "Completed" else 1
