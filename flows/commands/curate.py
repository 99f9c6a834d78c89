"""`vidmusician curate | status`: parse argv, run the curate flow or read the status report, print."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from dvmset.catalog import Catalog
from flows.commands.cluster import add_cluster_options, curate_params, follow_remote, where_params
from flows.config import SITE_ACCESS_ENV, CurateConfig, site_access_from_env
from flows.progress import progress_bar
from flows.settings import SEARCH_HITS_PER_QUERY, add_root_arg, existing_root, open_catalog, resolve_root
from pipeline.download import DownloadOptions
from pipeline.errors import failure_reason, is_whole_run

_D = CurateConfig()  # the defaults shown in --help


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curate", help="search/download sources and cut clips for review")
    src = p.add_argument_group("sources (at least one)")
    src.add_argument("--query", action="append", default=[], metavar="Q", help="a search query (repeatable)")
    src.add_argument("--queries-file", type=Path, metavar="F", help="one query per line (# comments)")
    src.add_argument("--url", action="append", default=[], metavar="U", help="a video URL (repeatable)")
    p.add_argument("--per-query", type=int, default=SEARCH_HITS_PER_QUERY, metavar="N",
                   help=f"search hits per query ({SEARCH_HITS_PER_QUERY})")
    add_curate_options(p)
    p.add_argument("--retry-failed", action="store_true", help="try failed sources again")
    src.add_argument("--from-release", type=Path, metavar="FILE",
                     help="rebuild a release (release.parquet/.csv, a file or a folder of parts, or the export "
                          "folder): its exact windows, splits and verdicts")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="with --from-release: also fetch from loopback, private and link-local hosts "
                        "(refused by default: a release is input from elsewhere)")
    add_site_access_options(p)
    add_cluster_options(p)
    p.set_defaults(func=cmd_curate, runs_flows=True)

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


def add_site_access_options(p: argparse.ArgumentParser) -> None:
    """yt-dlp's ways past a site that pushes back; a deployment's workers read them from their environment."""
    g = p.add_argument_group("site access (passed to yt-dlp; lineage records which were used, never the secrets; "
                             "a deployment's workers read " + ", ".join(SITE_ACCESS_ENV.values()) + " instead)")
    g.add_argument("--cookies", metavar="FILE", help="a Netscape cookies file of a logged-in browser")
    g.add_argument("--cookies-from-browser", metavar="NAME",
                   help="read cookies from a browser: BROWSER[+KEYRING][:PROFILE][::CONTAINER]")
    g.add_argument("--proxy", metavar="URL", help="e.g. socks5://user:pass@host:1080")
    g.add_argument("--sleep-requests", type=float, metavar="S", help="seconds between a site's requests")
    g.add_argument("--yt-dlp-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a yt-dlp parameter (JSON value or text), e.g. extractor_args=youtube:player_client=web "
                        "(repeatable)")
    g.add_argument("--site-pause", type=float, metavar="S",
                   help=f"a site's first pause after a bot check or HTTP 429 ({_D.site_pause_s:g} s; "
                        "doubles with each block in a row)")


def apply_site_access(args: argparse.Namespace) -> str | None:
    """Put the site access options in this process's environment, where the curate run reads them
    (flows.config.site_access_from_env); returns why they cannot be used, or None."""
    given = {"cookies_file": args.cookies, "cookies_from_browser": args.cookies_from_browser, "proxy": args.proxy,
             "sleep_requests_s": None if args.sleep_requests is None else str(args.sleep_requests),
             "ytdlp_options": "\n".join(args.yt_dlp_option) or None}
    given = {k: v for k, v in given.items() if v is not None}
    if given and getattr(args, "via_server", False):
        return ("--via-server runs on the deployment's workers, which read site access from their own "
                "environment: set " + ", ".join(SITE_ACCESS_ENV[k] for k in given) + " there")
    env = {SITE_ACCESS_ENV[k]: v for k, v in given.items()}
    try:
        DownloadOptions(**site_access_from_env(env))  # a missing cookies file or a bad option: said now
    except ValueError as err:
        return str(err)
    os.environ.update(env)
    return None


def config_from_args(args: argparse.Namespace) -> CurateConfig:
    """A :class:`CurateConfig` of the options given on the command line, defaults for the rest."""
    given = {"separator": args.separator, "demucs_name": args.demucs_model, "demucs_repo": args.demucs_repo,
             "demucs_shifts": args.shifts, "device": args.device, "clip_seconds": args.clip_seconds,
             "target_lufs": args.target_lufs, "max_clips_per_source": args.max_clips, "workers": args.workers,
             "site_pause_s": getattr(args, "site_pause", None)}
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
    # A run stopped by a full disk says so in one line (cmd_curate); Prefect's flow log would add a traceback.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for name in ("prefect.task_runs", "prefect.flow_runs"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
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
    if (why := apply_site_access(args)) is not None:
        print(f"curate: {why}", file=sys.stderr)
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
    except Exception as err:
        if not is_whole_run(err):
            raise
        print(f"curate stopped: {failure_reason(err)}\nWhat was finished is kept; the sources it was working on "
              "are taken up again by the next run (a source with a failed clip stays failed: --retry-failed).",
              file=sys.stderr)
        print("clips by status: " + _by_status(cat.counts()["clips"]), file=sys.stderr)
        return 3
    print_summary(result, cat)
    return exit_code(result)


#: `curate` exits 0 (all done), 1 (a source failed), 3 (stopped: a full disk), 4 (nothing failed, but sources
#: wait for a paused site: run the same command again after the time it names).
PAUSED_EXIT = 4


def exit_code(result: dict) -> int:
    if result["failed"]:
        return 1
    return PAUSED_EXIT if result.get("paused") or result.get("paused_queries") else 0


def curate_elsewhere(args: argparse.Namespace, root, cat: Catalog, queries: list[str], cfg) -> int:  # noqa: ANN001
    """`curate --via-server` (a worker runs the deployment) or `curate --dask` (here, tasks on Dask)."""
    params = curate_params(args, queries, cfg)
    if args.via_server:
        return follow_remote("curate", {**params, **where_params(args)}, cat)
    from flows.cluster.entry import curate

    result = curate(**params, root=str(root.path), db=cat.url)
    print_summary(result, cat)
    return exit_code(result)


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
          + (f", {c['held']} held (another run has the video, or its site is paused: run again later)"
             if c.get("held") else "") + f" (report: {root.path / 'rebuilds'})")
    if c["invalid"]:
        print("invalid rows were set aside before any download; each is listed above with its field and why")
    return 0 if c["matching"] == sum(c.values()) else 1


def print_summary(result: dict, cat: Catalog) -> None:
    failed_before = result.get("failed_before") or []
    print(f"sources: {result['done']} done, {result['failed']} failed, "
          f"{result['skipped'] - len(failed_before)} skipped (done before)")
    if failed_before:
        print(f"{len(failed_before)} source{'s' if len(failed_before) != 1 else ''} failed in an earlier run, left out: "
              f"{', '.join(failed_before[:5])}{', ...' if len(failed_before) > 5 else ''} "
              "(vidmusician status shows why; --retry-failed tries them again)")
    if result.get("held"):  # a live lease of another run: its sources are left to it, not counted done
        n = result["held"]
        print(f"{n} source{'s' if n != 1 else ''} held by another run on this catalog, left to it "
              "(a run started after that one died takes over)")
    for key, why in result.get("refused", {}).items():
        print(f"refused {key}: {why}")
    print_pauses(result)
    print("clips by status: " + _by_status(cat.counts()["clips"]))
    if result["failed"]:
        print("see why with: vidmusician status (failed sources carry their error); "
              "--retry-failed tries them again")


def print_pauses(result: dict) -> None:
    """Sources and queries left for a paused site, until when, and how to go on."""
    n, queries = result.get("paused") or 0, result.get("paused_queries") or []
    if not n and not queries:
        return
    waiting = ([f"{n} source{'s' if n != 1 else ''} (still pending)"] if n else []) + \
              ([f"{len(queries)} quer{'ies' if len(queries) != 1 else 'y'} not searched ({', '.join(queries[:3])}"
                f"{', ...' if len(queries) > 3 else ''})"] if queries else [])
    print(f"{' and '.join(waiting)} wait for a paused site; nothing was given up:")
    for line in result.get("pauses") or []:
        print(f"  {line}")
    print("resume: run the same command again after that time (`vidmusician status` shows the pauses); a bot check "
          "often needs --cookies FILE or --cookies-from-browser NAME, a 429 --sleep-requests S")


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
    for line in report.get("site_pauses", []):
        print(f"  {line}")
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
    for c in feats["corrupt"][:10]:  # shards that no longer match the index: training refuses them
        print(f"  corrupt {c['shard']}: " + (f"clip {c['clip_id']}: " if c["clip_id"] else "") + c["problem"])
    if feats["corrupt_hint"]:
        print(f"  {feats['corrupt_hint']}")
    return 0
