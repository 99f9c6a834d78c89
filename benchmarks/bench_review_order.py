"""Queue order against decisions needed: a simulated review where each clip's true verdict is drawn from
its QC hints plus noise, reviewed in the plain queue order, most-uncertain-first and most-likely-kept-first
(dvmset.review_order, the code `vidmusician review --order` runs).

Run by hand:  python benchmarks/bench_review_order.py [--clips 4000] [--keep 1000] [--seeds 5]
                                                      [--noise 1.0] [--rerank 20]

Per order it prints the decisions needed to reach --keep kept clips (mean and range over seeds) and the
model's accuracy on the clips still pending after --probe decisions (how fast an order learns).
The reviewer is taken to give the true verdict; the model is refitted every --rerank decisions (a
server re-ranks every RANK_TTL_S seconds: with 16 annotators at ~20 s a clip, about every 8).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from dvmset.review_order import FEATURES, ORDERS, fit, rank

#: the true model: weight per hint on the log-odds of keeping a clip (an assumption for the simulation,
#: in the direction the reject reasons point: silence, still pictures, vocals and limiting cost a clip)
TRUE_WEIGHTS = {"silence_ratio": -10.0, "still_s": -0.09, "scene_cuts": 0.06, "vocal_energy": -15.0,
                "loudness_range_lu": 0.05, "limiting_db": -0.6}
TRUE_INTERCEPT = 1.6


def simulate_clips(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hints [n, F] (about 5 % not measured, NaN) and true verdicts [n] (1 = kept)."""
    cols = {
        "silence_ratio": rng.beta(1.0, 12.0, n),
        "still_s": np.where(rng.random(n) < 0.7, np.minimum(rng.exponential(5.0, n), 60.0), rng.uniform(15, 60, n)),
        "scene_cuts": rng.poisson(6.0, n).astype(float),
        "vocal_energy": rng.beta(1.0, 18.0, n),
        "loudness_range_lu": np.clip(rng.normal(7.0, 3.0, n), 0.0, None),
        "limiting_db": rng.exponential(1.0, n),
    }
    x = np.stack([cols[f] for f in FEATURES], axis=1)  # [n, F]
    logit = TRUE_INTERCEPT + x @ np.array([TRUE_WEIGHTS[f] for f in FEATURES]) + rng.normal(0.0, noise, n)
    kept = (logit > 0).astype(float)
    x[rng.random(x.shape) < 0.05] = np.nan
    return x, kept


def review(order: str, x: np.ndarray, kept: np.ndarray, target: int, rerank: int, probe: int) -> tuple[int, float]:
    """Decisions needed to reach ``target`` kept clips in ``order``, and the model's accuracy on the clips
    still pending after ``probe`` decisions (NaN when it could not be fitted yet)."""
    ids = [f"c{i:06d}" for i in range(len(kept))]
    index = {c: i for i, c in enumerate(ids)}
    pending = set(range(len(kept)))
    decided: list[int] = []
    n_kept, accuracy = 0, float("nan")
    while n_kept < target and pending:
        model = fit(x[decided], kept[decided]) if decided else None
        todo = sorted(pending)
        p = None if model is None else model.p_keep(x[todo])
        batch = rank(order, [ids[i] for i in todo], p)[:rerank]
        for c in batch:
            i = index[c]
            pending.discard(i)
            decided.append(i)
            n_kept += int(kept[i])
            if len(decided) == probe:
                m = fit(x[decided], kept[decided])
                rest = sorted(pending)
                if m is not None and rest:
                    accuracy = float(((m.p_keep(x[rest]) > 0.5) == (kept[rest] > 0.5)).mean())
            if n_kept >= target:
                break
    return len(decided), accuracy


def main(argv: list[str] | None = None) -> dict[str, dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4000)
    ap.add_argument("--keep", type=int, default=1000, help="kept clips to reach")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--noise", type=float, default=1.0, help="sd of the noise on the true log-odds")
    ap.add_argument("--rerank", type=int, default=20, help="decisions between refits")
    ap.add_argument("--probe", type=int, default=200, help="decisions after which the model's accuracy is read")
    args = ap.parse_args(argv)
    out: dict[str, dict] = {o: {"decisions": [], "accuracy": []} for o in ORDERS}
    base_rates = []
    for seed in range(args.seeds):
        x, kept = simulate_clips(args.clips, args.noise, np.random.default_rng(seed))
        base_rates.append(kept.mean())
        for order in ORDERS:
            n, acc = review(order, x, kept, args.keep, args.rerank, args.probe)
            out[order]["decisions"].append(n)
            out[order]["accuracy"].append(acc)
    print(f"{args.clips} simulated clips, {100 * statistics.mean(base_rates):.1f} % truly kept, noise sd "
          f"{args.noise}, {args.seeds} seeds; decisions to reach {args.keep} kept clips (mean, min-max) and the "
          f"model's accuracy on the pending clips after {args.probe} decisions:")
    plain = statistics.mean(out["queue"]["decisions"])
    for order in ORDERS:
        d, a = out[order]["decisions"], [v for v in out[order]["accuracy"] if not np.isnan(v)]
        mean = statistics.mean(d)
        print(f"  {order:12s} {mean:7.0f} decisions ({min(d)}-{max(d)}), {100 * (1 - mean / plain):4.1f} % fewer "
              f"than the queue; accuracy {100 * statistics.mean(a):.1f} %" if a else
              f"  {order:12s} {mean:7.0f} decisions ({min(d)}-{max(d)}); accuracy n/a")
        out[order]["mean_decisions"] = mean
    return out


if __name__ == "__main__":
    main()
