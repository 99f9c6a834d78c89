"""`vidmusician curate | status | demo`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from flows.settings import add_root_arg, open_catalog, resolve_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curate", help="search/download sources and cut clips for review")
    src = p.add_argument_group("sources (at least one)")
    src.add_argument("--query", action="append", default=[], metavar="Q", help="a search query (repeatable)")
    src.add_argument("--queries-file", type=Path, metavar="F", help="one query per line (# comments)")
    src.add_argument("--url", action="append", default=[], metavar="U", help="a video URL (repeatable)")
    p.add_argument("--per-query", type=int, default=10, metavar="N", help="search hits per query (10)")
    _add_common(p)
    p.set_defaults(func=cmd_curate)

    p = sub.add_parser("status", help="counts of sources and clips by status and query")
    add_root_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("demo", help="curate ffmpeg-made sample videos served on loopback (offline)")
    add_root_arg(p)
    p.set_defaults(func=cmd_demo)


def _add_common(p: argparse.ArgumentParser) -> None:
    add_root_arg(p)
    p.add_argument("--separator", choices=("demucs", "none"), default="demucs",
                   help="vocal removal; 'none' skips it (recorded per source)")
    p.add_argument("--demucs-model", default="htdemucs", help="Demucs model name (htdemucs)")
    p.add_argument("--demucs-repo", help="local Demucs repo dir with <name>.yaml and .th weights")
    p.add_argument("--shifts", type=int, default=1, help="Demucs random shifts (1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--clip-seconds", type=float, default=60.0, help="clip length in seconds (60)")
    p.add_argument("--target-lufs", type=float, default=-14.0, help="loudness target (-14 LUFS)")
    p.add_argument("--max-clips", type=int, help="at most this many clips per source")
    p.add_argument("--workers", type=int, help="sources processed at once (default: cores, at most 4)")
    p.add_argument("--retry-failed", action="store_true", help="try failed sources again")


def _config(args: argparse.Namespace, **override):
    from flows.curate import CurateConfig

    kwargs = dict(
        separator=args.separator, demucs_name=args.demucs_model, demucs_repo=args.demucs_repo,
        demucs_shifts=args.shifts, device=args.device, clip_seconds=args.clip_seconds,
        target_lufs=args.target_lufs, max_clips_per_source=args.max_clips,
    )
    if args.workers:
        kwargs["workers"] = args.workers
    kwargs.update(override)
    return CurateConfig(**kwargs)


def _read_queries(path: Path | None) -> list[str]:
    if path is None:
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _run_with_progress(root, db_url: str, *, queries, urls, per_query, cfg, retry_failed) -> dict:
    """Run the flow with a progress bar over sources (and a count of clips made)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows.curate import run_curate

    # A failed source is expected and recorded with its reason (flows.curate logs one line for it);
    # Prefect's own task-failure log would add a traceback per dead URL. -v keeps it.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("prefect.task_runs").setLevel(logging.CRITICAL)

    clips = {"ok": 0, "failed": 0}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[clips]}"), transient=False) as bar:
        task_id = bar.add_task("searching", total=None, clips="")

        def on_plan(todo: int, skipped: int) -> None:
            note = f" ({skipped} already done)" if skipped else ""
            bar.update(task_id, description=f"sources{note}", total=todo)

        def on_event(kind: str, key: str, status: str) -> None:
            if kind == "clip":
                clips["ok" if status != "failed" else "failed"] += 1
                bar.update(task_id, clips=f"clips: {clips['ok']} made, {clips['failed']} failed")
            else:
                bar.advance(task_id)

        return run_curate(root, db_url, queries=queries, urls=urls, per_query=per_query, cfg=cfg,
                          retry_failed=retry_failed, on_event=on_event, on_plan=on_plan)


def _missing_weights_message(err: Exception) -> str:
    return f"{err}\nOr run without vocal removal: --separator none (recorded per source in the catalog)."


def cmd_curate(args: argparse.Namespace) -> int:
    queries = list(args.query) + _read_queries(args.queries_file)
    if not queries and not args.url:
        print("nothing to curate: give --query, --queries-file or --url", file=sys.stderr)
        return 2
    root = resolve_root(args.root)
    cat = open_catalog(root)
    cfg = _config(args)
    from pipeline.separate import WeightsUnavailable

    try:
        result = _run_with_progress(root, cat.url, queries=queries, urls=list(args.url),
                                    per_query=args.per_query, cfg=cfg, retry_failed=args.retry_failed)
    except WeightsUnavailable as err:
        print(_missing_weights_message(err), file=sys.stderr)
        return 2
    _print_summary(result, cat)
    return 0


def _print_summary(result: dict, cat) -> None:
    print(f"sources: {result['done']} done, {result['failed']} failed, {result['skipped']} skipped (done before)")
    counts = cat.counts()
    print("clips by status: " + (", ".join(f"{k} {v}" for k, v in sorted(counts["clips"].items())) or "none"))
    if result["failed"]:
        print("see why with: vidmusician status --json (failed sources carry their error)")


def cmd_status(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from dvmset.tables import Source

    root = resolve_root(args.root)
    cat = open_catalog(root)
    counts = cat.counts()
    with cat.session() as s:
        failures = [{"id": r.id, "url": r.url, "stage": r.stage, "error": r.error}
                    for r in s.scalars(select(Source).where(Source.status == "failed").order_by(Source.id))]
    counts["failed_sources"] = failures
    counts["features"] = _features_status(root, cat)
    counts["root"] = str(root.path)
    if args.json:
        json.dump(counts, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    print(f"data root: {root.path}")
    print("sources: " + (", ".join(f"{k} {v}" for k, v in sorted(counts["sources"].items())) or "none"))
    print("clips:   " + (", ".join(f"{k} {v}" for k, v in sorted(counts["clips"].items())) or "none"))
    for query, by_status in sorted(counts["clips_by_query"].items()):
        print(f"  {query}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())))
    for f in failures:
        print(f"  failed {f['id']}: {f['error']}")
    feats = counts["features"]
    if feats["accepted"]:
        print(f"features: {feats['in_shards']} of {feats['accepted']} accepted clips in shards, "
              f"{feats['pending']} to extract, {len(feats['failed'])} failed"
              + (f"; exports: {', '.join(feats['exports'])}" if feats["exports"] else ""))
        for f in feats["failed"][:10]:
            print(f"  failed {f['clip_id']}: {f['error']}")
    return 0


def _features_status(root, cat) -> dict:  # noqa: ANN001 - DataRoot, Catalog
    """Accepted clips: how many have features, how many wait, which failed (and why), what was exported."""
    from sqlalchemy import select

    from dvmset.records import ClipStatus
    from dvmset.shards import FeatureStore
    from dvmset.tables import Clip, Run

    with cat.session() as s:
        accepted = set(s.scalars(select(Clip.id).where(Clip.status == ClipStatus.ACCEPTED)))
        runs = s.execute(select(Run.key, Run.status, Run.error, Run.finished_at)
                         .where(Run.stage == "features").order_by(Run.finished_at)).all()
    in_shards = accepted & set(FeatureStore(root.features_dir).index().clip_id)
    last = {key: (status, error) for key, status, error, _ in runs}  # the latest run of each clip
    failed = [{"clip_id": c, "error": last[c][1]} for c in sorted(accepted - in_shards)
              if last.get(c, ("",))[0] == "failed"]
    exports = sorted(p.parent.name for p in root.exports_dir.glob("*/manifest.parquet"))
    return {"accepted": len(accepted), "in_shards": len(in_shards), "failed": failed,
            "pending": len(accepted) - len(in_shards) - len(failed), "exports": exports}


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import make_demo_media, serve_directory
    from pipeline.separate import SeparatorConfig, WeightsUnavailable, load_separator

    root = resolve_root(args.root)
    cat = open_catalog(root)
    t0 = time.perf_counter()
    media_dir = root.path / "demo-media"
    print(f"making sample sources with ffmpeg in {media_dir} ...")
    paths = make_demo_media(media_dir)
    try:
        load_separator(SeparatorConfig(allow_download=False))  # the demo stays offline
        separator = "demucs"
    except WeightsUnavailable:
        separator = "none"
        print("Demucs weights are not in the torch-hub cache: the demo skips vocal removal "
              "(--separator none, recorded in the catalog). See README, 'Real weights'.")
    ns = argparse.Namespace(separator=separator, demucs_model="htdemucs", demucs_repo=None, shifts=1,
                            device="cpu", clip_seconds=60.0, target_lufs=-14.0, max_clips=None, workers=None)
    with serve_directory(media_dir) as base:
        urls = [f"{base}/{p.name}" for p in paths]
        print(f"serving {len(urls)} sources on {base}; curating through yt-dlp ...")
        result = _run_with_progress(root, cat.url, queries=[], urls=urls, per_query=0, cfg=_config(ns),
                                    retry_failed=False)
    _print_summary(result, cat)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s. Next:")
    print(f"  vidmusician status --root {root.path}")
    print(f"  vidmusician annotators add alice --root {root.path}   # prints a login link")
    print(f"  vidmusician review --root {root.path}                 # review the clips in a browser")
    return 0
