"""The report's pictures (PNG, linked from report.md): what a researcher would rather look at than read.

- ``beats_vs_cuts.png``: per clip, the generated music's beat times drawn under the video's cut
  times, for the few best and worst clips by Rhythm recall.
- ``dist_<metric>.png``: each metric's per-clip values against the same clips' shuffled-pair values
  (each clip scored against every other clip's partner).
"""

from __future__ import annotations

import math
from pathlib import Path

from dvmset.io import atomic_path
from flows.evaluation.evaluate import EvaluationReport

FIGURES = "figures"
N_EXTREME = 3  # best and worst clips drawn
TITLES = {"fd": "FD", "kl": "KL(real‖generated)", "clap": "CLAP cosine", "imagebind": "ImageBind cosine",
          "rhythm": "Rhythm recall", "bcs_bhs": "BCS (LORIS)", "beat_align": "Beat alignment (Bailando)"}


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _rhythm_rows(report: EvaluationReport) -> list[dict]:
    m = report.metrics.get("rhythm")
    if m is None or m.skipped:
        return []
    return [r for r in m.items if "excluded" not in r and _finite(r["value"]) and r["clip_id"] in report.timelines]


def extreme_clips(report: EvaluationReport, n: int = N_EXTREME) -> list[tuple[str, str]]:
    """(clip id, "best"/"worst") for the n best and n worst clips by Rhythm recall, best first."""
    rows = sorted(_rhythm_rows(report), key=lambda r: (-r["value"], r["clip_id"]))
    if len(rows) <= 2 * n:
        return [(r["clip_id"], "best" if i < (len(rows) + 1) // 2 else "worst") for i, r in enumerate(rows)]
    return [(r["clip_id"], "best") for r in rows[:n]] + [(r["clip_id"], "worst") for r in rows[-n:]]


def figure_list(report: EvaluationReport) -> list[tuple[str, str]]:
    """(relative path, caption) of every picture this report has, in the order report.md links them."""
    out = []
    if extreme_clips(report):
        out.append((f"{FIGURES}/beats_vs_cuts.png",
                    "music beats under the video's cuts, best and worst clips by Rhythm recall"))
    for name, m in report.metrics.items():
        if not m.skipped and any(_finite(r.get("value")) and _finite(r.get("shuffled")) for r in m.items):
            out.append((f"{FIGURES}/dist_{name}.png", f"{TITLES.get(name, name)} per clip against its shuffled pairs"))
    return out


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _beats_vs_cuts(report: EvaluationReport, path: Path, tolerance_s: float) -> None:
    import matplotlib.pyplot as plt

    clips = extreme_clips(report)
    recall = {r["clip_id"]: r["value"] for r in _rhythm_rows(report)}
    fig, axes = plt.subplots(len(clips), 1, figsize=(9, 1.15 * len(clips) + 0.6), squeeze=False, sharex=False)
    for ax, (cid, kind) in zip(axes[:, 0], clips, strict=True):
        t = report.timelines[cid]
        for c in t["cuts"]:
            ax.axvspan(c - tolerance_s, c + tolerance_s, ymin=0.5, ymax=1.0, color="#f4c7c3", lw=0)
        ax.vlines(t["cuts"], 0.55, 0.95, color="#c0392b", lw=2, label="video cut")
        ax.vlines(t["beats"], 0.05, 0.45, color="#2c3e50", lw=1.2, label="music beat")
        ax.set_xlim(0, t["duration_s"] or max([*t["cuts"], *t["beats"], 1.0]))
        ax.set_ylim(0, 1)
        ax.set_yticks([0.25, 0.75], ["beats", "cuts"])
        ax.set_title(f"{cid} ({kind}): Rhythm recall {recall[cid]:.2f}", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel(f"seconds (shaded: ±{tolerance_s:g} s around each cut)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.legend(handles, labels, loc="upper right", fontsize=8, ncol=2, frameon=False)
    _save(fig, path)
    plt.close(fig)


def _distribution(name: str, rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    pairs = [(r["value"], r["shuffled"]) for r in rows if _finite(r.get("value")) and _finite(r.get("shuffled"))]
    real, shuf = [p[0] for p in pairs], [p[1] for p in pairs]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    lo, hi = min(real + shuf), max(real + shuf)
    bins = 20 if hi > lo else 1
    ax.hist(shuf, bins=bins, range=(lo, hi) if hi > lo else None, alpha=0.55, color="#95a5a6",
            label=f"shuffled pairs (mean {sum(shuf) / len(shuf):.3f})")
    ax.hist(real, bins=bins, range=(lo, hi) if hi > lo else None, alpha=0.65, color="#2980b9",
            label=f"this run's pairs (mean {sum(real) / len(real):.3f})")
    ax.set_xlabel(f"{TITLES.get(name, name)} per clip (n={len(pairs)})")
    ax.set_ylabel("clips")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def write_figures(report: EvaluationReport, out_dir: Path) -> list[Path]:
    """Draw every picture of :func:`figure_list` under ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    written = []
    rhythm = report.metrics.get("rhythm")
    tolerance = rhythm.extra.get("tolerance_s", 0.1) if rhythm is not None and not rhythm.skipped else 0.1
    for rel, _ in figure_list(report):
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("beats_vs_cuts.png"):
            _beats_vs_cuts(report, path, tolerance)
        else:
            name = Path(rel).stem.removeprefix("dist_")
            _distribution(name, report.metrics[name].items, path)
        written.append(path)
    return written
