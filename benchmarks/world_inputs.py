"""Do a world's model inputs carry the answer? Not a speed benchmark: a check run on a finished world root.

Run by hand:  python benchmarks/world_inputs.py ROOT   (ROOT of `vidmusician demo --world`, after features)

Prints (1) leave-one-out nearest-centroid accuracy of each clip's pooled CLIP global features against its
visual class (cosine), with the centroids' distances and the within-class spread; (2) for each clip's rhythm
signal (50 Hz), whether one of its k largest frames lies within 0.1 s of each of the k planned cuts, against
k random frames (seed = the clip's index). Deterministic; a few seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dvmset.dataset import FeatureWindows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--window-s", type=int, default=8, help="the clips' length (the world's clip_s)")
    args = ap.parse_args()
    plans = json.loads((args.root / "world-media" / "plans.json").read_text())
    ds = FeatureWindows(args.root / "features", split=None, window_s=args.window_s)
    feats, classes, hits, chance, n_cuts = [], [], 0, [], 0
    for i in range(len(ds)):
        item = ds[i]
        plan = next(p for p in plans if item["clip_id"].startswith(p["name"]))
        feats.append(item["global"].float().mean(0).numpy())
        classes.append(plan["cls"])
        cuts = np.asarray(plan["cut_times"])
        if cuts.size:
            rhythm = item["rhythm"].float().numpy()
            top = np.argsort(rhythm)[-cuts.size:] / 50.0
            rand = np.random.default_rng(i).choice(rhythm.size, cuts.size, replace=False) / 50.0
            hits += int(sum(np.abs(top - c).min() <= 0.1 for c in cuts))
            chance.append(np.mean([np.abs(rand - c).min() <= 0.1 for c in cuts]))
            n_cuts += cuts.size
    x = np.stack(feats)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.asarray(classes)
    right = 0
    for i in range(len(x)):
        rest = np.arange(len(x)) != i
        cents = {c: x[rest & (y == c)].mean(0) for c in np.unique(y)}
        right += max(cents, key=lambda c: x[i] @ cents[c]) == y[i]
    cents = np.stack([x[y == c].mean(0) for c in np.unique(y)])
    spread = np.mean([np.linalg.norm(x[y == c] - x[y == c].mean(0), axis=1).mean() for c in np.unique(y)])
    apart = [np.linalg.norm(cents[a] - cents[b]) for a in range(len(cents)) for b in range(a + 1, len(cents))]
    print(f"global features: leave-one-out nearest centroid {right}/{len(x)}; centroids "
          f"{min(apart):.3f}-{max(apart):.3f} apart, within-class spread {spread:.3f}")
    print(f"rhythm signal: {hits}/{n_cuts} cuts with one of its top-k frames within 0.1 s "
          f"(k random frames: {np.mean(chance):.2f})")


if __name__ == "__main__":
    main()
