"""`vidmusician demo --world`: the miniature world where the paper's claims can be checked on CPU.

Builds the world's videos (pipeline.world), pre-trains the miniature MusicGen on the world's music alone
(model.training.miniature, saved in audiocraft's layout), then runs what a user runs: curate (served on loopback,
`--separator none`), DEMO SHORTCUT accept, features (tiny random CLIP, the miniature backbone's codec),
export, and `ablate` with Table 2's rows and both references. Then the world's own scores
(flows.demos.world_report): semantics (tempo of the generated music vs the video's class) and rhythm
against shuffled pairs with bootstrap intervals, the IT check at stage 2's step 0, a figure, and the full
row on real footage. Every part prints its wall time. A re-run reuses what is done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from dvmset.catalog import Catalog
from dvmset.export import export_dataset
from dvmset.layout import DataRoot
from flows.config import CurateConfig, FeaturesConfig
from flows.curation.curate import run_curate
from flows.dataset.features import run_features
from flows.demos.full import SHORTCUT_ANNOTATOR, accept_all
from flows.demos.small import serve_directory
from flows.evaluation.evaluate import EvaluateConfig
from flows.settings import catalog_url
from flows.training.ablate import AblateRun, run_ablate
from flows.training.generate_config import GenerateConfig
from flows.training.run import TrainRun
from model.training.config import TrainConfig
from pipeline.probe import audio_rate

Say = Callable[[str], None]
EXPORT = "world"
ALL_ROWS = ("full", "no-t5", "no-rcm", "no-it", "one-stage", "at", "musicongen", "musicongen-no-it",
            "backbone", "untrained")


@dataclass(frozen=True)
class WorldScale:
    """How big the world and its runs are. `small` is the slow test's; `full` the documented experiment."""

    name: str
    videos_per_class: int
    clips_per_video: int
    clip_s: int
    pretrain_pieces_per_class: int
    pretrain_steps: int
    steps_per_stage: int
    rows: tuple[str, ...]
    batch_size: int = 8
    window_s: int = 4
    lr1: float = 3e-3  # stage 1 (the paper: 1e-4 over 120 epochs; a few hundred steps here)
    lr2: float = 1e-3  # stage 2 (the paper: a tenth of stage 1's)
    warmup: int = 20
    pretrain_batch: int = 8
    pretrain_window_s: float = 4.0
    test_fraction: float = 0.3
    # a handful of videos per class: a valid split would take one of the few left to train on, so the world
    # trains without one (best.pt is the latest checkpoint; training never reads the test split)
    valid_fraction: float = 0.0
    cfg_coef: float = 3.0
    seed: int = 0

    @property
    def source_s(self) -> int:
        return self.clips_per_video * self.clip_s


SCALES = {
    "small": WorldScale("small", videos_per_class=4, clips_per_video=1, clip_s=8, pretrain_pieces_per_class=6,
                        pretrain_steps=150, steps_per_stage=60, rows=("full", "no-rcm", "no-it")),
    "full": WorldScale("full", videos_per_class=6, clips_per_video=1, clip_s=8, pretrain_pieces_per_class=8,
                       pretrain_steps=200, steps_per_stage=80, rows=ALL_ROWS, test_fraction=0.34),
}


def default_real_video() -> Path | None:
    """Real footage with cuts, where the shared media are checked out next to the repository."""
    here = Path(__file__).resolve().parents[2].parent / "shared" / "media" / "bikes_cuts_10s.mp4"
    return here if here.is_file() else None


class Clock:
    """Wall time of each part, printed as it ends and kept for the report."""

    def __init__(self, say: Say) -> None:
        self.say, self.parts, self.t0 = say, {}, time.perf_counter()

    def part(self, name: str, started: float, note: str = "") -> None:
        self.parts[name] = round(time.perf_counter() - started, 1)
        self.say(f"      {name}: {self.parts[name]:.0f} s{(' - ' + note) if note else ''} "
                 f"(total {time.perf_counter() - self.t0:.0f} s)")


def build_media(root: Path, scale: WorldScale) -> tuple[Path, list]:
    """The world's source MP4s (made once) and their plans, written to ROOT/world-media/plans.json."""
    from pipeline.world import plan_world, write_world_video

    media = root / "world-media"
    media.mkdir(parents=True, exist_ok=True)
    plans = plan_world(scale.videos_per_class, scale.source_s, seed=scale.seed)
    for plan in plans:
        path = media / f"{plan.name}.mp4"
        if not path.exists():
            write_world_video(plan, path)
    (media / "plans.json").write_text(json.dumps([asdict(p) for p in plans], indent=1))
    return media, plans


def pretrain_backbone(root: Path, scale: WorldScale, say: Say) -> Path:
    """The miniature MusicGen in audiocraft's layout at ROOT/backbone (trained once), frozen from then on."""
    from dvmset.checkpoints import LM_FILE
    from dvmset.envelope_codec import EnvelopeCodec
    from model.training.miniature import PretrainConfig, class_word_bins, pretrain_lm, save_miniature
    from pipeline.loudness import normalize_clip
    from pipeline.world import CLASSES, plan_world, synth_music

    out = root / "backbone"
    if (out / LM_FILE).is_file():
        say(f"      {out} already holds the pre-trained backbone")
        return out
    class_word_bins([c.word for c in CLASSES])
    codec = EnvelopeCodec()
    pieces = plan_world(scale.pretrain_pieces_per_class, scale.source_s, seed=scale.seed + 1, prefix="pretrain")
    corpus, words = [], []
    for piece in pieces:  # the same loudness normalisation curation applies, so the codes match the features'
        music, _ = normalize_clip(synth_music(piece)[None], codec.sample_rate)
        codes, _ = codec.encode(torch.from_numpy(music)[None])  # [1, 4, T]
        corpus.append(codes[0])
        words.append(piece.world_class.word)
    cfg = PretrainConfig(scale="mini", steps=scale.pretrain_steps, batch_size=scale.pretrain_batch,
                         window_s=scale.pretrain_window_s, seed=scale.seed)
    res = pretrain_lm(corpus, words, cfg)
    first, last = sum(res.losses[:10]) / 10, sum(res.losses[-10:]) / 10
    say(f"      {len(corpus)} pieces, {cfg.steps} steps: loss {first:.3f} -> {last:.3f}")
    save_miniature(res.lm, codec, out, scale="mini")
    (out / "pretrain.json").write_text(json.dumps({"config": asdict(cfg), "losses": res.losses,
                                                   "seconds": res.seconds, "pieces": len(corpus)}))
    return out


def curated_already(db_url: str, plans: list) -> bool:
    """Whether every world source already has clips in the catalog (a re-run serves on another port, and
    yt-dlp would see new URLs: the sources are not curated twice)."""
    from sqlalchemy import select

    from dvmset.tables import Clip

    catalog = Catalog(db_url)
    try:
        with catalog.session() as s:
            ids = list(s.scalars(select(Clip.id)))
    finally:
        catalog.dispose()
    return all(any(i.startswith(p.name) for i in ids) for p in plans)


def curate_world(root_dir: DataRoot, db_url: str, media: Path, plans: list, scale: WorldScale) -> dict:
    if curated_already(db_url, plans):
        return {"done": 0, "failed": 0, "skipped": len(plans)}
    cfg = CurateConfig(separator="none", clip_seconds=float(scale.clip_s), workers=2)
    with serve_directory(media) as base:
        return run_curate(root_dir, db_url, queries=[], urls=[f"{base}/{p.name}.mp4" for p in plans], per_query=0,
                          cfg=cfg)


def ablate_run(export: Path, out: Path, backbone: Path, scale: WorldScale, rows: tuple[str, ...]) -> AblateRun:
    recipe = TrainConfig(stage=1, lr=scale.lr1, warmup_steps=scale.warmup, batch_size=scale.batch_size,
                         steps=scale.steps_per_stage, window_s=scale.window_s, seed=scale.seed)
    train = TrainRun(data=export, out=out, recipe=recipe, lr2=scale.lr2, backbone=str(backbone.resolve()), t5="debug",
                     device="cpu", val_every=max(1, scale.steps_per_stage // 4), ckpt_every=scale.steps_per_stage,
                     keep=1, workers=0)
    generate = GenerateConfig(checkpoint=out, out_dir=out, seed=scale.seed, window_s=scale.clip_s, clip_model="tiny",
                              cfg_coef=scale.cfg_coef, mux=False)
    evaluate = EvaluateConfig(generated=out, reference=out, metrics=("rhythm",), seed=scale.seed)
    return AblateRun(data=export, out=out, rows=rows, train=train, generate=generate, evaluate=evaluate)


def run_world_demo(root: Path, scale: WorldScale = SCALES["full"], say: Say = print, rows: tuple[str, ...] | None = None,
                   real_video: Path | None = None, threads: int | None = 1) -> dict:
    """The whole experiment; returns the report (also ROOT/world/report.json, with table2 and the figure)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(Path(root), scale, say, rows or scale.rows, real_video)
    finally:
        torch.set_num_threads(before)


def _run(root: Path, scale: WorldScale, say: Say, rows: tuple[str, ...], real_video: Path | None) -> dict:
    from flows.demos.world_report import world_report

    clock = Clock(say)
    root_dir = DataRoot(root).ensure()
    db_url = catalog_url(root_dir)
    say(f"[1/7] world ({scale.name}): {scale.videos_per_class} videos per class x 3 classes, {scale.source_s} s each")
    t = time.perf_counter()
    media, plans = build_media(root_dir.path, scale)
    clock.part("world", t, f"{len(plans)} sources in {media}")
    say("[2/7] pre-training the miniature MusicGen ('mini' LM + envelope codec) on the world's music alone")
    t = time.perf_counter()
    backbone = pretrain_backbone(root_dir.path, scale, say)
    clock.part("pretrain", t, str(backbone))
    say("[3/7] curate: the sources served on loopback, through yt-dlp (--separator none)")
    t = time.perf_counter()
    cur = curate_world(root_dir, db_url, media, plans, scale)
    clock.part("curate", t, f"{cur['done']} done, {cur['failed']} failed")
    catalog = Catalog(db_url)
    try:
        t = time.perf_counter()
        accepted = accept_all(catalog)
        say(f"[4/7] DEMO SHORTCUT: {len(accepted)} clips accepted by '{SHORTCUT_ANNOTATOR}' (no one reviewed them)")
        feats = run_features(root_dir, db_url, FeaturesConfig(clip_model="tiny", codec=str(backbone.resolve()),
                                                              clip_s=scale.clip_s, clips_per_shard=16, batch_size=25,
                                                              retry_failed=True))
        clock.part("features", t, f"{feats['done']} extracted, {feats['already']} already, "
                                  f"{len(feats['failed'])} failed")
        summary = export_dataset(root_dir, catalog, EXPORT, test_fraction=scale.test_fraction, seed=scale.seed,
                                 valid_fraction=scale.valid_fraction, audio_rate=audio_rate)
    finally:
        catalog.dispose()
    say(f"[5/7] export '{EXPORT}': {summary.train} train / {summary.test} test clips (split by video)")
    out = root_dir.path / "world" / "ablate"
    run = ablate_run(summary.path, out, backbone, scale, rows)
    say(f"[6/7] ablate: {', '.join(rows)} -> {out}")
    t = time.perf_counter()
    row_t: dict[str, float] = {}

    def on_row(name: str, what: str) -> None:
        row_t.setdefault(name, time.perf_counter())
        if what in ("done", "cached"):
            say(f"      row {name}: {what} ({time.perf_counter() - row_t[name]:.0f} s)")

    result = run_ablate(run, on_row)
    clock.part("ablate", t, str(result.table_md))
    say("[7/7] the world's scores, the IT check, the figure and real footage")
    t = time.perf_counter()
    report = world_report(root_dir.path, run, plans, result.rows, real_video, say)
    clock.part("report", t)
    report["timings_s"] = clock.parts
    report["scale"] = asdict(replace(scale, rows=tuple(rows)))
    report["threads"] = torch.get_num_threads()
    (root_dir.path / "world" / "report.json").write_text(json.dumps(report, indent=2, default=str))
    say(f"world demo finished in {time.perf_counter() - clock.t0:.0f} s: {root_dir.path / 'world' / 'report.json'}")
    return report
