"""`vidmusician curate | status`: parse argv, run the curate flow or read the status report, print."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dvmset.catalog import Catalog
from flows.commands.cluster import add_cluster_options, curate_params, follow_remote, where_params
from flows.config import CurateConfig
from flows.progress import progress_bar
from flows.settings import add_root_arg, existing_root, open_catalog, resolve_root

_D = CurateConfig()  # the defaults shown in --help
_PER_QUERY = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curate", help="search/download sources and cut clips for review")
    src = p.add_argument_group("sources (at least one)")
    src.add_argument("--query", action="append", default=[], metavar="Q", help="a search query (repeatable)")
    src.add_argument("--queries-file", type=Path, metavar="F", help="one query per line (# comments)")
    src.add_argument("--url", action="append", default=[], metavar="U", help="a video URL (repeatable)")
    p.add_argument("--per-query", type=int, default=_PER_QUERY, metavar="N",
                   help=f"search hits per query ({_PER_QUERY})")
    add_curate_options(p)
    p.add_argument("--retry-failed", action="store_true", help="try failed sources again")
    src.add_argument("--from-release", type=Path, metavar="FILE",
                     help="rebuild a release (release.parquet/.csv): its exact windows, splits and verdicts")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="with --from-release: also fetch from loopback, private and link-local hosts "
                        "(refused by default: a release is input from elsewhere)")
    add_cluster_options(p)
    p.set_defaults(func=cmd_curate)

    p = sub.add_parser("status", help="counts of sources and clips by status and query")
    add_root_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)


def add_curate_options(p: argparse.ArgumentParser) -> None:
    """--root and the options of a :class:`CurateConfig`; unset ones keep the config's defaults."""
    add_root_arg(p)
    p.add_argument("--separator", choices=("demucs", "none"),
                   help=f"vocal removal; 'none' skips it, recorded per source ({_D.separator})")
    p.add_argument("--demucs-model", help=f"Demucs model name ({_D.demucs_name})")
    p.add_argument("--demucs-repo", help="local Demucs repo dir with <name>.yaml and .th weights")
    p.add_argument("--shifts", type=int, help=f"Demucs random shifts ({_D.demucs_shifts})")
    p.add_argument("--device", help=f"cpu or cuda ({_D.device})")
    p.add_argument("--clip-seconds", type=float, help=f"clip length in seconds ({_D.clip_seconds:g})")
    p.add_argument("--target-lufs", type=float, help=f"loudness target ({_D.target_lufs:g} LUFS)")
    p.add_argument("--max-clips", type=int, help="at most this many clips per source")
    p.add_argument("--workers", type=int, help="sources processed at once (default: cores, at most 4)")


def config_from_args(args: argparse.Namespace) -> CurateConfig:
    """A :class:`CurateConfig` of the options given on the command line, defaults for the rest."""
    given = {"separator": args.separator, "demucs_name": args.demucs_model, "demucs_repo": args.demucs_repo,
             "demucs_shifts": args.shifts, "device": args.device, "clip_seconds": args.clip_seconds,
             "target_lufs": args.target_lufs, "max_clips_per_source": args.max_clips, "workers": args.workers}
    return CurateConfig(**{k: v for k, v in given.items() if v is not None})


def _read_queries(path: Path | None) -> list[str]:
    if path is None:
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def curate_with_progress(root, db_url: str, *, queries: list[str], urls: list[str], per_query: int,  # noqa: ANN001
                         cfg: CurateConfig, retry_failed: bool) -> dict:
    """Run the flow with a progress bar over sources (and a count of clips made)."""
    from flows.curation.curate import run_curate  # Prefect and the stages: loaded only when curating
    # A failed source is expected and recorded with its reason (flows.curation.curate logs one line for it);
    # Prefect's own task-failure log would add a traceback per dead URL. -v keeps it.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("prefect.task_runs").setLevel(logging.CRITICAL)
    clips = {"ok": 0, "failed": 0}
    with progress_bar("searching") as bar:

        def on_plan(todo: int, skipped: int) -> None:
            bar.plan(f"sources ({skipped} already done)" if skipped else "sources", todo)

        def on_event(kind: str, key: str, status: str) -> None:
            if kind == "clip":
                clips["ok" if status != "failed" else "failed"] += 1
                bar.note(f"clips: {clips['ok']} made, {clips['failed']} failed")
            else:
                bar.advance()

        return run_curate(root, db_url, queries=queries, urls=urls, per_query=per_query, cfg=cfg,
                          retry_failed=retry_failed, on_event=on_event, on_plan=on_plan)


def cmd_curate(args: argparse.Namespace) -> int:
    queries = list(args.query) + _read_queries(args.queries_file)
    if args.from_release is not None:
        if queries or args.url:
            print("--from-release rebuilds the release's videos only: give no --query or --url with it",
                  file=sys.stderr)
            return 2
        return cmd_rebuild(args)
    if not queries and not args.url:
        print("nothing to curate: give --query, --queries-file, --url or --from-release", file=sys.stderr)
        return 2
    from pipeline.separate import WeightsUnavailable  # torch: imported only when curating

    root = resolve_root(args.root)
    cat = open_catalog(root)
    if args.via_server or args.dask:
        return curate_elsewhere(args, root, cat, queries, config_from_args(args))
    try:
        result = curate_with_progress(root, cat.url, queries=queries, urls=list(args.url),
                                      per_query=args.per_query, cfg=config_from_args(args),
                                      retry_failed=args.retry_failed)
    except WeightsUnavailable as err:
        print(f"{err}\nOr run without vocal removal: --separator none (recorded per source in the catalog).",
              file=sys.stderr)
        return 2
    print_summary(result, cat)
    return 0


def curate_elsewhere(args: argparse.Namespace, root, cat: Catalog, queries: list[str], cfg) -> int:  # noqa: ANN001
    """`curate --via-server` (a worker runs the deployment) or `curate --dask` (here, tasks on Dask)."""
    params = curate_params(args, queries, cfg)
    if args.via_server:
        return follow_remote("curate", {**params, **where_params(args)}, cat)
    from flows.cluster.entry import curate

    result = curate(**params, root=str(root.path), db=cat.url)
    print_summary(result, cat)
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    """``curate --from-release FILE``: check the rows, rebuild, check clip by clip (flows/curation/rebuild.py)."""
    from dvmset.release import ReleaseError, read_release
    from flows.curation.rebuild import run_rebuild

    root = resolve_root(args.root)
    cat = open_catalog(root)
    try:
        release = read_release(args.from_release)
    except ReleaseError as err:
        print(f"curate: {err}", file=sys.stderr)
        return 2
    with progress_bar("rebuilding") as bar:
        bar.plan("videos", len(release.videos()))

        def show(outcomes: list) -> None:
            for o in outcomes:
                if o.outcome != "matching":
                    bar.print(f"{o.outcome} {o.clip_id or '(no clip id)'}: {o.detail}")

        def on_video(outcomes: list) -> None:
            bar.advance()
            show(outcomes)

        report = run_rebuild(root, cat.url, release, cfg=config_from_args(args), retry_gone=args.retry_failed,
                             on_video=on_video, on_invalid=show, allow_private_urls=args.allow_private_urls)
    c = report["counts"]
    print(f"rebuilt {c['matching']} clips matching the release, {c['different']} different, {c['gone']} gone, "
          f"{c['invalid']} invalid" + (f", {c['refused']} refused (taken down here)" if c["refused"] else "")
          + f" (report: {root.path / 'rebuilds'})")
    if c["invalid"]:
        print("invalid rows were set aside before any download; each is listed above with its field and why")
    return 0 if c["matching"] == sum(c.values()) else 1


def print_summary(result: dict, cat: Catalog) -> None:
    print(f"sources: {result['done']} done, {result['failed']} failed, {result['skipped']} skipped (done before)")
    if result.get("held"):  # a live lease of another run: its sources are left to it, not counted done
        n = result["held"]
        print(f"{n} source{'s' if n != 1 else ''} held by another run on this catalog, left to it "
              "(a run started after that one died takes over)")
    for key, why in result.get("refused", {}).items():
        print(f"refused {key}: {why}")
    print("clips by status: " + _by_status(cat.counts()["clips"]))
    if result["failed"]:
        print("see why with: vidmusician status --json (failed sources carry their error)")


def _by_status(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def cmd_status(args: argparse.Namespace) -> int:
    from dvmset.status import status_report

    root = existing_root(args.root)
    report = status_report(root, open_catalog(root))
    if args.json:
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    print(f"data root: {root.path}")
    print("sources: " + _by_status(report["sources"]))
    if leased := report["leased_sources"]:
        print(f"  being worked on (a live lease): {len(leased)}: " + ", ".join(leased[:5])
              + (", ..." if len(leased) > 5 else ""))
    print("clips:   " + _by_status(report["clips"]))
    for query, by_status in sorted(report["clips_by_query"].items()):
        print(f"  {query}: " + _by_status(by_status))
    for f in report["failed_sources"]:
        print(f"  failed {f['id']}: {f['error']}")
    shared = report["shared_music"]
    if shared["clips"]:
        print(f"shared music: {shared['clips']} clips share their music with another source "
              f"({shared['groups']} groups of {shared['sources']} sources; an export keeps each group in one split)")
    feats = report["features"]
    if feats["accepted"]:
        print(f"features: {feats['in_shards']} of {feats['accepted']} accepted clips in shards, "
              f"{feats['pending']} to extract, {len(feats['failed'])} failed"
              + (f"; exports: {', '.join(feats['exports'])}" if feats["exports"] else ""))
        for f in feats["failed"][:10]:
            print(f"  failed {f['clip_id']}: {f['error']}")
    return 0
