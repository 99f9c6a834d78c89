"""A finished world's trained rows sampled again with another guidance (their checkpoints unchanged): generate the
test split, evaluate, and the world's scores, as `vidmusician demo --world` does after its ablate.

Run by hand:  python benchmarks/world_resample.py ROOT OUT --cfg-coef 1 [--rows full,no-rcm,at] [--scale large]
ROOT is a world root whose rows are trained (ROOT/world/ablate/rows/ROW/run); each row's training run is copied
to OUT/world/ablate/rows/ROW/run (so ROOT is only read) and `ablate` finds it trained; generation, evaluation,
the world's scores, the IT check and the full and no-RCM rows on real footage are then OUT's, with every other
setting the scale's. Prints the world report's lines; OUT/world/report.json holds them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from flows.demos.world import SCALES, ablate_run, default_real_video
from flows.demos.world_report import world_report
from flows.training.ablate import run_ablate
from pipeline.world import plan_world


def copy_trained(src: Path, out: Path, row: str) -> None:
    """The row's training run under OUT, its recorded output folder rewritten to the copy's."""
    target = out / "rows" / row / "run"
    if target.exists():
        return
    shutil.copytree(src / "rows" / row / "run", target)
    config = target / "config.yaml"
    config.write_text(config.read_text().replace(str(src), str(out)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--cfg-coef", type=float, required=True)
    ap.add_argument("--rows", default="full,no-rcm,at")
    ap.add_argument("--scale", default="large", choices=sorted(SCALES))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = tuple(args.rows.split(","))
    src, out = args.root / "world" / "ablate", args.out / "world" / "ablate"
    for row in rows:
        copy_trained(src, out, row)
    scale = replace(SCALES[args.scale], cfg_coef=args.cfg_coef)
    run = ablate_run(args.root / "exports" / "world", out, args.root / "backbone", scale, rows)
    t0 = time.perf_counter()
    result = run_ablate(run, lambda row, what: print(f"row {row}: {what} ({time.perf_counter() - t0:.0f} s)", flush=True))
    plans = plan_world(scale.videos_per_class, scale.source_s, seed=scale.seed)
    report = world_report(args.out, run, plans, result.rows, default_real_video(), print)
    report["cfg_coef"] = args.cfg_coef
    (args.out / "world" / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"{time.perf_counter() - t0:.0f} s: {args.out / 'world' / 'report.json'}")


if __name__ == "__main__":
    main()
