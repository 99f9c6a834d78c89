"""`vidmusician features | export`: parse argv, run the features flow or the export, print."""

from __future__ import annotations

import argparse
import logging
import sys

from dvmset.constants import TEST_FRACTION, VALID_FRACTION
from flows.commands.cluster import add_cluster_options
from flows.config import FeaturesConfig
from flows.progress import progress_bar
from flows.settings import add_root_arg, existing_root, open_catalog

_D = FeaturesConfig()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="CLIP + EnCodec features of accepted clips into safetensors shards")
    add_root_arg(p)
    p.add_argument("--clip-model", help=f"open_clip model name ({_D.clip_model}: D=768), local-dir:/hf-hub: id, "
                                        "or 'tiny'")
    p.add_argument("--pretrained", help=f"open_clip pretrained tag or a local checkpoint file ({_D.pretrained})")
    p.add_argument("--codec", help=f"MusicGen name or local dir (its EnCodec), facebook/encodec_32khz, or 'tiny' "
                                   f"({_D.codec})")
    p.add_argument("--device", help=f"cpu or cuda, fp16 autocast on cuda ({_D.device})")
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), help=f"({_D.precision})")
    p.add_argument("--clip-seconds", type=int, help=f"clip length in seconds ({_D.clip_s})")
    p.add_argument("--clips-per-shard", type=int, help=f"clips per shard ({_D.clips_per_shard})")
    p.add_argument("--batch-size", type=int, help=f"frames per CLIP forward ({_D.batch_size})")
    p.add_argument("--limit", type=int, help="extract at most this many clips this run")
    p.add_argument("--retry-failed", action="store_true",
                   help="try again the clips that failed with this extractor in earlier runs")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads; on a small CPU box leave a core to the decoder (default: torch's)")
    add_cluster_options(p, dask=False)  # shards go one after another on one device: nothing to fan out
    p.set_defaults(func=cmd_features, runs_flows=True)

    p = sub.add_parser("export", help="split accepted clips by source and write manifest, JSONL and DATASET.md")
    add_root_arg(p)
    p.add_argument("--name", required=True, help="export name: exports/NAME/")
    p.add_argument("--test-fraction", type=float, help=f"test share of clips (268/3839 = {TEST_FRACTION:.4f})")
    p.add_argument("--valid-fraction", type=float,
                   help=f"validation share of clips, drawn like test; train chooses best.pt on it "
                        f"({VALID_FRACTION:.4f}, as large as test; 0: no valid split, best.pt is the latest)")
    p.add_argument("--seed", type=int, help="split seed (0)")
    p.add_argument("--reshuffle", action="store_true", help="ignore splits recorded by earlier exports")
    p.add_argument("--release", action="store_true",
                   help="also write the ids-only release (release.parquet/.csv/.json: ids, windows, checksums; no media)")
    p.add_argument("--format", choices=("audiocraft", "webdataset"), default="audiocraft",
                   help="webdataset: also write tar shards of samples (mp4, flac music, json, features as .npy) "
                        "under exports/NAME/webdataset/")
    p.add_argument("--shard-size", default="1GB", metavar="SIZE",
                   help="with --format webdataset: bytes per shard, e.g. 500MB or 1GiB (1GB)")
    add_cluster_options(p, dask=False)  # one step: nothing to fan out
    p.set_defaults(func=cmd_export)


def config_from_args(args: argparse.Namespace) -> FeaturesConfig:
    """A :class:`FeaturesConfig` of the options given on the command line, defaults for the rest."""
    given = {"clip_model": args.clip_model, "pretrained": args.pretrained, "codec": args.codec,
             "device": args.device, "precision": args.precision, "clip_s": args.clip_seconds,
             "clips_per_shard": args.clips_per_shard, "batch_size": args.batch_size, "limit": args.limit,
             "retry_failed": args.retry_failed or None}
    return FeaturesConfig(**{k: v for k, v in given.items() if v is not None})


def cmd_features(args: argparse.Namespace) -> int:
    from flows.dataset.features import features_flow  # Prefect, torch: loaded only when extracting

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    root = existing_root(args.root)
    cat = open_catalog(root)
    cfg = config_from_args(args)
    if args.via_server:
        from flows.commands.cluster import features_elsewhere

        return features_elsewhere(args, cat, cfg)
    quiet_prefect_failures()
    with progress_bar("planning") as bar:

        def on_plan(todo: int, already: int) -> None:
            bar.plan(f"clips ({already} already in shards)", todo)

        def on_clip(clip_id: str, error: str | None) -> None:
            bar.advance()
            if error:
                bar.print(f"[red]failed[/red] {clip_id}: {error}")

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


def quiet_prefect_failures() -> None:
    """A run refused or stopped says so in one line (the command prints it); Prefect's flow and task logs
    would print a traceback before it. ``-v`` keeps them."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for name in ("prefect.task_runs", "prefect.flow_runs", "EventsWorker"):  # the last: its queue at exit
            logging.getLogger(name).setLevel(logging.CRITICAL)


def cmd_export(args: argparse.Namespace) -> int:
    from dvmset.export import export_dataset
    from dvmset.export_webdataset import parse_size
    from dvmset.shards import StoreBusy
    from pipeline.probe import audio_rate

    root = existing_root(args.root)
    if args.via_server:
        from flows.commands.cluster import export_elsewhere

        return export_elsewhere(args, open_catalog(root))
    given = {"test_fraction": args.test_fraction, "valid_fraction": args.valid_fraction, "seed": args.seed}
    try:
        shard_size = parse_size(args.shard_size)
    except ValueError as err:
        print(f"export: {err}", file=sys.stderr)
        return 2
    try:
        s = export_dataset(root, open_catalog(root), args.name, keep_existing=not args.reshuffle,
                           audio_rate=audio_rate, release=args.release,
                           **{k: v for k, v in given.items() if v is not None})
    except (ValueError, StoreBusy) as err:
        print(f"export: {err}", file=sys.stderr)
        return 2
    print(f"export {s.name}: {s.train} train / {s.valid} valid / {s.test} test clips from {s.sources} sources "
          f"-> {s.path}" + (f" ({s.missing} accepted clips without a file left out)" if s.missing else ""))
    if not s.valid:
        print("  no valid split: `train` on this export validates on nothing and keeps the latest checkpoint as "
              "best.pt (it never chooses on test); export with --valid-fraction > 0 for one", file=sys.stderr)
    if s.no_rate:
        print(f"  warning: {s.no_rate} clips have no readable audio sample rate (null in the manifest and the JSONL)",
              file=sys.stderr)
    if s.no_features:
        print(f"  warning: {len(s.no_features)} accepted clips have no features and are left out: "
              f"{', '.join(s.no_features[:5])}{', ...' if len(s.no_features) > 5 else ''} (`vidmusician status` "
              "says why; `vidmusician features --retry-failed`, then export again)", file=sys.stderr)
    if s.music_groups:
        print(f"  {s.music_groups} groups of sources share music; each is kept in one split (listed in DATASET.md)")
    if s.release:
        print(f"  release (ids only, no media): {s.release} and .csv; rebuild with "
              f"vidmusician curate --from-release {s.release}")
    if args.format == "webdataset":
        from flows.dataset.webdataset import export_webdataset

        w = export_webdataset(root, s.path, shard_size)
        print(f"  webdataset: {w.samples} samples in {w.shards} shards ({w.written} written now, "
              f"{w.bytes / 1e6:.1f} MB) -> {w.folder}; read with webdataset.WebDataset(\"{w.urls('train')}\")")
    return 0

