"""The miniature world's own scores after `ablate`: semantics and rhythm per row against shuffled pairs, the
IT check at stage 2's step 0, a figure, and the full row on real footage (flows.demos.world's last part)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from flows.training.ablate import AblateRun, row_dir
from flows.training.ablate_row import TEST_DIR
from model.metrics.beats import BeatConfig, onset_envelope, track_beats
from model.metrics.rhythm import rhythm_item
from model.metrics.world import (
    nearest_class,
    precision_vs_shuffled,
    rhythm_vs_shuffled,
    semantic_score,
    tempo_bpm,
)
from pipeline.audio import load_audio
from pipeline.cuts import detect_video_cuts
from pipeline.world import CLASSES

log = logging.getLogger(__name__)
Say = Callable[[str], None]
BEATS = BeatConfig()


def music_beats(wav_or_video: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(beat times, onset envelope at 22 050 / 256, duration) of a file's audio, as `evaluate` tracks beats."""
    import soxr

    wav, sr = load_audio(wav_or_video, sr=32000, channels=1)
    mono = soxr.resample(wav[0].astype(np.float32), sr, BEATS.sample_rate)
    beats = track_beats(mono, BEATS.sample_rate, BEATS)
    env = onset_envelope(mono, BEATS.sample_rate, BEATS)
    return beats, env, wav.shape[1] / sr


def clip_class(clip_id: str, plans: list) -> int:
    for plan in plans:
        if clip_id.startswith(plan.name):
            return plan.cls
    raise KeyError(f"{clip_id}: no world source is a prefix of it")


def world_report(root: Path, run: AblateRun, plans: list, records: list[dict], real_video: Path | None,
                 say: Say) -> dict:
    test_dir = Path(run.out) / TEST_DIR
    clips = sorted(p.stem for p in test_dir.glob("*.mp4"))
    truth = [clip_class(c, plans) for c in clips]
    cuts = {c: np.asarray(detect_video_cuts(test_dir / f"{c}.mp4").cut_times_s) for c in clips}
    report: dict = {"test_clips": clips, "test_classes": [CLASSES[k].word for k in truth],
                    "cuts_per_clip": {c: len(v) for c, v in cuts.items()}, "rows": {}}
    sources = {"reference music": {c: test_dir / f"{c}.mp4" for c in clips}}
    for rec in records:
        gen = row_dir(run.out, rec["row"]) / "generated"
        sources[rec["row"]] = {c: gen / f"{c}.wav" for c in clips}
    report["rows"], envelopes, _ = score_sources(sources, truth, cuts, run.train.recipe.seed, say)
    report["figure"] = str(draw_figure(root / "world" / "figure.png", clips, cuts, envelopes))
    best = {r["row"]: Path(r["best_checkpoint"]) for r in records}
    if "full" in best:
        report["it_check"] = it_check(run, best["full"].parent.parent / "stage1" / "best.pt")
        say(f"      IT check at stage 2 step 0: {report['it_check']}")
    if real_video is not None and real_video.is_file():
        sampling = {"cfg_coef": run.generate.cfg_coef, "top_k": run.generate.top_k,
                    "temperature": run.generate.temperature}
        report["real_footage"] = {row: real_footage(best[row], real_video, root / "world" / "real" / row, **sampling)
                                  for row in ("full", "no-rcm") if row in best}
        say(f"      real footage {real_video.name}: {report['real_footage']}")
    return report


def score_sources(sources: dict[str, dict[str, Path]], truth: list[int], cuts: dict[str, np.ndarray], seed: int,
                  say: Say) -> tuple[dict, dict[str, dict[str, np.ndarray]], dict[str, list[np.ndarray]]]:
    """Each source's music (name -> clip id -> file, clips in `cuts`' order) scored against its video: semantic
    (tracked tempo's class = the video's class `truth`), Rhythm recall and beat precision on the video's `cuts`,
    each against shuffled pairs. Returns (name -> scores, name -> clip -> onset envelope, name -> each clip's
    beat times); a source missing a file is skipped with a reason."""
    clips = list(cuts)
    bpms = [c.bpm for c in CLASSES]
    rows: dict = {}
    envelopes: dict[str, dict[str, np.ndarray]] = {}
    beats_of: dict[str, list[np.ndarray]] = {}
    for name, files in sources.items():
        if not all(f.is_file() for f in files.values()):
            rows[name] = {"skipped": "missing generated files"}
            continue
        beats, envs, tempos = [], {}, []
        for c in clips:
            b, env, _ = music_beats(files[c])
            beats.append(b)
            envs[c] = env
            tempos.append(tempo_bpm(b))
        envelopes[name], beats_of[name] = envs, beats
        pred = [nearest_class(t, bpms) for t in tempos]
        sem = semantic_score(pred, truth, seed=seed)
        rhy = rhythm_vs_shuffled([cuts[c] for c in clips], beats, seed=seed)
        pre = precision_vs_shuffled([cuts[c] for c in clips], beats, seed=seed)
        rows[name] = {"semantic": sem.to_json(), "rhythm": rhy.to_json(), "rhythm_precision": pre.to_json(),
                      "tempo_bpm": [round(t, 1) for t in tempos],
                      "music_class": [CLASSES[p].word if p >= 0 else None for p in pred]}
        say(f"      {name:>18}: semantic {sem.value:.2f} (chance {sem.chance:.2f}, diff CI "
            f"{_ci(sem)})   rhythm {rhy.value:.2f} (shuffled {rhy.chance:.2f}, diff CI {_ci(rhy)})   "
            f"precision {pre.value:.2f} (shuffled {pre.chance:.2f}, diff CI {_ci(pre)})")
    return rows, envelopes, beats_of


def _ci(p) -> str:  # noqa: ANN001 - model.metrics.world.Paired
    return "n/a" if p.diff_ci is None else f"[{p.diff_ci.low:+.2f}, {p.diff_ci.high:+.2f}]"


def draw_figure(path: Path, clips: list[str], cuts: dict, envelopes: dict, rows: tuple[str, ...] = (
        "full", "no-rcm", "reference music"), n_clips: int = 2) -> Path:
    """Onset envelope of the generated music under the test video's cut times (red), per row, for 2 clips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r in envelopes]
    picks = clips[:n_clips]
    fig, axes = plt.subplots(len(shown), len(picks), figsize=(7 * len(picks), 2.2 * len(shown)), squeeze=False)
    for i, row in enumerate(shown):
        for j, clip in enumerate(picks):
            ax = axes[i][j]
            env = envelopes[row][clip]
            t = np.arange(env.size) * BEATS.hop_length / BEATS.sample_rate
            ax.plot(t, env / max(env.max(), 1e-9), color="black", lw=0.8)
            for c in cuts[clip]:
                ax.axvline(c, color="red", lw=1.2, alpha=0.7)
            ax.set_title(f"{row}: {clip}", fontsize=9)
            ax.set_xlim(0, t[-1] if t.size else 1)
            ax.set_yticks([])
            if i == len(shown) - 1:
                ax.set_xlabel("seconds (red: the video's cuts; black: onset strength of the music)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def it_check(run: AblateRun, stage1_best: Path) -> dict:
    """Stage 2 at step 0 from the full row's stage-1 weights: with IT its logits equal the stage-1 model's
    (no rhythm module); with PyTorch's default init they differ, and the validation loss with them."""
    from dvmset.dataset import CODES, GLOBAL, RHYTHM, FeatureWindows
    from flows.training.train import features_source
    from model.training.checkpoint import read_checkpoint
    from model.vidmusician import VidMusician

    config, pkg = read_checkpoint(stage1_best)
    import pandas as pd

    features, _ = features_source(Path(run.data))
    manifest = pd.read_parquet(Path(run.data) / "manifest.parquet", columns=["clip_id", "split"])
    ids = sorted(manifest[manifest.split == run.split].clip_id)
    # the manifest's split, not the index's (another export may have rewritten that)
    val = FeatureWindows(features, window_s=run.train.recipe.window_s, seed=0, clip_ids=ids)
    items = [val[i] for i in range(min(len(val), 8))]
    glob = torch.stack([torch.as_tensor(it[GLOBAL]).float() for it in items])
    rhythm = torch.stack([torch.as_tensor(it[RHYTHM]).float() for it in items])
    codes = torch.stack([torch.as_tensor(it[CODES]).long() for it in items])
    out = {}
    for name, cfg in (("stage1", config.with_rhythm(enabled=False)), ("it", config),
                      ("no_it", config.with_rhythm(init_technique=False))):
        model = VidMusician.from_config(cfg, seed=run.train.recipe.seed).eval()
        with torch.no_grad():
            for n, p in model.trainable_state().items():
                if n.startswith("semantic."):
                    p.copy_(pkg["state"][n])
            res = model(glob, rhythm, codes)
            loss, _ = model.loss(glob, rhythm, codes)
        out[name] = (res.logits, float(loss))
    ref = out["stage1"][0]
    mask = torch.isfinite(ref)
    diff = {k: float((out[k][0][mask] - ref[mask]).abs().max()) for k in ("it", "no_it")}
    return {"max_abs_logit_diff_vs_stage1": diff, "it_equal": diff["it"] == 0.0, "no_it_equal": diff["no_it"] == 0.0,
            "val_loss": {k: v[1] for k, v in out.items()}, "windows": len(items)}


def real_footage(checkpoint: Path, video: Path, out_dir: Path, cfg_coef: float = 3.0, top_k: int = 250,
                 temperature: float = 1.0, seed: int = 0) -> dict:
    """`generate VIDEO --checkpoint CK` (backbone and CLIP from the checkpoint; the sampling the test split was
    generated with, from sampling seed `seed`), then Rhythm on its cuts."""
    from flows.training.generate import Generator, VideoJob
    from flows.training.generate_config import GenerateConfig

    cfg = GenerateConfig(checkpoint=checkpoint, out_dir=out_dir, seed=seed, mux=False, cfg_coef=cfg_coef, top_k=top_k,
                         temperature=temperature)
    gen = Generator.load(cfg)
    window = int(min(gen.model.config.max_duration_s, 10))
    gen = replace(gen, cfg=replace(gen.cfg, window_s=window))
    res = gen.run(VideoJob(video.stem, video))
    if not res.ok:
        return {"error": res.error}
    cuts = detect_video_cuts(video)
    beats, _, duration = music_beats(res.wav)
    item = rhythm_item(cuts.cut_times_s, beats, cuts.duration_s)
    return {"clip_model": gen.cfg.clip_model, "cuts": item.n_cuts, "beats": item.n_beats, "recall": item.recall,
            "chance_recall": item.chance_recall, "precision": item.precision, "tempo_bpm": round(tempo_bpm(beats), 1)}
