"""The train flow: feature shards -> VidMusician, stage 1 then stage 2, resumable bitwise.

RUN_DIR/config.yaml is the run's resolved config (the command's options with every default filled in,
each stage's recipe, the model and the features it trains on); a re-run that differs from it in anything
but the run's length and cadence is refused, naming the fields. RUN_DIR/stage{N}/ holds ckpt-{step}.pt
(last K), best.pt (lowest validation loss on the valid split; with --ema, the EMA weights, validated as
such, so stage 2 starts from them and `generate` reads them), metrics.csv (each validation also reports
val_loss_guided, the loss under the guided logits `generate` samples from at --val-cfg-coef), tb/ and, with
`sample_every`, samples/. Without a progress bar (no terminal) the log gets a loss line every
`log_every` steps. Running the same command on the same RUN_DIR resumes each stage from its latest
checkpoint (a finished stage is skipped); the data order is a function of (seed, epoch) only and the
position within the epoch is saved, so a resumed run ends equal to an uninterrupted one.

`--stage both` starts stage 2 from stage 1's best.pt with a **fresh** AdamW and warm-up: stage 2 trains
another parameter set (the rhythm module joins) at a tenth of the lr, and stage 1's Adam moments —
sized for lr 1e-4 on the semantic module only — would be stale for it; the paper describes stage 2 as
its own run with its own lr and warm-up ("a warm-up learning rate is applied to all training layers").
`--stage 2` alone starts the same way from RUN_DIR/stage1/best.pt (or from --init), and is refused when
there is neither.
Under torchrun every rank trains (DDP: gloo on CPU, NCCL on GPU), rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from prefect import flow
from torch.utils.data import DataLoader

from dvmset.dataset import (
    MANIFEST,
    ExportSplit,
    FeatureWindows,
    batches_per_epoch,
    epoch_batches,
    read_export_split,
    split_sha256,
)
from dvmset.records import TRAIN, VALID
from dvmset.shards import CorruptShards, check_shards
from flows.training.output import (
    BEST,
    MetricsWriter,
    ckpt_path,
    copy_best,
    latest_checkpoint,
    prune,
    stage_dir,
    sweep_partials,
    write_run_config,
)
from flows.training.run import TrainRun
from model.config import SemanticConfig, VidMusicianConfig
from model.metrics.rhythm import RhythmItem
from model.training.checkpoint import load_model, load_trainable, read_checkpoint
from model.training.config import TrainConfig
from model.training.data import check_features
from model.training.state import frozen_fingerprint, read_training, restore_training, save_training
from model.training.step import NonFiniteLossError, TrainState, Validation, new_state, train_step, validate
from model.vidmusician import VidMusician

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """What `--data` names: the features, the clips of an export (None: every clip), and the split."""

    features: Path
    ids: list[str] | None
    export: ExportSplit | None  # the export's own split (None: --data is not an export)

    def split_ids(self, split: str) -> list[str]:
        """The clips of one split: the export's manifest's, else the feature index's split column."""
        if self.export is not None:
            return self.export.ids(split)
        index = pd.read_parquet(self.features / "index.parquet", columns=["clip_id", "split"])
        if index.split.isna().all():  # never exported: every clip trains, nothing validates
            return sorted(index.clip_id) if split == TRAIN else []
        return sorted(index[index.split == split].clip_id)

    def record(self) -> dict:
        """What a training checkpoint keeps: the export's manifest hash and split (else the index's split of
        the clips training reads), so that a resume on changed data is refused."""
        if self.export is not None:
            return self.export.record()
        splits = {p: self.split_ids(p) for p in (TRAIN, VALID)}
        return {"export": None, "features": str(self.features.resolve()), "manifest_sha256": None,
                "split_sha256": split_sha256({c: p for p, ids in splits.items() for c in ids}), "splits": splits}


def data_source(data: Path) -> DataSource:
    """A features dir, a data root or an export dir (ROOT/exports/NAME, whose manifest is the split)."""
    data = Path(data)
    if (data / "index.parquet").is_file():
        return DataSource(data, None, None)
    if (data / "features" / "index.parquet").is_file():
        return DataSource(data / "features", None, None)
    if (data / MANIFEST).is_file():  # ROOT/exports/NAME
        export = read_export_split(data)
        if not (export.features / "index.parquet").is_file():
            raise FileNotFoundError(f"{data} is an export but {export.features} has no features: "
                                    "run `vidmusician features`")
        return DataSource(export.features, list(export.split_of), export)
    raise FileNotFoundError(f"{data}: not a features directory, a data root with features/, or an export "
                            "(manifest.parquet); pass --data ROOT or --data ROOT/exports/NAME")


def features_source(data: Path) -> tuple[Path, list[str] | None]:
    """(features dir, the export's clip ids or None) for a features dir, a data root or an export dir."""
    source = data_source(data)
    return source.features, source.ids


def _windows(source: DataSource, split: str, cfg: TrainConfig, rhythm: str) -> FeatureWindows | None:
    """The windows of one split's clips long enough for a window; None when there are none."""
    index = pd.read_parquet(source.features / "index.parquet", columns=["clip_id", "clip_s"])
    index = index[index.clip_id.isin(source.split_ids(split)) & (index.clip_s >= cfg.window_s)]
    if index.empty:
        return None
    return FeatureWindows(source.features, window_s=cfg.window_s, seed=cfg.seed, clip_ids=sorted(index.clip_id),
                          rhythm_source=rhythm)


def training_data(source: DataSource, data: Path, cfg: TrainConfig, rhythm: str
                  ) -> tuple[FeatureWindows, FeatureWindows | None]:
    """(train, valid) windows. The test split is never read here: it is generate's and evaluate's."""
    if source.export is None:
        log.warning("%s is not an export: the split is features/index.parquet's, which the latest `vidmusician "
                    "export` rewrote; train on --data ROOT/exports/NAME for a split no other export changes", data)
    train_ds = _windows(source, TRAIN, cfg, rhythm)
    if train_ds is None:
        raise ValueError(f"no training clips of >= {cfg.window_s} s in {data}")
    val_ds = _windows(source, VALID, cfg, rhythm)
    if val_ds is None:
        log.warning("no validation clips of >= %d s in %s (no valid split): no validation loss, best.pt is the "
                    "latest checkpoint; the test split is not used instead (re-export with --valid-fraction)",
                    cfg.window_s, data)
    return train_ds, val_ds


def check_resume_data(out: Path, stages: tuple[int, ...], record: dict) -> None:
    """Refuse to resume a stage whose checkpoint was trained on another split than --data gives now."""
    for stage in stages:
        latest = latest_checkpoint(stage_dir(out, stage))
        if latest is None:
            continue
        saved = read_training(latest[1]).get("extra", {}).get("data")
        if saved is None:
            log.warning("%s records no data split (written before splits were recorded): resuming unchecked",
                        latest[1])
        elif saved["split_sha256"] != record["split_sha256"]:
            raise ValueError(f"{latest[1]} was trained on {_split_change(saved, record)}: resuming would train or "
                             "validate on other clips; resume with the data as it was, or train into another --out")


def _split_change(saved: dict, now: dict) -> str:
    where = saved.get("export") or saved.get("features")
    before = {c: p for p, ids in saved["splits"].items() for c in ids}
    after = {c: p for p, ids in now["splits"].items() for c in ids}
    moved = sorted(c for c in before.keys() & after.keys() if before[c] != after[c])
    added, removed = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
    what = [f"{len(moved)} clips moved split (e.g. {moved[0]}: {before[moved[0]]} -> {after[moved[0]]})"] if moved else []
    what += [f"{len(added)} added"] if added else []
    what += [f"{len(removed)} removed"] if removed else []
    return (f"{where}'s split {saved['split_sha256'][:12]}, which has changed since (now {now['split_sha256'][:12]}: "
            f"{', '.join(what) or 'the same clips, split differently'})")


def model_config(run: TrainRun, clip_dim: int) -> VidMusicianConfig:
    """The model a run trains: its backbone and T5, and its Table 2 switches."""
    if run.backbone == "debug":
        cfg = VidMusicianConfig.debug(clip_dim=clip_dim)
        cfg = cfg if run.t5 in (None, "debug") else cfg.with_semantic(t5=run.t5)
    else:
        cfg = VidMusicianConfig(backbone=run.backbone, semantic=SemanticConfig(clip_dim=clip_dim, t5=run.t5 or "t5-base"))
    s = run.switches
    return cfg.with_semantic(from_scratch=s.t5_from_scratch).with_rhythm(
        enabled=s.rhythm, init_technique=s.init_technique, source=s.rhythm_source, style=s.rhythm_style)


def build_model(run: TrainRun, clip_dim: int, device: str) -> VidMusician:
    """From --init's checkpoint (its config and weights; --backbone may point at a local copy), else new."""
    if run.init is not None:
        config, pkg = read_checkpoint(run.init)
        _check_init_switches(run, config)
        return load_model(run.init, device=device, backbone=None if run.backbone == pkg["backbone"] else run.backbone)
    return VidMusician.from_config(model_config(run, run.clip_dim or clip_dim), device=device, seed=run.recipe.seed)


def _check_init_switches(run: TrainRun, config: VidMusicianConfig) -> None:
    """--init brings its checkpoint's model: a Table 2 switch given that contradicts it is refused."""
    have = {"t5_from_scratch": config.semantic.from_scratch, "rhythm": config.rhythm.enabled,
            "init_technique": config.rhythm.init_technique, "rhythm_source": config.rhythm.source,
            "rhythm_style": config.rhythm.style}
    default = TrainRun.__dataclass_fields__
    differ = [k for k, v in have.items() if getattr(run, k) != default[k].default and getattr(run, k) != v]
    if differ:
        raise ValueError(f"--init {run.init} is a model with {', '.join(f'{k}={have[k]}' for k in differ)}; "
                         f"its checkpoint's config decides: drop the option(s) for {', '.join(differ)}")


def _distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device); joins torchrun's process group when there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    target = torch.device(device)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda but torch sees no GPU: train with --device cpu")
        target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(target)  # before NCCL starts, so each rank owns its GPU
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, target


def _loader(ds: FeatureWindows, batches: list[list[int]], workers: int, seed: int, device: torch.device) -> DataLoader:
    return DataLoader(ds, batch_sampler=batches, num_workers=workers, pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed))  # the global RNG is never drawn from


def _validate(state: TrainState, val: FeatureWindows | None, run: TrainRun, rank: int, world: int,
              device: torch.device) -> Validation | None:
    """The valid split's losses with the model's weights (EMA, when on): both conditions on, and at
    `run.val_cfg_coef` under the guided logits `generate` samples from."""
    if val is None:
        return None
    local = max(1, state.cfg.batch_size // world)
    mine = list(range(rank, len(val), world))
    batches = [mine[i:i + local] for i in range(0, len(mine), local)]
    with _averaged(state):
        return validate(state.model, _loader(val, batches, run.workers, 0, device), state.cfg.precision,
                        run.val_cfg_coef)


def _averaged(state: TrainState) -> contextlib.AbstractContextManager:
    """The EMA weights in the model while validating and writing best.pt (when EMA is on)."""
    return state.ema.applied(state.model) if state.ema is not None else contextlib.nullcontext()


def train_stage(run: TrainRun, model: VidMusician, stage: int, train_ds: FeatureWindows,
                val_ds: FeatureWindows | None, fingerprint: str, rank: int, world: int, device: torch.device,
                init: Path | None, data: dict | None = None, extractor: dict | None = None) -> Path:
    """Train one stage to its end (or resume it); returns its best.pt. ``data``: the split it trains on
    (:meth:`DataSource.record`), kept in every checkpoint; ``extractor``: what made its features."""
    cfg = run.stage_config(stage)
    out = stage_dir(run.out, stage)
    per_epoch = batches_per_epoch(len(train_ds), cfg.update_batch)
    if per_epoch == 0:
        raise ValueError(f"{len(train_ds)} training clips cannot fill one batch of {cfg.update_batch} "
                         f"(--batch-size {cfg.batch_size} x --accumulate {cfg.accumulate}): lower them or add clips")
    total = cfg.steps or cfg.epochs * per_epoch
    latest = latest_checkpoint(out)
    if latest is not None and latest[0] >= total and (out / BEST).is_file():
        log.info("stage %d already finished (%s)", stage, latest[1])
        return out / BEST
    if init is not None and latest is None:
        load_trainable(model, init)
    if rank == 0 and (note := cfg.warmup_warning(total)) is not None:
        log.warning("stage %d: %s", stage, note)
    torch.manual_seed(cfg.seed)
    wrap = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrap = (lambda m: DDP(m, device_ids=[device.index], broadcast_buffers=False)) if device.type == "cuda" \
            else (lambda m: DDP(m, broadcast_buffers=False))
    state = new_state(model, cfg, wrap)
    state.features = extractor
    if latest is not None:
        restore_training(state, latest[1], fingerprint)
        log.info("stage %d: resumed from %s (step %d, epoch %d + %d batches)", stage, latest[1].name, state.step,
                 state.epoch, state.batch_in_epoch)
    if data is not None:
        state.extra["data"] = data  # in every checkpoint: a resume on another split is refused
    writer = MetricsWriter(out, model.lm.num_codebooks, state.step if latest else None) if rank == 0 else None
    if writer is not None and latest is None:
        writer.hparams({**asdict(cfg), "update_batch": cfg.update_batch, "val_cfg_coef": run.val_cfg_coef})
    bar = _Progress(run.progress and rank == 0, stage, total, state.step)
    try:
        _loop(run, state, total, train_ds, val_ds, fingerprint, rank, world, device, writer, bar, out)
        if not (state.best_val is not None if val_ds is not None else _updates(state) > 0):  # the same on every rank
            raise NonFiniteLossError(
                f"stage {stage}: no best.pt: {_updates(state)} of its {state.step} steps updated the weights "
                f"({state.skipped_nonfinite} skipped for a non-finite loss or gradient, {state.skipped_scaler} for an "
                "fp16 overflow) and no validation loss was finite: check the features (`vidmusician status` checks "
                "every shard), lower the lr, or use --precision fp32")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        state.runner = None  # type: ignore[assignment]  # drop DDP's gradient hooks before the next stage wraps
        del state
        gc.collect()
    return out / BEST


def _loop(run: TrainRun, state: TrainState, total: int, train_ds: FeatureWindows, val_ds: FeatureWindows | None,
          fingerprint: str, rank: int, world: int, device: torch.device, writer: MetricsWriter | None,
          bar: _Progress, out: Path) -> None:
    cfg = state.cfg
    t_last, s_last = time.perf_counter(), state.step
    while state.step < total:
        train_ds.set_epoch(state.epoch)
        batches = epoch_batches(len(train_ds), cfg.update_batch, cfg.seed, state.epoch, rank, world,
                                start=state.batch_in_epoch)
        seed = cfg.seed * 100_003 + state.epoch * 101 + state.batch_in_epoch
        for batch in _loader(train_ds, batches[: total - state.step], run.workers, seed, device):
            res = train_step(state, batch)
            now = time.perf_counter()
            rate = (state.step - s_last) / max(now - t_last, 1e-9)
            t_last, s_last = now, state.step
            row = {"stage": cfg.stage, "step": state.step, "epoch": state.epoch, "loss": res.loss, "lr": res.lr,
                   "grad_norm": res.grad_norm, "steps_per_s": rate, "skipped_nonfinite": state.skipped_nonfinite,
                   "skipped_scaler": state.skipped_scaler, "skipped_uncond": state.skipped_uncond,
                   **{f"ce_{k}": v for k, v in enumerate(res.per_codebook)}}
            if state.step % run.val_every == 0 or state.step == total:
                row.update(_after_validation(run, state, val_ds, fingerprint, rank, world, device, out))
            if rank == 0 and not run.progress and (state.step % run.log_every == 0 or state.step == total):
                log.info(_loss_line(row, total, res.skipped))
            if writer is not None:  # before the checkpoint: a resume never lacks the row of its own step
                writer.write(row)
            if run.sample_every and state.step % run.sample_every == 0 and rank == 0 and val_ds is not None:
                _samples(run, state, val_ds, writer, out)
            if state.step % run.ckpt_every == 0 or state.step == total:
                _checkpoint(run, state, fingerprint, rank, out, val_ds is None)
            bar.update(state.step, res.loss, res.lr, rate)
            t_last = time.perf_counter()  # validation and checkpoints are not counted in steps/s
        if state.step < total:
            state.epoch += 1
            state.batch_in_epoch = 0


def _after_validation(run: TrainRun, state: TrainState, val_ds: FeatureWindows | None, fingerprint: str,
                      rank: int, world: int, device: torch.device, out: Path) -> dict:
    """Validation loss on the valid split; a new lowest one writes best.pt (the weights of this step). The
    guided loss (val_loss_guided; none at val_cfg_coef 1) is reported beside it and picks nothing."""
    got = _validate(state, val_ds, run, rank, world, device)
    if got is None:
        return {}
    loss, per_k = got.loss, got.per_codebook
    if _updates(state) and math.isfinite(loss) and (state.best_val is None or loss < state.best_val):
        state.best_val, state.best_step = loss, state.step
        if rank == 0:
            with _averaged(state):
                save_training(state, out / BEST, fingerprint)
    guided = {"val_loss_guided": got.guided} if run.val_cfg_coef != 1.0 else {}
    return {"val_loss": loss, **{f"val_ce_{k}": v for k, v in enumerate(per_k)}, **guided}


def _samples(run: TrainRun, state: TrainState, val_ds: FeatureWindows, writer: MetricsWriter | None,
             out: Path) -> list[Path]:
    """Music for the first `run.samples` validation windows with the current (EMA, when on) weights:
    RUN/stageN/samples/step-XXXXXXXX/{clip}.wav and TensorBoard audio. Seeded by the run's seed, so two
    steps' samples differ only by the weights."""
    from model.generation import SamplingParams
    from pipeline.audio import save_audio

    model, cfg = state.model, state.cfg
    if model.codec is None:
        return []
    device = next(model.lm.parameters()).device
    folder = out / "samples" / f"step-{state.step:08d}"
    written = []
    rhythm_items = []
    videos = clip_videos(run.data)
    was_training = model.training
    try:
        with _averaged(state):
            model.eval()
            for i in range(min(run.samples, len(val_ds))):
                item = val_ds[i]
                glob = item["global"][None].to(device)  # [1, W, D]
                rhythm = item["rhythm"][None].to(device) if model.config.rhythm.enabled and cfg.stage == 2 else None
                codes = model.generate_codes(glob, rhythm, float(cfg.window_s), SamplingParams(), seed=cfg.seed)
                with torch.no_grad():
                    audio = model.codec.decode(codes, None)[0].float().cpu().numpy()  # [1, N]
                rate = int(model.codec.sample_rate)
                written.append(save_audio(folder / f"{item['clip_id']}.wav", audio, rate))
                if writer is not None:
                    writer.audio(f"stage{cfg.stage}/sample/{item['clip_id']}", audio[0], rate, state.step)
                if (video := videos.get(item["clip_id"])) is not None:
                    rhythm_items.append(_sample_rhythm(video, int(item["offset_s"]), cfg.window_s, audio[0], rate))
    finally:
        model.train(was_training)
    scores = ""
    if writer is not None and (scored := [r for r in rhythm_items if r.n_cuts]):
        cuts = sum(r.n_cuts for r in scored)
        recall = sum(r.cut_hits for r in scored) / cuts  # pooled over the samples' cuts
        chance = sum(r.chance_recall * r.n_cuts for r in scored) / cuts  # each music's 2τ coverage, cut-weighted
        writer.scalars(cfg.stage, state.step, {"sample_rhythm_recall": recall, "sample_rhythm_chance": chance})
        scores = f"; Rhythm recall {recall:.3f} (chance {chance:.3f}) over {cuts} cuts"
    log.info("stage %d step %d: %d sample(s) in %s%s", cfg.stage, state.step, len(written), folder, scores)
    return written


def clip_videos(data: Path) -> dict[str, Path]:
    """clip id -> its video, where the data names them: an export's manifest (its audio/ links, else the root's
    clip files), or a data root's clips/ folder; empty for a bare features directory."""
    data = Path(data)
    if (data / "manifest.parquet").is_file():
        rows = pd.read_parquet(data / "manifest.parquet", columns=["clip_id", "path"])
        root = data.resolve().parents[1]
        return {r.clip_id: (data / "audio" / f"{r.clip_id}.mp4") if (data / "audio" / f"{r.clip_id}.mp4").exists()
                else root / r.path for r in rows.itertuples()}
    for clips in (data / "clips", data.parent / "clips"):  # --data ROOT or ROOT/features
        if clips.is_dir():
            return {p.stem: p for p in clips.glob("*.mp4")}
    return {}


_CUTS: dict[Path, tuple[float, ...]] = {}  # a video's cuts, detected once per process


def _sample_rhythm(video: Path, offset_s: int, window_s: int, mono: np.ndarray, rate: int) -> RhythmItem:
    """The Rhythm metric's counts for music generated for seconds [offset, offset + window) of `video`."""
    from model.metrics.audio import resample
    from model.metrics.beats import BeatConfig, track_beats
    from model.metrics.rhythm import rhythm_item
    from pipeline.cuts import detect_video_cuts

    if video not in _CUTS:
        _CUTS[video] = detect_video_cuts(video).cut_times_s
    cuts = [t - offset_s for t in _CUTS[video] if offset_s <= t < offset_s + window_s]
    beat_cfg = BeatConfig()
    beats = track_beats(resample(mono, rate, beat_cfg.sample_rate), beat_cfg.sample_rate, beat_cfg)
    return rhythm_item(cuts, beats, float(window_s))


def _updates(state: TrainState) -> int:
    """Optimiser updates this stage really made (skipped steps change no weight)."""
    return state.step - state.skipped_nonfinite - state.skipped_scaler - state.skipped_uncond


def _loss_line(row: dict, total: int, skipped: str | None) -> str:
    """One log line of a step's metrics row: what a trainer without a terminal reads."""
    line = (f"stage {row['stage']} step {row['step']}/{total} epoch {row['epoch']}: loss {row['loss']:.4f} "
            f"lr {row['lr']:.3g} grad_norm {row['grad_norm']:.3g} {row['steps_per_s']:.2f} it/s")
    if "val_loss" in row:
        line += f" val_loss {row['val_loss']:.4f}"
    if "val_loss_guided" in row:
        line += f" val_loss_guided {row['val_loss_guided']:.4f}"
    skips = {k: row[k] for k in ("skipped_nonfinite", "skipped_scaler", "skipped_uncond") if row[k]}
    if skips:
        line += " " + " ".join(f"{k} {v}" for k, v in skips.items())
    return line + (f" (this step: no update, {skipped})" if skipped else "")


def _checkpoint(run: TrainRun, state: TrainState, fingerprint: str, rank: int, out: Path, no_val: bool) -> None:
    if rank == 0:
        path = save_training(state, ckpt_path(out, state.step), fingerprint)
        if no_val and _updates(state):  # without a valid split, best is the latest (once weights have changed)
            if state.ema is None:
                copy_best(path, out)
            else:
                with _averaged(state):
                    save_training(state, out / BEST, fingerprint)
        prune(out, run.keep)
    if dist.is_initialized():
        dist.barrier()


class _Progress:
    """A rich bar with loss, lr, rate and ETA (rank 0 only; nothing when disabled)."""

    def __init__(self, enabled: bool, stage: int, total: int, done: int) -> None:
        self._cm = self._bar = None
        self.total = total
        if enabled:
            from flows.progress import progress_bar

            self._cm = progress_bar(f"stage {stage}")
            self._bar = self._cm.__enter__()
            self._bar.plan(f"stage {stage}", total)
            self._bar.advance(done)

    def update(self, step: int, loss: float, lr: float, rate: float) -> None:
        if self._bar is not None:
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            self._bar.advance(1)
            self._bar.note(f"loss {loss:.4f}  lr {lr:.2e}  {rate:.2f} it/s  ETA {eta / 60:.1f} min")

    def close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)


def _stage2_init(run: TrainRun) -> Path | None:
    """Where `--stage 2` alone starts from: None when --init gave the weights (build_model loaded them), when
    stage 1 runs first, or when stage 2 resumes; else RUN/stage1/best.pt — refused when there is none, since
    stage 2 from a random semantic module is not the paper's stage 2."""
    if run.stages != (2,) or run.one_stage or run.init is not None or latest_checkpoint(stage_dir(run.out, 2)) is not None:
        return None
    stage1_best = stage_dir(run.out, 1) / BEST
    if not stage1_best.is_file():
        raise FileNotFoundError(f"--stage 2 starts from stage 1's weights but {stage1_best} does not exist: train "
                                "stage 1 into this --out first (or run --stage both), or pass --init CKPT")
    log.info("stage 2: starting from %s", stage1_best)
    return stage1_best


def features_extractor(index: pd.DataFrame) -> dict:
    """What made these clips' features, from the index's config column: {clip_model, clip_pretrained,
    clip_weights_sha256 (None for shards written before the features stage recorded it), codec}."""
    found = set()
    for raw in index.config.unique():
        config = json.loads(raw)
        ident = config.get("identity", {})
        found.add((ident.get("clip_model"), ident.get("pretrained"), config.get("clip_weights_sha256"),
                   ident.get("codec")))
    if len(found) != 1:
        raise ValueError(f"the clips' features were made by different extractors {sorted(found, key=str)}: "
                         "train on one features run (move the other shards aside)")
    (clip_model, pretrained, weights, codec), = found
    return {"clip_model": clip_model, "clip_pretrained": pretrained, "clip_weights_sha256": weights, "codec": codec}


def _memory_options(run: TrainRun, model: VidMusician) -> None:
    """Activation checkpointing of the LM's layers; the frozen LM's weights in bf16/fp16 (GPU only, refused
    on CPU by TrainRun). The trained parameters (LoRA, semantic, rhythm, a trained self-attention) stay fp32."""
    if run.activation_checkpointing:
        model.lm.transformer.checkpointing = "torch"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(run.recipe.frozen_dtype)
    if dtype is not None:
        trained = {id(p) for p in model.trainable_state().values()}
        with torch.no_grad():
            for p in model.lm.parameters():
                if id(p) not in trained and p.is_floating_point():
                    p.data = p.data.to(dtype)


def resolved_config(run: TrainRun, model: VidMusician, spec: object, extractor: dict) -> dict:
    """RUN_DIR/config.yaml's content: the run with every default filled in, each stage's recipe, the model's
    config and the features it trains on, as plain YAML values."""
    def plain(value: object) -> object:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    fields = {f: getattr(run, f) for f in TrainRun.__dataclass_fields__}
    fields["recipe"] = asdict(run.recipe)
    return plain({"run": fields, "stages": {f"stage{s}": asdict(run.stage_config(s)) for s in run.stages},
                  "model": model.config.to_dict(), "features": {**asdict(spec), **extractor}})


@dataclass(frozen=True)
class TrainResult:
    best: dict[int, Path]  # stage -> best.pt
    model: VidMusician  # as the last stage left it (this rank's copy)
    rank: int


def run_training(run: TrainRun) -> TrainResult:
    """Every requested stage, in order. Re-running resumes."""
    rank, world, device = _distributed(run.device)
    try:
        stage2_init = _stage2_init(run)  # before any loading: a refusal comes at once
        source = data_source(run.data)
        data_record = source.record()
        check_resume_data(run.out, run.stages, data_record)  # before any model is built
        features, ids = source.features, source.ids
        recipe = run.recipe  # the window length and seed are the same in both stages
        probe = FeatureWindows(features, window_s=recipe.window_s, clip_ids=ids)
        spec = probe.spec()
        model = build_model(run, spec.clip_dim, str(device))
        if model.config.clip_model is None and spec.clip_model:  # recorded so `generate --checkpoint` alone finds it
            model.config = replace(model.config, clip_model=spec.clip_model)
        check_features(spec, model)
        if problems := check_shards(features, ids, card=int(model.lm.card)):  # every rank: all refuse alike
            raise CorruptShards(features, problems)
        rhythm_source = model.config.rhythm.source
        train_ds, val_ds = training_data(source, run.data, recipe, rhythm_source)
        extractor = features_extractor(probe.reader.index.loc[probe.clip_ids])
        fingerprint = frozen_fingerprint(model)  # of the weights as loaded, whatever dtype they are held in below
        _memory_options(run, model)
        if rank == 0:
            resuming = any(latest_checkpoint(stage_dir(run.out, s)) is not None for s in (1, 2))
            write_run_config(run.out, resolved_config(run, model, spec, extractor), resuming)
        for tmp_dir in (stage_dir(run.out, s) for s in run.stages):
            if rank == 0:
                sweep_partials(tmp_dir)
        best: dict[int, Path] = {}
        for stage in run.stages:
            init = best.get(1, stage2_init) if stage == 2 else None
            best[stage] = train_stage(run, model, stage, train_ds, val_ds, fingerprint, rank, world, device, init,
                                      data=data_record, extractor=extractor)
        return TrainResult(best, model, rank)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


@flow(name="train", validate_parameters=False)
def train_flow(run: TrainRun) -> dict[int, str]:
    """Prefect entry point (a GPU work pool deploys this); the same resumable run as the CLI."""
    return {s: str(p) for s, p in run_training(run).best.items()}
