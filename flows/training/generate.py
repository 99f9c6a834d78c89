"""Music for videos: a checkpoint and any videos (or an export's split) -> DIR/{name}.wav and DIR/{name}.mp4.

Per video: its conditions through the features stage's own code (`pipeline.video_features`, cached by
content hash), long-form generation in windows of the video's own time span (`model.longform`), a float
WAV of exactly round(duration x 32000) samples, and the music muxed under the untouched picture
(`pipeline.mux`). A video that fails becomes a result with its error and the others go on; errors of
the whole run (out of memory, a full disk, an unloadable checkpoint) stop it (`pipeline.errors`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from flows.training.generate_config import GenerateConfig
from model.longform import decode_to_duration, generate_long
from model.training.checkpoint import CheckpointError, load_model, read_checkpoint
from model.vidmusician import VidMusician
from pipeline.audio import save_audio
from pipeline.clip_encoder import ClipEncoderSpec, ClipImageEncoder, load_clip_encoder, weights_sha256
from pipeline.errors import RunError, item_failure
from pipeline.mux import mux_audio
from pipeline.video_features import video_conditions

log = logging.getLogger(__name__)
DEFAULT_CLIP = "ViT-L-14"  # a checkpoint that records no CLIP (written before train recorded it)


class GenerateError(RunError):
    """Nothing can be generated with these settings (checkpoint, backbone, CLIP): the message says what to fix."""


@dataclass(frozen=True)
class VideoJob:
    name: str  # output stem: DIR/{name}.wav and .mp4
    video: Path


@dataclass(frozen=True)
class VideoResult:
    name: str
    video: Path
    wav: Path | None = None
    mp4: Path | None = None
    error: str | None = None
    duration_s: float | None = None
    windows: int = 0
    seconds: float = 0.0  # wall time

    @property
    def ok(self) -> bool:
        return self.error is None


def jobs_for_videos(videos: list[Path]) -> list[VideoJob]:
    """One job per video, named by its file stem (a repeated stem gets -2, -3, ...)."""
    seen: dict[str, int] = {}
    jobs = []
    for video in videos:
        stem = Path(video).stem
        seen[stem] = seen.get(stem, 0) + 1
        jobs.append(VideoJob(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}", Path(video)))
    return jobs


def jobs_for_export(export_dir: Path, split: str = "test") -> list[VideoJob]:
    """The clips of one split of an export (`vidmusician export`), named by clip id."""
    import pandas as pd

    manifest = Path(export_dir) / "manifest.parquet"
    if not manifest.is_file():
        raise GenerateError(f"{export_dir}: no manifest.parquet; pass an export folder (exports/NAME)")
    rows = pd.read_parquet(manifest, columns=["clip_id", "split", "path"])
    rows = rows[rows.split == split].sort_values("clip_id")
    if rows.empty:
        have = sorted(pd.read_parquet(manifest, columns=["split"]).split.dropna().unique())
        raise GenerateError(f"{export_dir}: no clips in split {split!r} (splits: {', '.join(have) or 'none'})")
    root = Path(export_dir).resolve().parents[1]  # exports/NAME -> the data root the paths are relative to
    jobs = []
    for r in rows.itertuples():
        linked = Path(export_dir) / "audio" / f"{r.clip_id}.mp4"
        jobs.append(VideoJob(r.clip_id, linked if linked.exists() else root / r.path))
    return jobs


@dataclass
class Generator:
    """A loaded model and CLIP encoder, ready for any number of videos."""

    cfg: GenerateConfig
    model: VidMusician
    encoder: ClipImageEncoder

    @classmethod
    def load(cls, cfg: GenerateConfig) -> Generator:
        """The checkpoint's model (its EMA weights when it holds them: best.pt already is them) and the CLIP
        its features were made with: by default the one it records; another one is refused unless
        `allow_other_clip` (compared by weights' sha256 when recorded, else by name)."""
        try:
            _, pkg = read_checkpoint(cfg.checkpoint)
            ema = (((pkg["extra"].get("train") or {}).get("ema") or {}).get("shadow")) is not None
            model = load_model(cfg.checkpoint, device=cfg.device, backbone=cfg.backbone, ema=ema)
        except (CheckpointError, OSError, ValueError, RuntimeError) as err:
            raise GenerateError(f"cannot load checkpoint {cfg.checkpoint}: {err}") from err
        recorded = dict(pkg["extra"].get("features") or {})
        recorded_clip = recorded.get("clip_model") or model.config.clip_model
        if cfg.clip_model is None:  # the features' extractor, as the checkpoint records it
            clip = recorded_clip or DEFAULT_CLIP
            pretrained = recorded.get("clip_pretrained") or cfg.clip_pretrained
            cfg = replace(cfg, clip_model=clip, clip_pretrained=None if clip == "tiny" else pretrained)
        if cfg.window_s > model.config.max_duration_s:
            raise GenerateError(f"--window {cfg.window_s} exceeds the model's {model.config.max_duration_s:g} s")
        try:
            spec = ClipEncoderSpec(model=cfg.clip_model, pretrained=cfg.clip_pretrained)
            encoder = load_clip_encoder(spec, device=cfg.device)
        except (OSError, ValueError, RuntimeError) as err:
            raise GenerateError(f"cannot load CLIP {cfg.clip_model!r}: {err}") from err
        want = model.config.semantic.clip_dim
        if encoder.embed_dim != want:
            raise GenerateError(
                f"checkpoint {cfg.checkpoint.name} was trained on CLIP features of width {want}, but "
                f"--clip-model {cfg.clip_model} gives {encoder.embed_dim}: pass the CLIP the shards were "
                "extracted with (the features index records it)")
        if not cfg.allow_other_clip and (why := _other_clip(recorded, recorded_clip, cfg.clip_model, encoder)):
            raise GenerateError(f"checkpoint {cfg.checkpoint.name} was trained on features of {why}: drop "
                                "--clip-model to use the recorded one, or pass --allow-other-clip to generate with "
                                "conditions the model was not trained on")
        return cls(cfg, model, encoder)

    def conditions(self, video: Path) -> tuple[float, float, torch.Tensor, torch.Tensor | None]:
        """(span, video duration, global [1, S, D], rhythm [1, S*50] or None) of one video."""
        cond = video_conditions(video, self.encoder, encoder_key=self.cfg.encoder_key,
                                cache_dir=self.cfg.feature_cache, duration_s=self.cfg.duration_s)
        device = next(self.model.lm.parameters()).device
        glob = torch.from_numpy(cond.global_.astype("float32"))[None].to(device)  # [1, S, D]
        rhythm = None
        if self.model.config.rhythm.enabled:
            source = cond.rhythm_global if self.model.config.rhythm.source == "global" else cond.rhythm
            rhythm = torch.from_numpy(source)[None].to(device)  # [1, S*50]
        return cond.duration_s, cond.video_duration_s, glob, rhythm

    def run(self, job: VideoJob) -> VideoResult:
        """One video -> its WAV (and MP4); a bad video is a result with an error, never an exception."""
        t0 = time.perf_counter()
        out_dir = self.cfg.out_dir
        try:
            span, _video_s, glob, rhythm = self.conditions(job.video)
            res = generate_long(self.model, glob, rhythm, span, self.cfg.longform, self.cfg.sampling,
                                seed=self.cfg.seed)
            audio = decode_to_duration(self.model, res.codes, span)  # [1, 1, round(span * 32000)]
            wav = save_audio(out_dir / f"{job.name}.wav", audio[0].float().cpu().numpy(),
                             int(self.model.codec.sample_rate))
            mp4 = mux_audio(job.video, wav, out_dir / f"{job.name}.mp4") if self.cfg.mux else None
        except Exception as err:  # noqa: BLE001 - the failure policy: whole-run errors re-raise, others are rows
            reason = item_failure(err)
            log.warning("%s: %s", job.video, reason)
            return VideoResult(job.name, job.video, error=reason, seconds=time.perf_counter() - t0)
        return VideoResult(job.name, job.video, wav, mp4, None, span, len(res.windows), time.perf_counter() - t0)


def _other_clip(recorded: dict, recorded_clip: str | None, clip_model: str, encoder: ClipImageEncoder) -> str | None:
    """Why `encoder` is not the CLIP the checkpoint records (None when it is, or nothing is recorded)."""
    want = recorded.get("clip_weights_sha256")
    if want:
        have = weights_sha256(encoder)
        return None if have == want else (f"CLIP {recorded_clip} (weights sha256 {want[:12]}...), and "
                                          f"--clip-model {clip_model} has weights {have[:12]}...")
    if recorded_clip is not None and clip_model != recorded_clip:
        return f"CLIP {recorded_clip}, not --clip-model {clip_model}"
    return None


ResultHook = Callable[[VideoResult], None]


def generate_batch(jobs: list[VideoJob], cfg: GenerateConfig, on_result: ResultHook | None = None,
                   generator: Generator | None = None) -> list[VideoResult]:
    """Every job in turn; the model loads once. A failed video is listed with its error, the rest go on."""
    if not jobs:
        raise GenerateError("no videos to generate for")
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    gen = generator or Generator.load(cfg)
    results = []
    for job in jobs:
        result = gen.run(job)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
