"""How much does the training loss reward using the condition? A check run on a finished world root.

Run by hand:  python benchmarks/world_signal.py ROOT [--rows full,no-rcm,at]   (ROOT of `vidmusician demo --world`)

Teacher-forced cross-entropy on the export's test clips (whole clips, the world's clip length), per token
position, split into the first second of each window and the rest:
(1) the frozen backbone with its own LUT conditioner: the clip's class word, each other class's word, no word
    (the null condition). How far apart these are is the most a perfect semantic path could gain in the loss.
(2) each trained row's best checkpoint (as `ablate` names it in table2.json): the clip's own CLIP features and
    rhythm signal; another class's clip's features (rhythm kept), or a same-class clip's (its class right, its cut times not); another clip's rhythm (features kept, a clip
    with other cut times); the null condition (CFG's dropped row); and the guided distribution generation samples
    from (null + cfg_coef x (own - null) on the logits, `generate`'s default 3).
A gap near 0 between own and swapped inputs says the model does not use them (or the loss does not reward it).
Deterministic; about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from audiocraft.modules.conditioners import ConditioningAttributes

from dvmset.dataset import CODES, GLOBAL, RHYTHM, FeatureWindows
from model.generation import guided_logits
from model.training.checkpoint import load_model
from model.training.miniature import load_miniature
from pipeline.world import CLASSES

FIRST_S = 1.0
CUT_TOL_S = 0.06  # 3 frames either side at 50 Hz


def token_ce(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy [B, T] averaged over codebooks, NaN where no codebook is valid (the pattern's edges)."""
    ce = torch.nn.functional.cross_entropy(logits.permute(0, 3, 1, 2).float(), codes, reduction="none")  # [B, K, T]
    m = mask.float()
    return (ce * m).sum(1) / m.sum(1)  # NaN where the mask is empty


def guided_ce(cond, null, codes: torch.Tensor, coef: float) -> torch.Tensor:  # noqa: ANN001 - LMOutput
    """token_ce of the distribution generation samples from with classifier-free guidance, on the reference codes."""
    return token_ce(guided_logits(cond.logits, null.logits, coef), codes, cond.mask)


def split_mean(ce: torch.Tensor, frame_rate: float, at_cuts: torch.Tensor) -> tuple[float, ...]:
    """(all, first second, rest, at the cuts) means over valid positions; at_cuts [B, T] bool."""
    first = int(FIRST_S * frame_rate)
    pick = lambda x: float(x[torch.isfinite(x)].mean())  # noqa: E731
    return pick(ce), pick(ce[:, :first]), pick(ce[:, first:]), pick(ce[at_cuts[:, :ce.shape[1]]])


def cut_mask(cut_times: list[list[float]], n_frames: int, frame_rate: float, tol_s: float = CUT_TOL_S) -> torch.Tensor:
    """[B, T]: frames within tol_s of one of the clip's planned cuts."""
    t = torch.arange(n_frames) / frame_rate
    return torch.stack([(t[:, None] - torch.tensor(c, dtype=torch.float32)[None]).abs().min(1).values <= tol_s
                        if c else torch.zeros(n_frames, dtype=torch.bool) for c in cut_times])


def clip_means(ce: torch.Tensor, at_cuts: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: mean CE over all valid positions, and over those at the cuts (NaN for a clip without cuts)."""
    at_cuts = at_cuts[:, :ce.shape[1]]
    valid = torch.isfinite(ce)
    every = [float(ce[i][valid[i]].mean()) for i in range(len(ce))]
    cut = [float(ce[i][valid[i] & at_cuts[i]].mean()) if (valid[i] & at_cuts[i]).any() else np.nan for i in range(len(ce))]
    return np.asarray(every), np.asarray(cut)


def paired_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, n: int = 10_000) -> str:
    """Mean of b - a over clips (both defined) with a 95 % bootstrap interval over clips."""
    d = (b - a)[np.isfinite(a) & np.isfinite(b)]
    boots = d[np.random.default_rng(seed).integers(0, len(d), size=(n, len(d)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return f"{d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]"


def print_cases(cases: dict[str, torch.Tensor], frame_rate: float, at_cuts: torch.Tensor) -> None:
    """Each case's means; after the first, its per-clip difference from the first (all / at the cuts)."""
    first = None
    for name, ce in cases.items():
        means = " / ".join(f"{v:.4f}" for v in split_mean(ce, frame_rate, at_cuts))
        per_clip = clip_means(ce, at_cuts)
        diff = "" if first is None else (f"   vs first, per clip: all {paired_ci(first[0], per_clip[0])}, "
                                         f"at cuts {paired_ci(first[1], per_clip[1])}")
        first = per_clip if first is None else first
        print(f"  {name:34s} {means}{diff}")


def partner(classes: list[int], same: bool) -> list[int]:
    """For each clip, the next clip in order of another class (or of the same class, another clip)."""
    n = len(classes)
    return [next(j % n for j in range(i + 1, i + n) if (classes[j % n] == classes[i]) == same) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--rows", default="full,no-rcm,at")
    ap.add_argument("--cfg-coef", type=float, default=3.0, help="guidance of the guided row (generate's default)")
    ap.add_argument("--window-s", type=int, default=8, help="the clips' length (the world's clip_s)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = args.root
    plans = json.loads((root / "world-media" / "plans.json").read_text())
    export = root / "exports" / "world"
    manifest = pd.read_parquet(export / "manifest.parquet", columns=["clip_id", "split"])
    ids = sorted(manifest[manifest.split == "test"].clip_id)
    ds = FeatureWindows(root / "features", window_s=args.window_s, offset_s=0, clip_ids=ids)
    items = [ds[i] for i in range(len(ds))]
    plan_of = [next(p for p in plans if it["clip_id"].startswith(p["name"])) for it in items]
    classes = [p["cls"] for p in plan_of]
    words = {i: c.word for i, c in enumerate(CLASSES)}
    other, same = partner(classes, same=False), partner(classes, same=True)
    glob = torch.stack([torch.as_tensor(it[GLOBAL]).float() for it in items])
    rhythm = torch.stack([torch.as_tensor(it[RHYTHM]).float() for it in items])
    codes = torch.stack([torch.as_tensor(it[CODES]).long() for it in items])
    frame_rate = 50.0
    cuts = cut_mask([[c for c in p["cut_times"] if c < args.window_s] for p in plan_of], codes.shape[-1], frame_rate)
    print(f"{len(items)} test clips of {args.window_s} s, classes {sorted(set(classes))}; CE per token "
          f"(all / first {FIRST_S:.0f} s / rest / within {CUT_TOL_S} s of a cut, {int(cuts.sum())} frames)")

    lm, _ = load_miniature(root / "backbone")

    def backbone_out(texts: list[str | None]):  # noqa: ANN202 - audiocraft's LMOutput
        attrs = [ConditioningAttributes(text={"description": t}) for t in texts]
        with torch.no_grad():
            return lm.compute_predictions(codes, attrs)

    rows = {"own word": [words[c] for c in classes], "other class's word": [words[classes[j]] for j in other],
            "no word (null)": [None] * len(items)}
    print("\nfrozen backbone (its own LUT conditioner)")
    outs = {name: backbone_out(texts) for name, texts in rows.items()}
    ces = {name: token_ce(o.logits, codes, o.mask) for name, o in outs.items()}
    ces[f"own word, CFG {args.cfg_coef:g}"] = guided_ce(outs["own word"], outs["no word (null)"], codes, args.cfg_coef)
    print_cases(ces, frame_rate, cuts)

    table = json.loads((root / "world" / "ablate" / "table2.json").read_text())
    best = {r["row"]: r.get("best_checkpoint") for r in table["rows"]}
    shift = [(i + 1) % len(items) for i in range(len(items))]
    for row in args.rows.split(","):
        if not best.get(row):
            print(f"\n{row}: no checkpoint in table2.json")
            continue
        model = load_model(best[row])
        print(f"\n{row} ({best[row]})")
        cases = {"own features, own rhythm": (glob, rhythm, None),
                 "same class, other clip's features": (glob[same], rhythm, None),
                 "other class's features": (glob[other], rhythm, None),
                 "another clip's rhythm": (glob, rhythm[shift], None),
                 "null condition": (glob, rhythm, torch.zeros(len(items), dtype=torch.bool))}
        ces, outs = {}, {}
        for name, (g, r, keep) in cases.items():
            with torch.no_grad():
                outs[name] = model(g, r, codes, keep)
            ces[name] = token_ce(outs[name].logits, codes, outs[name].mask)
        ces[f"own inputs, CFG {args.cfg_coef:g}"] = guided_ce(outs["own features, own rhythm"], outs["null condition"],
                                                             codes, args.cfg_coef)
        print_cases(ces, frame_rate, cuts)


if __name__ == "__main__":
    main()
