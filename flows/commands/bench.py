"""`vidmusician bench import --ids FILE --out DIR`: a benchmark given as ids → a release that curate rebuilds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks given as video ids (V2M-Bench and the like); see docs/evaluation.md")
    bench = p.add_subparsers(dest="bench_command", required=True, metavar="SUBCOMMAND")
    q = bench.add_parser("import", help="an ids file (CSV or JSON: id, start, end) → release files that "
                                        "`curate --from-release` rebuilds, the windows exactly as listed")
    q.add_argument("--ids", required=True, type=Path, metavar="FILE", help="CSV with a header, or JSON")
    q.add_argument("--out", required=True, type=Path, metavar="DIR", help="where release.parquet/.csv/.json go")
    q.add_argument("--name", help="the release's name (default: the ids file's name)")
    q.add_argument("--url-template", default="https://www.youtube.com/watch?v={id}",
                   help="each video's URL, {id} replaced by its id (default: YouTube)")
    q.set_defaults(func=cmd_bench_import)


def cmd_bench_import(args: argparse.Namespace) -> int:
    from dvmset.bench import BenchError, import_bench

    if "{id}" not in args.url_template:
        print("bench import: --url-template must contain {id}", file=sys.stderr)
        return 2
    try:
        df, files = import_bench(args.ids, args.out, name=args.name, url_template=args.url_template)
    except BenchError as err:
        print(f"bench import: {err}", file=sys.stderr)
        return 2
    print(f"{len(df)} windows of {df.video_id.nunique()} videos → {files[1]}")
    print(f"rebuild: vidmusician curate --root ROOT --from-release {files[1]}")
    return 0
