"""`vidmusician generate VIDEO... --checkpoint CKPT --out DIR` (or `--export DIR --split test`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="put generated music under videos: DIR/{name}.wav and DIR/{name}.mp4")
    p.add_argument("videos", nargs="*", type=Path, metavar="VIDEO", help="video files (any length, >= 1 s)")
    p.add_argument("--export", type=Path, metavar="DIR", help="an export folder (exports/NAME): its --split clips")
    p.add_argument("--split", default="test", help="the export's split with --export (test)")
    p.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint written by `vidmusician train`")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="where the .wav and .mp4 files go")
    p.add_argument("--duration", type=float, metavar="S", help="music for the first S seconds only (the rest "
                                                                 "of the video is silent); default the whole video")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same music (0)")
    p.add_argument("--cfg-coef", type=float, default=3.0, help="classifier-free guidance (3.0; 1.0 = off)")
    p.add_argument("--top-k", type=int, default=250, help="top-k sampling (250)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1.0)")
    p.add_argument("--window", type=int, default=30, metavar="W", help="seconds per model window (30)")
    p.add_argument("--stride", type=int, metavar="S", help="whole seconds between windows (default 3/5 of W: 18 s; "
                                                           "each window is prompted with the W - S before it)")
    p.add_argument("--clip-model", default="ViT-L-14", help="the CLIP the training features used (ViT-L-14), "
                                                            "a local-dir:/hf-hub: id, or 'tiny'")
    p.add_argument("--pretrained", default="openai", help="its pretrained tag or local checkpoint file (openai)")
    p.add_argument("--backbone", help="a local directory holding the checkpoint's MusicGen (offline)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--cache", type=Path, metavar="DIR", help="feature cache (default DIR/.features)")
    p.add_argument("--no-mux", action="store_true", help="write only the .wav files")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from flows.generate import GenerateConfig, GenerateError, generate_batch, jobs_for_export, jobs_for_videos

    if bool(args.videos) == bool(args.export):
        print("error: give VIDEO files or --export DIR, not both and not neither", file=sys.stderr)
        return 2
    try:
        cfg = GenerateConfig(
            checkpoint=args.checkpoint, out_dir=args.out, duration_s=args.duration, seed=args.seed,
            cfg_coef=args.cfg_coef, top_k=args.top_k, temperature=args.temperature, window_s=args.window,
            stride_s=args.stride, clip_model=args.clip_model, clip_pretrained=args.pretrained, device=args.device,
            backbone=args.backbone, cache_dir=args.cache, mux=not args.no_mux)
        jobs = jobs_for_export(args.export, args.split) if args.export else jobs_for_videos(args.videos)
    except (ValueError, GenerateError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def report(r) -> None:  # noqa: ANN001 - flows.generate.VideoResult
        if r.ok:
            made = ", ".join(str(p) for p in (r.wav, r.mp4) if p is not None)
            print(f"ok      {r.name}: {r.duration_s:.2f} s in {r.windows} window(s), {r.seconds:.1f} s -> {made}")
        else:
            print(f"FAILED  {r.name} ({r.video}): {r.error}")

    try:
        results = generate_batch(jobs, cfg, on_result=report)
    except GenerateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} video(s) done in {cfg.out_dir}"
          + (f"; {len(failed)} failed: {', '.join(r.name for r in failed)}" if failed else ""))
    return 1 if failed else 0
