"""`vidmusician features` (Prefect flow, resumable shard by shard) and `vidmusician export`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select

from dvmset.catalog import Catalog
from dvmset.io import remove_partials
from dvmset.layout import DataRoot
from dvmset.records import ClipStatus
from dvmset.runs import params_hash, record_run
from dvmset.shards import SHARD_FORMAT, FeatureStore, StoreBusy
from dvmset.tables import Clip, Run, Source
from flows.settings import add_root_arg, open_catalog, resolve_root

log = logging.getLogger(__name__)
STAGE = "features"

ClipHook = Callable[[str, str | None], None]  # (clip id, error or None) after each clip
PlanHook = Callable[[int, int], None]  # (clips to extract, clips already in shards)


@dataclass(frozen=True)
class FeaturesConfig:
    """A features run; ``identity()`` is what must match across the shards of one features dir."""

    clip_model: str = "ViT-L-14"  # D = 768, the width the model presets assume (model/README.md)
    pretrained: str | None = "openai"
    codec: str = "facebook/musicgen-small"
    device: str = "cpu"
    precision: str = "auto"
    clip_s: int = 60
    clips_per_shard: int = 64
    batch_size: int = 32
    limit: int | None = None
    retry_failed: bool = False  # try again the clips this extractor failed on in earlier runs

    def __post_init__(self) -> None:
        if self.clip_model == "tiny":
            object.__setattr__(self, "pretrained", None)  # random weights only
        if self.clips_per_shard < 1:
            raise ValueError(f"clips_per_shard must be >= 1, got {self.clips_per_shard}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")

    def identity(self) -> dict:
        return {"format": SHARD_FORMAT, "clip_model": self.clip_model, "pretrained": self.pretrained,
                "codec": self.codec, "clip_s": self.clip_s, "fps": 25, "token_rate": 50, "sample_rate": 32000}

    def params_hash(self) -> str:
        return params_hash(self.identity())


@contextlib.contextmanager
def _exclusive(features_dir: Path) -> Iterator[None]:
    """One features run per directory at a time; clears temp files a killed run left behind."""
    with FeatureStore(features_dir).exclusive("`vidmusician features`"):
        for tmp in remove_partials(features_dir, "shard-*") + remove_partials(features_dir, "index"):
            log.info("removed %s left by an interrupted run", tmp.name)
        yield


def _check_compatible(store: FeatureStore, cfg: FeaturesConfig) -> None:
    index = store.index()
    want = cfg.identity()
    for raw in index.config.unique():
        have = json.loads(raw).get("identity", {})
        if have.get("format") != want["format"]:
            raise ValueError(
                f"{store.dir} holds shard format {have.get('format')!r}; this version writes {want['format']!r}. "
                f"It still reads them; to extract more, move {store.dir} aside and run `vidmusician features` "
                "again, which re-extracts every accepted clip"
            )
        if have != want:
            raise ValueError(
                f"{store.dir} holds features made with {have}, this run uses {want}: extract with the same "
                f"options, or move {store.dir} aside to re-extract every accepted clip with the new ones"
            )


def _load_models(cfg: FeaturesConfig):  # noqa: ANN202 - (ClipImageEncoder, codec module)
    from pipeline.clip_encoder import ClipEncoderSpec, load_clip_encoder
    from pipeline.codec import load_codec

    spec = ClipEncoderSpec(cfg.clip_model, None if cfg.clip_model == "tiny" else cfg.pretrained)
    return load_clip_encoder(spec, cfg.device, cfg.precision), load_codec(cfg.codec, cfg.device)


def _extract_shard(root: DataRoot, db_url: str, n: int, clips: list, models: tuple, cfg: FeaturesConfig,
                   on_clip: ClipHook | None) -> dict:
    """Extract one shard's clips, write the shard, then index it and record each clip's run."""
    from pipeline.features import ExtractConfig, build_shard

    encoder, codec = models
    store, cat = FeatureStore(root.features_dir), Catalog(db_url)
    config_json = json.dumps({"identity": cfg.identity(), "run": asdict(cfg), "image_size": encoder.image_size,
                              "embed_dim": encoder.embed_dim}, sort_keys=True)
    t0 = time.monotonic()
    try:
        rows, failed = build_shard(store.shard_path(n), clips, encoder, codec,
                                   ExtractConfig(clip_s=cfg.clip_s, batch_size=cfg.batch_size), config_json, on_clip)
        if rows:
            store.append(rows)
        per_clip = (time.monotonic() - t0) / max(1, len(clips))
        for c in clips:
            record_run(cat, STAGE, c.clip_id, cfg.params_hash(), per_clip, failed.get(c.clip_id))
    finally:
        cat.dispose()
    return {"shard": store.shard_path(n).name if rows else None, "done": len(rows), "failed": failed}


extract_shard_task = task(name="features-shard", cache_policy=NO_CACHE)(_extract_shard)


@dataclass(frozen=True)
class Plan:
    todo: list  # [ShardClip] to extract this run, in id order
    already: int  # accepted clips already in shards
    failed_before: dict  # {clip_id: error} failed with this extractor before, left out (retry_failed=False)


def pending_clips(root: DataRoot, cat: Catalog, store: FeatureStore, cfg: FeaturesConfig) -> Plan:
    """Accepted clips without features, in id order, up to ``cfg.limit``.

    Clips that failed with this extractor config are left out unless ``cfg.retry_failed``: a clip
    that always fails (a broken file) must not take a ``--limit`` run's whole budget every time.
    """
    from pipeline.features import ShardClip

    done = set(store.index().clip_id)
    with cat.session() as s:
        rows = s.execute(select(Clip.id, Clip.source_id, Clip.split, Source.query)
                         .join(Source, Source.id == Clip.source_id)
                         .where(Clip.status == ClipStatus.ACCEPTED).order_by(Clip.id)).all()
        failed = {} if cfg.retry_failed else dict(s.execute(
            select(Run.key, Run.error).where(Run.stage == STAGE, Run.params_hash == cfg.params_hash(),
                                             Run.status == "failed")).all())
    todo = [ShardClip(r.id, root.clip_path(r.id), r.query, r.source_id, r.split)
            for r in rows if r.id not in done and r.id not in failed]
    skipped = {r.id: failed[r.id] for r in rows if r.id in failed and r.id not in done}
    return Plan(todo if cfg.limit is None else todo[:cfg.limit], sum(r.id in done for r in rows), skipped)


def run_features(root: DataRoot, db_url: str, cfg: FeaturesConfig, on_plan: PlanHook | None = None,
                 on_clip: ClipHook | None = None, shard_fn: Callable = _extract_shard) -> dict:
    """Extract every accepted clip not yet in a shard, ``cfg.clips_per_shard`` clips per shard."""
    store = FeatureStore(root.features_dir)
    with _exclusive(store.dir):
        recovered = store.recover()
        if recovered:
            log.warning("indexed shards left out by an interrupted run: %s", recovered)
        _check_compatible(store, cfg)
        cat = Catalog(db_url)
        try:
            plan = pending_clips(root, cat, store, cfg)
        finally:
            cat.dispose()
        todo = plan.todo
        if on_plan is not None:
            on_plan(len(todo), plan.already)
        result = {"shards": [], "done": 0, "failed": {}, "already": plan.already,
                  "failed_before": plan.failed_before, "recovered": recovered}
        if not todo:
            return result
        models = _load_models(cfg)
        for i in range(0, len(todo), cfg.clips_per_shard):
            out = shard_fn(root, db_url, store.next_shard_number(), todo[i : i + cfg.clips_per_shard],
                           models, cfg, on_clip)
            result["shards"] += [out["shard"]] if out["shard"] else []
            result["done"] += out["done"]
            result["failed"].update(out["failed"])
        return result


@flow(name="features", validate_parameters=False)
def features_flow(root_path: str, db_url: str, cfg: FeaturesConfig, on_plan: PlanHook | None = None,
                  on_clip: ClipHook | None = None) -> dict:
    """Accepted clips -> feature shards; one Prefect task per shard, resumable shard by shard."""
    return run_features(DataRoot(Path(root_path)), db_url, cfg, on_plan, on_clip, shard_fn=extract_shard_task)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="CLIP + EnCodec features of accepted clips into safetensors shards")
    add_root_arg(p)
    p.add_argument("--clip-model", default="ViT-L-14", help="open_clip model name (ViT-L-14: D=768), local-dir:/hf-hub: id, or 'tiny'")
    p.add_argument("--pretrained", default="openai", help="open_clip pretrained tag or a local checkpoint file")
    p.add_argument("--codec", default="facebook/musicgen-small",
                   help="MusicGen name or local dir (its EnCodec), facebook/encodec_32khz, or 'tiny'")
    p.add_argument("--device", default="cpu", help="cpu or cuda (fp16 autocast on cuda)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--clip-seconds", type=int, default=60, help="clip length in seconds (60)")
    p.add_argument("--clips-per-shard", type=int, default=64, help="clips per shard (64)")
    p.add_argument("--batch-size", type=int, default=32, help="frames per CLIP forward (32)")
    p.add_argument("--limit", type=int, help="extract at most this many clips this run")
    p.add_argument("--retry-failed", action="store_true",
                   help="try again the clips that failed with this extractor in earlier runs")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads; on a small CPU box leave a core to the decoder (default: torch's)")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("export", help="split accepted clips by source and write manifest, JSONL and DATASET.md")
    add_root_arg(p)
    p.add_argument("--name", required=True, help="export name: exports/NAME/")
    p.add_argument("--test-fraction", type=float, default=268 / 3839, help="test share of clips (268/3839)")
    p.add_argument("--seed", type=int, default=0, help="split seed (0)")
    p.add_argument("--reshuffle", action="store_true", help="ignore splits recorded by earlier exports")
    p.set_defaults(func=cmd_export)


def cmd_features(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    root = resolve_root(args.root)
    cat = open_catalog(root)
    cfg = FeaturesConfig(clip_model=args.clip_model, pretrained=args.pretrained, codec=args.codec, device=args.device,
                         precision=args.precision, clip_s=args.clip_seconds, clips_per_shard=args.clips_per_shard,
                         batch_size=args.batch_size, limit=args.limit,
                         retry_failed=args.retry_failed)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        tid = bar.add_task("planning", total=None)

        def on_plan(todo: int, already: int) -> None:
            bar.update(tid, description=f"clips ({already} already in shards)", total=todo)

        def on_clip(clip_id: str, error: str | None) -> None:
            bar.advance(tid)
            if error:
                bar.console.print(f"[red]failed[/red] {clip_id}: {error}")

        try:
            result = features_flow(str(root.path), cat.url, cfg, on_plan, on_clip)
        except (ValueError, RuntimeError, FileNotFoundError) as err:
            print(f"features: {err}", file=sys.stderr)
            return 2
    print(f"{result['done']} clips extracted into {len(result['shards'])} shards "
          f"({result['already']} already done, {len(result['failed'])} failed) in {root.features_dir}")
    if result["failed_before"]:
        print(f"{len(result['failed_before'])} clips that failed in earlier runs were left out "
              "(--retry-failed tries them again):")
        for clip_id, error in list(result["failed_before"].items())[:5]:
            print(f"  {clip_id}: {error}")
    if not (result["done"] or result["already"] or result["failed"] or result["failed_before"]):
        print(f"no accepted clips yet: review some first (vidmusician review --root {root.path})")
    return 1 if result["failed"] else 0


def cmd_export(args: argparse.Namespace) -> int:
    from dvmset.export import export_dataset

    root = resolve_root(args.root)
    cat = open_catalog(root)
    try:
        s = export_dataset(root, cat, args.name, args.test_fraction, args.seed, keep_existing=not args.reshuffle)
    except (ValueError, StoreBusy) as err:
        print(f"export: {err}", file=sys.stderr)
        return 2
    print(f"export {s.name}: {s.train} train / {s.test} test clips from {s.sources} sources -> {s.path}"
          + (f" ({s.missing} accepted clips without a file left out)" if s.missing else ""))
    return 0
