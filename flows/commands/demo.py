"""`vidmusician demo`: curate ffmpeg-made sample videos served on loopback (offline)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from flows.commands.curate import curate_with_progress, print_summary
from flows.config import CurateConfig
from flows.demos.small import demo_separator, make_demo_media, serve_directory
from flows.settings import add_root_arg, open_catalog, resolve_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="curate ffmpeg-made sample videos served on loopback (offline)")
    add_root_arg(p)
    p.add_argument("--full", action="store_true",
                   help="then accept every clip (a demo shortcut), extract features with tiny random models, "
                        "export, train both stages on the debug backbone and generate music for one video")
    p.add_argument("--world", action="store_true",
                   help="the miniature world (docs/world.md): build it, pre-train a small MusicGen on its music, "
                        "curate, accept (a demo shortcut), extract features, export, run `ablate` with every Table 2 "
                        "row and both references, and score semantics and rhythm against shuffled pairs")
    p.add_argument("--scale", choices=("small", "full", "large"), default="full",
                   help="with --world: 'full' is the documented experiment, 'small' the slow test's, 'large' about "
                        "15 test clips and 3x the training (about an hour on 2 cores; default full)")
    p.add_argument("--real-video", type=Path, metavar="MP4",
                   help="with --world: real footage with cuts to try the full row on (default: "
                        "../shared/media/bikes_cuts_10s.mp4 when present)")
    p.add_argument("--rows", metavar="ROW,ROW",
                   help="with --world: the ablate rows and references to run (default: the scale's; any of "
                        "full, no-t5, no-rcm, no-it, one-stage, at, musicongen, musicongen-no-it, backbone, untrained)")
    p.add_argument("--pretrain-steps", type=int, metavar="N",
                   help="with --world: the miniature backbone's pre-training steps (default: the scale's); the run "
                        "stops after pre-training when the backbone does not hold its classes' tempos")
    p.set_defaults(func=cmd_demo, runs_flows=True)


def cmd_demo(args: argparse.Namespace) -> int:
    root = resolve_root(args.root)
    if args.world:
        from dataclasses import replace

        from flows.demos.world import ALL_ROWS, SCALES, BackboneNotReady, default_real_video, run_world_demo

        scale = SCALES[args.scale]
        rows = tuple(r.strip() for r in args.rows.split(",") if r.strip()) if args.rows else None
        if rows is not None and (not rows or set(rows) - set(ALL_ROWS)):
            raise SystemExit(f"--rows: unknown {sorted(set(rows) - set(ALL_ROWS)) or 'none given'}; "
                             f"choose from {', '.join(ALL_ROWS)}")
        if args.pretrain_steps is not None:
            if args.pretrain_steps < 1:
                raise SystemExit(f"--pretrain-steps must be >= 1, got {args.pretrain_steps}")
            scale = replace(scale, pretrain_steps=args.pretrain_steps)
        try:
            run_world_demo(root.path, scale, rows=rows, real_video=args.real_video or default_real_video())
        except BackboneNotReady as e:
            print(f"world demo stopped after pre-training: {e}")
            return 2
        return 0
    if args.full:
        from flows.demos.full import run_full_demo  # torch and the model load only for --full

        print(run_full_demo(root.path))
        return 0
    cat = open_catalog(root)
    t0 = time.perf_counter()
    media_dir = root.path / "demo-media"
    print(f"making sample sources with ffmpeg in {media_dir} ...")
    paths = make_demo_media(media_dir)
    separator = demo_separator()
    if separator == "none":
        print("Demucs weights are not in the torch-hub cache: the demo skips vocal removal "
              "(--separator none, recorded in the catalog). See README, 'Real weights'.")
    with serve_directory(media_dir) as base:
        urls = [f"{base}/{p.name}" for p in paths]
        print(f"serving {len(urls)} sources on {base}; curating through yt-dlp ...")
        result = curate_with_progress(root, cat.url, queries=[], urls=urls, per_query=0,
                                      cfg=CurateConfig(separator=separator), retry_failed=False)
    print_summary(result, cat)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s. Next:")
    print(f"  vidmusician status --root {root.path}")
    print(f"  vidmusician annotators add alice --root {root.path}   # prints a login link")
    print(f"  vidmusician review --root {root.path}                 # review the clips in a browser")
    return 0
