"""`vidmusician demo --full`: the whole path on one machine, offline, in minutes, with random weights.

The curate demo (ffmpeg-made sources served on loopback, curated through yt-dlp), then DEMO SHORTCUTS a
real run would not take: every clip accepted by a "demo-shortcut" annotator, features with the tiny
random CLIP and codec, an export, both training stages for a few dozen steps on the debug backbone, and
music generated for one curated clip. Every model here has random weights: the music is noise-like and
says nothing about VidMusician's quality; the point is that each stage runs and hands its output on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from sqlalchemy import select

from dvmset.catalog import Catalog
from dvmset.constants import CLIP_SECONDS
from dvmset.export import export_dataset
from dvmset.layout import DataRoot
from dvmset.records import ClipStatus
from dvmset.review import add_annotator, decide
from dvmset.tables import Annotator, Clip
from flows.curation.curate import CurateConfig, run_curate
from flows.dataset.features import FeaturesConfig, run_features
from flows.demos.small import demo_separator, make_demo_media, serve_directory
from flows.settings import catalog_url
from flows.training.generate import GenerateConfig, GenerateError, Generator, VideoJob
from flows.training.run import TrainRun
from flows.training.train import run_training
from model.training.config import TrainConfig
from pipeline.probe import audio_rate

log = logging.getLogger(__name__)
SHORTCUT_ANNOTATOR = "demo-shortcut"
EXPORT_NAME = "demo"
RANDOM_WEIGHTS = ("WEIGHTS ARE RANDOM: the tiny CLIP, the tiny codec, the debug MusicGen and T5 are random "
                  "networks and training ran a few dozen steps, so the music is noise-like. This demo shows "
                  "that every stage runs, not what VidMusician sounds like.")


@dataclass(frozen=True)
class FullDemoConfig:
    """Sizes that keep the whole demo under five minutes on two cores."""

    steps_per_stage: int = 24
    clip_s: int = CLIP_SECONDS  # the curated clips' length (the features stage reads this much)
    window_s: int = 2  # training windows (the debug recipe)
    gen_seconds: float | None = 12.0  # music for the clip's first seconds (None: the whole 60 s clip)
    gen_window_s: int = 6  # long-form windows for generation (< gen_seconds: shows the windowing)
    gen_stride_s: int = 4
    torch_threads: int | None = 1  # tiny models run fastest on one thread (OpenMP spinning on a shared machine)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps_per_stage < 1:
            raise ValueError(f"steps_per_stage must be >= 1, got {self.steps_per_stage}")
        if self.gen_seconds is not None and self.gen_seconds < 1:
            raise ValueError(f"gen_seconds must be >= 1 s or None, got {self.gen_seconds}")


Say = Callable[[str], None]
CurateStep = Callable[[DataRoot, str, Say], dict]  # (root, catalog URL, say) -> {"done": n, "failed": n, ...}


def curate_demo(root: DataRoot, db_url: str, say: Say) -> dict:
    """The curate demo: sample sources made with ffmpeg, served on loopback, curated through yt-dlp."""
    media_dir = root.path / "demo-media"
    say(f"[1/6] curate: making sample sources with ffmpeg in {media_dir} and curating them through yt-dlp ...")
    paths = make_demo_media(media_dir)
    separator = demo_separator()
    if separator == "none":
        say("      Demucs weights are not in the torch-hub cache: vocal removal is skipped (recorded).")
    with serve_directory(media_dir) as base:
        return run_curate(root, db_url, queries=[], urls=[f"{base}/{p.name}" for p in paths], per_query=0,
                          cfg=CurateConfig(separator=separator))


def accept_all(catalog: Catalog) -> list[str]:
    """DEMO SHORTCUT: every clip waiting for review accepted by one annotator, through the review API."""
    with catalog.session() as s:
        ann = s.scalars(select(Annotator).where(Annotator.name == SHORTCUT_ANNOTATOR)).first()
        if ann is None:
            ann, _token = add_annotator(s, SHORTCUT_ANNOTATOR)  # no one signs in with it: the token is dropped
        pending = s.scalars(select(Clip.id).where(Clip.status == ClipStatus.PENDING_REVIEW).order_by(Clip.id)).all()
        for clip_id in pending:
            decide(s, ann.id, clip_id, "accept", note="demo shortcut: accepted without review")
        return list(s.scalars(select(Clip.id).where(Clip.status == ClipStatus.ACCEPTED).order_by(Clip.id)))


def run_full_demo(root: Path, cfg: FullDemoConfig = FullDemoConfig(), say: Say = print,
                  curate: CurateStep = curate_demo) -> Path:
    """Curate -> accept all -> features -> export -> train both stages -> generate; returns the MP4's path.

    `say` receives the progress lines (the CLI passes print); `curate` is the first step (the tests pass a
    smaller one). Re-running reuses what is done: curated
    sources are skipped, extracted clips stay in their shards, and training resumes (finished stages skip).
    """
    before = torch.get_num_threads()
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    try:
        return _run(Path(root), cfg, say, curate)
    finally:
        torch.set_num_threads(before)


def _run(root: Path, cfg: FullDemoConfig, say: Say, curate: CurateStep) -> Path:
    t0 = time.perf_counter()
    root_dir = DataRoot(Path(root)).ensure()
    db_url = catalog_url(root_dir)
    say(RANDOM_WEIGHTS)
    result = curate(root_dir, db_url, say)
    say(f"      curate: {result['done']} sources done, {result['failed']} failed ({time.perf_counter() - t0:.0f} s)")

    catalog = Catalog(db_url)
    try:
        accepted = accept_all(catalog)
        if not accepted:
            raise RuntimeError(f"the curate demo made no clips in {root_dir.path}; see `vidmusician status`")
        say(f"[2/6] DEMO SHORTCUT: all {len(accepted)} clips accepted by annotator '{SHORTCUT_ANNOTATOR}' "
            "(a real dataset is reviewed by people: `vidmusician review`)")

        say("[3/6] features: DEMO SHORTCUT with the tiny random CLIP and codec (real runs: ViT-L-14 + "
            "MusicGen's EnCodec) ...")
        feats = run_features(root_dir, db_url, FeaturesConfig(clip_model="tiny", codec="tiny", clip_s=cfg.clip_s,
                                                              clips_per_shard=8, batch_size=25))
        if feats["failed"]:
            say(f"      features failed for {sorted(feats['failed'])}")
        say(f"      features: {feats['done']} extracted, {feats['already']} already in shards "
            f"({time.perf_counter() - t0:.0f} s)")

        summary = export_dataset(root_dir, catalog, EXPORT_NAME, audio_rate=audio_rate)
    finally:
        catalog.dispose()
    say(f"[4/6] export '{EXPORT_NAME}': {summary.train} train / {summary.valid} valid / {summary.test} test clips "
        f"-> {summary.path}")

    run_dir = root_dir.path / "runs" / EXPORT_NAME
    say(f"[5/6] train: DEMO SHORTCUT, stage 1 then stage 2 for {cfg.steps_per_stage} steps each on the debug "
        f"backbone (the paper: 120 epochs per stage on MusicGen-medium) -> {run_dir}")
    recipe = TrainConfig.debug(stage=1, steps=cfg.steps_per_stage, window_s=cfg.window_s, seed=cfg.seed)
    run = TrainRun(data=summary.path, out=run_dir, stages=(1, 2), recipe=recipe, backbone="debug",
                   device="cpu", val_every=cfg.steps_per_stage, ckpt_every=cfg.steps_per_stage, keep=1, workers=0)
    trained = run_training(run)
    checkpoint = trained.best[2]
    say(f"      stage 2 checkpoint: {checkpoint} ({time.perf_counter() - t0:.0f} s)")

    clip_id = accepted[0]
    video = root_dir.clip_path(clip_id)
    out_dir = root_dir.path / "demo-music"
    gcfg = GenerateConfig(checkpoint=checkpoint, out_dir=out_dir, duration_s=cfg.gen_seconds, seed=cfg.seed,
                          window_s=cfg.gen_window_s, stride_s=cfg.gen_stride_s, clip_model="tiny")
    span = "the whole clip" if cfg.gen_seconds is None else f"its first {cfg.gen_seconds:g} s (the rest silent)"
    say(f"[6/6] generate: music for clip {clip_id}, {span}, in {cfg.gen_window_s} s windows every "
        f"{cfg.gen_stride_s} s ...")
    res = Generator.load(gcfg).run(VideoJob(clip_id, video))
    if not res.ok or res.mp4 is None:
        raise GenerateError(f"generation for {clip_id} failed: {res.error}")
    say(f"      {res.windows} windows, {res.seconds:.0f} s; wav {res.wav}")
    say(f"demo finished in {time.perf_counter() - t0:.0f} s. {RANDOM_WEIGHTS.split(':')[0]}.")
    say(f"the video with its (random-weight) music: {res.mp4}")
    return res.mp4
