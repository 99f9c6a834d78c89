"""A finished world's trained rows on a second, larger held-out test set: new world videos (another seed, never
seen by any training, the backbone's included), curated for real, each row's best checkpoint generating for
every one of them (`generate VIDEO --checkpoint CK`, as a user runs it), then the world's scores.

Run by hand:  python benchmarks/world_heldout.py ROOT OUT [--videos-per-class 20] [--seed 2] [--cfg-coef 1]
              [--rows full,no-rcm,at] [--scale large]
ROOT is a world root whose rows are trained (ROOT/world/ablate/rows/ROW/done.json names the best checkpoint); it is
only read. OUT gets the new sources (OUT/world-media), their catalog and clips, each row's music
(OUT/rows/ROW/*.wav) and OUT/report.json. A killed run, re-run, keeps what was generated. The test split of the
world has 15 clips (about 50 cuts): too few to separate a rhythm effect of ~0.1 recall from chance, which is why
this exists (docs/world.md, "Run C examined", next step 3, declared before it ran).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot
from dvmset.records import ClipStatus
from dvmset.tables import Clip
from flows.demos.world import SCALES, curate_world, default_real_video, heldout_plans, write_media
from flows.demos.world_report import clip_class, draw_figure, real_footage, score_sources
from flows.settings import catalog_url
from flows.training.generate import VideoJob, generate_batch
from flows.training.generate_config import GenerateConfig
from model.metrics.stats import bootstrap_ci
from model.metrics.world import rhythm_between
from pipeline.cuts import detect_video_cuts
from pipeline.world import CLASSES


def curated_clips(db_url: str, root: Path) -> dict[str, Path]:
    """clip id -> its file, for every clip curation made (none failed is reviewed: they are test videos)."""
    catalog = Catalog(db_url)
    try:
        with catalog.session() as s:
            rows = s.execute(select(Clip.id, Clip.path).where(Clip.status != ClipStatus.FAILED, Clip.path.is_not(None))
                             .order_by(Clip.id))
            return {cid: root / path for cid, path in rows}
    finally:
        catalog.dispose()


def best_of(root: Path, row: str) -> Path:
    return Path(json.loads((root / "world" / "ablate" / "rows" / row / "done.json").read_text())["best_checkpoint"])


def real_summary(runs: dict[str, list[dict]], seed: int) -> dict:
    """Per row: mean Rhythm recall over sampling seeds and its shuffled-beat chance, the interval of the
    difference (bootstrap over seeds); and the full row against no-RCM, seed for seed."""
    def mean_ci(values: np.ndarray) -> list[float] | None:
        ci = bootstrap_ci(len(values), lambda idx: float(values[idx].mean()), seed=seed)
        return None if ci is None else [ci.low, ci.high]

    out: dict = {}
    for row, items in runs.items():
        recall = np.array([it["recall"] for it in items], dtype=np.float64)
        chance = np.array([it["chance_recall"] for it in items], dtype=np.float64)
        out[row] = {"cuts": items[0]["cuts"], "seeds": len(items), "recall": float(recall.mean()),
                    "chance": float(chance.mean()), "diff_ci95": mean_ci(recall - chance),
                    "recall_per_seed": recall.tolist()}
    full, no_rcm = (np.array([it["recall"] for it in runs[r]]) for r in ("full", "no-rcm"))
    out["full - no-rcm"] = {"diff": float((full - no_rcm).mean()), "diff_ci95": mean_ci(full - no_rcm)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--videos-per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--cfg-coef", type=float, default=1.0)
    ap.add_argument("--rows", default="full,no-rcm,at")
    ap.add_argument("--scale", default="large", choices=sorted(SCALES))
    ap.add_argument("--real-seeds", type=int, default=10,
                    help="sampling seeds for the full and no-RCM rows on the real footage with cuts (0: none)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    scale = SCALES[args.scale]
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def part(name: str, since: float) -> float:
        timings[name] = round(time.perf_counter() - since, 1)
        print(f"{name}: {timings[name]:.0f} s", flush=True)
        return time.perf_counter()

    try:
        plans = heldout_plans(scale, args.videos_per_class, args.seed)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    root_dir = DataRoot(args.out).ensure()
    media = write_media(root_dir.path / "world-media", plans)
    t = part("world", t0)
    db_url = catalog_url(root_dir)
    curate_world(root_dir, db_url, media, plans, scale)
    clips = curated_clips(db_url, root_dir.path)
    t = part("curate", t)
    names = sorted(clips)
    truth = [clip_class(c, plans) for c in names]
    cuts = {c: np.asarray(detect_video_cuts(clips[c]).cut_times_s) for c in names}
    print(f"{len(names)} clips ({', '.join(f'{CLASSES[k].word} {truth.count(k)}' for k in range(len(CLASSES)))}), "
          f"{sum(len(v) for v in cuts.values())} detected cuts", flush=True)
    sources = {"reference music": clips}
    for row in args.rows.split(","):
        best = best_of(args.root, row)
        out_dir = root_dir.path / "rows" / row
        todo = [VideoJob(c, clips[c]) for c in names if not (out_dir / f"{c}.wav").is_file()]
        if todo:
            cfg = GenerateConfig(checkpoint=best, out_dir=out_dir, seed=scale.seed, window_s=scale.clip_s,
                                 clip_model="tiny", cfg_coef=args.cfg_coef, top_k=scale.top_k,
                                 temperature=scale.temperature, mux=False, cache_dir=root_dir.path / "feature-cache")
            failed = [f"{r.name}: {r.error}" for r in generate_batch(todo, cfg) if not r.ok]
            if failed:
                raise SystemExit(f"row {row}: generation failed for {len(failed)} clips: {failed[:3]}")
        sources[row] = {c: out_dir / f"{c}.wav" for c in names}
        t = part(f"generate {row} ({len(todo)} clips)", t)
    rows, envelopes, beats = score_sources(sources, truth, cuts, scale.seed, print)
    between = {}  # the full row against each other row on the same clips: the paper's "full above no-RCM and AT"
    others = [r for r in beats if r not in ("full", "reference music")] if "full" in beats else []
    for row in others:
        got = rhythm_between(list(cuts.values()), beats["full"], beats[row], seed=scale.seed)
        ci = got.to_json()["diff_ci95"]
        between[f"full - {row}"] = {"full": got.value, row: got.chance, "diff": got.value - got.chance, "diff_ci95": ci}
        shown = "n/a" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"
        print(f"Rhythm recall full {got.value:.2f} vs {row} {got.chance:.2f}: diff {got.value - got.chance:+.2f} "
              f"{shown} (same clips, bootstrap over clips)", flush=True)
    figure = draw_figure(root_dir.path / "figure.png", names, cuts, envelopes)
    part("score", t)
    real = default_real_video()
    if args.real_seeds and real is not None and {"full", "no-rcm"} <= set(beats):
        t = time.perf_counter()
        sampling = {"cfg_coef": args.cfg_coef, "top_k": scale.top_k, "temperature": scale.temperature}
        real_rows = {row: [real_footage(best_of(args.root, row), real, root_dir.path / "real" / row / str(s),
                                        seed=s, **sampling) for s in range(args.real_seeds)]
                     for row in ("full", "no-rcm")}
        real_report = real_summary(real_rows, scale.seed)
        print(f"real footage {real.name}, {args.real_seeds} sampling seeds: {json.dumps(real_report)}", flush=True)
        part("real footage", t)
    else:
        real_report = None
    report = {"root": str(args.root), "seed": args.seed, "videos_per_class": args.videos_per_class,
              "cfg_coef": args.cfg_coef, "top_k": scale.top_k, "temperature": scale.temperature, "clips": names,
              "classes": [CLASSES[k].word for k in truth], "cuts": int(sum(len(v) for v in cuts.values())),
              "rows": rows, "rhythm_between_rows": between, "real_footage": real_report, "figure": str(figure),
              "timings_s": timings, "threads": torch.get_num_threads()}
    (root_dir.path / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"{time.perf_counter() - t0:.0f} s: {root_dir.path / 'report.json'}")


if __name__ == "__main__":
    main()
